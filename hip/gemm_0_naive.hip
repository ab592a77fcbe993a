// Rung 0 of the GEMM ladder: gemm_naive, one thread per element of C, straight from global memory.
//
// C[b] = A[b % groups] * B[b], float32, row-major, any M, N, K (the contract of every rung; see
// gemm_1_blocked.hip for the batch and groups layout).
//
//             N
//       +-----------+
//     K |     B     |   thread (x, y) walks row m = y of A and column n = x of B
//       +-----------+
//    K      |
//  +----+ +-----------+
//  | A  | |  C   .    |  one element per thread
//  +----+ +-----------+
//
// What it is for: the floor of the ladder. Every FMA needs two global loads (a 32-bit LDG each,
// served by L1/L2 at best), so it is bound by load bandwidth, not arithmetic: 2 load instructions
// per FFMA in the report, a small fraction of the GPU's FP32 peak. Each later rung says what it
// buys over the one below.
//
// Launch: block (THREADS_PER_SIDE, THREADS_PER_SIDE), grid (ceil(N/BLOCK_TILE), ceil(M/BLOCK_TILE), batch);
// the shapes come from the host (experiments/conv/ladder.py): a thread tile of one element.
#include "common.h"

static_assert(THREAD_TILE == 1 && BLOCK_TILE == THREADS_PER_SIDE, "rung 0: one element of C per thread");

KERNEL void __launch_bounds__(THREADS_PER_SIDE * THREADS_PER_SIDE)
gemm_naive(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
           int M, int N, int K, int groups, long long strideA, long long strideB, long long strideC)
{
    const int m = blockIdx.y * BLOCK_TILE + threadIdx.y, n = blockIdx.x * BLOCK_TILE + threadIdx.x;
    if (m >= M || n >= N) return;
    A += (blockIdx.z % groups) * strideA + (long long)m * K;
    B += blockIdx.z * strideB + n;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) acc = fmaf(A[k], B[(long long)k * N], acc);
    C[blockIdx.z * strideC + (long long)m * N + n] = acc;
}
