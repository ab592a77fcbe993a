// Rung 4 of the GEMM ladder: gemm_warptile, warp tiling on top of rung 3.
//
// C[b] = A[b % groups] * B[b], float32, row-major, any M, N, K (b = blockIdx.z); rung 3's
// double-buffered loop, micro-tile and 128-bit loads (gemm_ladder.h).
//
// What changes from rung 3: which thread owns which micro-tile. The 32 lanes of a warp are laid out
// 4 x 8 over a 32 x 64 warp tile (16 threads per side: 8 warps, 4 x 2 warp tiles make the 128 x 128 block
// tile), each lane 2 x 2 groups of 4 x 4 strided by the lanes' footprint:
//
//   block tile 128 x 128 (16 per side)             one warp tile 32 x 64
//   +--------+--------+                        lane l: rows (l/8)*4 + {0..3} and +16,
//   | warp 0 | warp 1 |  32 rows               columns (l%8)*4 + {0..3} and +32
//   +--------+--------+
//   | warp 2 | warp 3 |                        |l0|l1|..|l7|l0|l1|..|l7|   <- Bs[k], 64 columns
//   +--------+--------+
//   |  ...   |  ...   |
//   +--------+--------+
//     64 cols
//
// Per k step a warp now reads 8 distinct float4 of Bs (128 bytes: one shared-memory wavefront,
// rung 3: 16, two wavefronts) and 4 of As (rung 3: 2, broadcast either way), and its 32 lanes
// store C in 4 rows of 128 contiguous bytes. The instruction counts do not change (the report
// shows the same FFMA per LDS as rung 3); the shared-memory bandwidth per FMA drops by a third.
// On AMD a 64-lane wavefront covers two warp tiles side by side: correct for any width.
//
// Launch: block (THREADS_PER_SIDE^2), grid (ceil(N/BN), ceil(M/BM), batch).
#include "gemm_ladder.h"

KERNEL void __launch_bounds__(LADDER_THREADS, LADDER_MIN_BLOCKS)
gemm_warptile(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
              int M, int N, int K, int groups, long long strideA, long long strideB, long long strideC)
{
    __shared__ __align__(16) ASlice As[2];
    __shared__ __align__(16) BSlice Bs[2];

    const int t = threadIdx.x;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    A += (blockIdx.z % groups) * strideA;
    B += blockIdx.z * strideB;
    C += blockIdx.z * strideC;

    SliceLoads loads;
    setup_a_loads(loads, A, M, K, row0, t);
    setup_b_loads(loads, B, N, col0, t);
    const Origin o = warp_tile_origin(t);
    float acc[TM][TN];
    zero(acc);
    double_buffered_loop(loads, B, K, N, 0, K, o, t, As, Bs, acc);
    store_tile(C, M, N, row0, col0, o, acc);
}
