// Rung 3 of the GEMM ladder: gemm_dbuf, double buffering through registers.
//
// C[b] = A[b % groups] * B[b], float32, row-major, any M, N, K (b = blockIdx.z); rung 2's tiles,
// micro-tile and 128-bit loads (gemm_ladder.h).
//
// What changes from rung 2: two shared buffers per operand. While the block multiplies slice i
// from one, each thread's global loads of slice i+1 are already issued into registers; after the
// multiply they go to the other buffer, and one barrier per slice (rung 2: two) hands it over:
//
//   time ->   | fetch i+1 (LDG, in flight) | multiply i (LDS + FFMA) | store i+1 (STS) | barrier |
//   buffers:    As[i%2], Bs[i%2] read        As[(i+1)%2], Bs[(i+1)%2] written
//
// Portable: plain loads into registers and __syncthreads, no cp.async or other NVIDIA-only
// instruction, so the same source runs on HIP (and the emulator).
//
// What it should buy: the global-memory latency of a slice hides behind the 64 x BK FMAs of the
// previous one, and half the barriers. Cost: twice the shared memory (16 KiB at 16 threads per side) and the
// registers of the loads in flight. What it leaves: a warp of 2 x 16 threads reads 16 distinct
// float4 of Bs per k (two shared-memory wavefronts): rung 4 reshapes the warp.
//
// Launch: block (THREADS_PER_SIDE^2), grid (ceil(N/BN), ceil(M/BM), batch).
#include "gemm_ladder.h"

KERNEL void __launch_bounds__(LADDER_THREADS, LADDER_MIN_BLOCKS)
gemm_dbuf(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
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
    const Origin o = thread_tile_origin(t);
    float acc[TM][TN];
    zero(acc);
    double_buffered_loop(loads, B, K, N, 0, K, o, t, As, Bs, acc);
    store_tile(C, M, N, row0, col0, o, acc);
}
