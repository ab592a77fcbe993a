// gemm_blocked_fp16 / gemm_blocked_int8: the blocked GEMM of gemm_1_blocked.hip on low-precision
// operands. Same tiling, launch and batching (groups, strides) as gemm_blocked; only the element
// types differ:
//
//   kernel              A, B (storage)     products and sums     C
//   gemm_blocked_fp16   __half             float32 (fmaf)        float32
//   gemm_blocked_int8   signed char        int32                 int32 (dequantized by the caller)
//
// Operands are widened once, when a K slice is staged in shared memory (as float or int words,
// so the shared-memory access pattern and its bank behaviour are exactly those of the float32
// kernel). What the narrow types save is global-memory traffic and workspace (2x for half, 4x for
// int8); the arithmetic runs on the ordinary float/int pipelines: no tensor cores, no dp4a (those
// are vendor intrinsics outside the common subset of hip/common.h).
//
// int8 products are at most 127*127 in magnitude, so int32 sums are exact for K < 133 000.
//
// Launch: block (THREADS_PER_SIDE, THREADS_PER_SIDE), grid (ceil(N/BM), ceil(M/BM), batch), BM = BLOCK_TILE.
#define CONVBENCH_HALF
#include "common.h"

// THREADS_PER_SIDE, THREAD_TILE and BLOCK_TILE come from the host (experiments/conv/ladder.py's rung table).
#define BM BLOCK_TILE
#define BK THREADS_PER_SIDE
static_assert(BLOCK_TILE == THREADS_PER_SIDE * THREAD_TILE, "a block tile is the threads per side times the thread tile");

// The body shared by both kernels: ACC is the accumulator (and shared-memory) type, WIDEN turns
// one stored element into it.
#define GEMM_LOWP_BODY(ACC, WIDEN)                                                                \
    __shared__ ACC As[BK][BM + 1];                                                                \
    __shared__ ACC Bs[BK][BM];                                                                    \
    const int tx = threadIdx.x, ty = threadIdx.y;                                                 \
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BM;                                     \
    A += (blockIdx.z % groups) * strideA;                                                         \
    B += blockIdx.z * strideB;                                                                    \
    C += blockIdx.z * strideC;                                                                    \
    ACC acc[THREAD_TILE][THREAD_TILE];                                                                            \
    for (int i = 0; i < THREAD_TILE; ++i)                                                                 \
        for (int j = 0; j < THREAD_TILE; ++j) acc[i][j] = (ACC)0;                                         \
    for (int k0 = 0; k0 < K; k0 += BK) {                                                          \
        for (int i = 0; i < THREAD_TILE; ++i) {                                                           \
            const int m = row0 + ty + i * THREADS_PER_SIDE, k = k0 + tx;                                      \
            As[tx][ty + i * THREADS_PER_SIDE] = (m < M && k < K) ? WIDEN(A[(long long)m * K + k]) : (ACC)0;   \
            const int kb = k0 + ty, n = col0 + tx + i * THREADS_PER_SIDE;                                     \
            Bs[ty][tx + i * THREADS_PER_SIDE] = (kb < K && n < N) ? WIDEN(B[(long long)kb * N + n]) : (ACC)0; \
        }                                                                                         \
        __syncthreads();                                                                          \
        for (int k = 0; k < BK; ++k) {                                                            \
            ACC a[THREAD_TILE], b[THREAD_TILE];                                                                   \
            for (int i = 0; i < THREAD_TILE; ++i) a[i] = As[k][ty + i * THREADS_PER_SIDE];                            \
            for (int j = 0; j < THREAD_TILE; ++j) b[j] = Bs[k][tx + j * THREADS_PER_SIDE];                            \
            for (int i = 0; i < THREAD_TILE; ++i)                                                         \
                for (int j = 0; j < THREAD_TILE; ++j) acc[i][j] = MADD(a[i], b[j], acc[i][j]);            \
        }                                                                                         \
        __syncthreads();                                                                          \
    }                                                                                             \
    for (int i = 0; i < THREAD_TILE; ++i) {                                                               \
        const int m = row0 + ty + i * THREADS_PER_SIDE;                                                       \
        if (m >= M) continue;                                                                     \
        for (int j = 0; j < THREAD_TILE; ++j) {                                                           \
            const int n = col0 + tx + j * THREADS_PER_SIDE;                                                   \
            if (n < N) C[(long long)m * N + n] = acc[i][j];                                       \
        }                                                                                         \
    }

#define WIDEN_HALF(v) __half2float(v)
#define WIDEN_INT8(v) ((int)(v))

KERNEL void __launch_bounds__(THREADS_PER_SIDE * THREADS_PER_SIDE)
gemm_blocked_fp16(const __half* __restrict__ A, const __half* __restrict__ B, float* __restrict__ C,
                  int M, int N, int K, int groups, long long strideA, long long strideB, long long strideC)
{
#define MADD(a, b, c) fmaf(a, b, c)
    GEMM_LOWP_BODY(float, WIDEN_HALF)
#undef MADD
}

KERNEL void __launch_bounds__(THREADS_PER_SIDE * THREADS_PER_SIDE)
gemm_blocked_int8(const signed char* __restrict__ A, const signed char* __restrict__ B, int* __restrict__ C,
                  int M, int N, int K, int groups, long long strideA, long long strideB, long long strideC)
{
#define MADD(a, b, c) ((a) * (b) + (c))
    GEMM_LOWP_BODY(int, WIDEN_INT8)
#undef MADD
}
