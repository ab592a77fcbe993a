// Rung 2 of the GEMM ladder: gemm_vec4, an 8 x 8 micro-tile read with 128-bit loads.
//
// C[b] = A[b % groups] * B[b], float32, row-major, any M, N, K (b = blockIdx.z), the contract of
// gemm_1_blocked.hip. Tiles, loads and the micro-kernel: gemm_ladder.h.
//
// What changes from rung 1:
//   - each thread owns TM x TN = 8 x 8 elements of C (4 x 4 at 32 threads per side), in 4 x 4 groups whose
//     4 columns (and, in As, 4 rows) are contiguous, so that a k step reads them as float4:
//     2 + 2 LDS.128 feed 64 FFMA, 16 FFMA per shared-load instruction instead of 2;
//   - global loads are 128-bit (LDG.E.128) where the operand's rows are 16-byte aligned
//     (K % 4 == 0 for A, N % 4 == 0 for B), scalar otherwise; B goes to shared memory as STS.128,
//     A transposed (As[k][m]) so that the micro-kernel reads A along a row too.
//
//   thread (tx, ty), 16 threads per side: rows ty*4 + {0..3} and 64 + ty*4 + {0..3}, same for columns with tx
//
//        Bs[k]: |tx0 |tx1 |... |tx15|tx0 |tx1 |... |tx15|   float4 groups, 128 columns
//   As[k]: ty0 rows 0-3, ty1 rows 4-7, ..., ty15 rows 60-63, ty0 rows 64-67, ...
//
// What it should buy: the shared-memory issue bound of rung 1 goes (8x fewer load instructions per
// FMA), and a block moves 4x fewer bytes per FMA from global memory (128 x 128 tile, 64 x 64 in
// rung 1). What it leaves: a slice still waits for its global loads behind a barrier (rung 3).
//
// Launch: block (THREADS_PER_SIDE^2), grid (ceil(N/BN), ceil(M/BM), batch).
#include "gemm_ladder.h"

KERNEL void __launch_bounds__(LADDER_THREADS, LADDER_MIN_BLOCKS)
gemm_vec4(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
          int M, int N, int K, int groups, long long strideA, long long strideB, long long strideC)
{
    __shared__ __align__(16) ASlice As;
    __shared__ __align__(16) BSlice Bs;

    const int t = threadIdx.x;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    A += (blockIdx.z % groups) * strideA;
    B += blockIdx.z * strideB;
    C += blockIdx.z * strideC;

    SliceLoads loads;
    setup_a_loads(loads, A, M, K, row0, t);
    setup_b_loads(loads, B, N, col0, t);
    const Origin o = thread_tile_origin(t);
    float acc[TM][TN];
    zero(acc);

    for (int k0 = 0; k0 < K; k0 += BK) {
        loads.fetch(B, K, N, k0);
        loads.store(As, Bs, t);
        __syncthreads();
        multiply_slice(As, Bs, o, acc);
        __syncthreads();  // the next slice overwrites As/Bs
    }
    store_tile(C, M, N, row0, col0, o, acc);
}
