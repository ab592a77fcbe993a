// Rung 1 of the GEMM ladder: gemm_blocked, shared-memory tiles and a 4 x 4 register micro-tile.
//
// C[b] = A[b % groups] * B[b], float32, row-major, for any M, N, K (b = blockIdx.z).
//
//   A[g]: M x K   at A + g*strideA, g = b % groups
//   B[b]: K x N   at B + b*strideB
//   C[b]: M x N   at C + b*strideC
//
// groups = 1 (strideA unused): one A shared by the whole batch, e.g. the filter of a convolution.
// groups = G: a grouped convolution, batch index b = image*G + group, so the G GEMMs of every
// image (each group's filter A[g] times that group's rows of the unfolded input) run in one
// launch; B[b] and C[b] are consecutive row blocks of each image's operand and output.
//
// The parallelism parameter THREADS_PER_SIDE (gemm.tile: 8, 16 or 32) is the side of the thread
// block: THREADS_PER_SIDE^2 threads. Each thread keeps a THREAD_TILE x THREAD_TILE thread tile of C
// in registers, so one block owns a BM x BM block tile of C (BM = BLOCK_TILE = THREADS_PER_SIDE *
// THREAD_TILE) and walks K in slices of BK = THREADS_PER_SIDE:
//
//                 BM columns of B
//               +----------------+
//        BK     |   Bs[BK][BM]   |   staged in shared memory per K slice
//               +----------------+
//   +----+      +----------------+
//   | As |  BM  |   C tile       |   thread (tx, ty) owns rows ty + i*SIDE and
//   |    |      |   BM x BM      |   columns tx + j*SIDE, i, j < THREAD_TILE
//   +----+      +----------------+
//    BK
//
// Rows and columns of a thread are strided by SIDE = THREADS_PER_SIDE (not contiguous) so that neighbouring
// threads read neighbouring shared-memory words (no bank conflicts) and write neighbouring
// words of C (coalesced). Out-of-range elements are loaded as 0 and never stored, which is
// what makes any M, N, K correct.
//
// What it buys over rung 0: each value loaded from global memory feeds BM multiply-adds through
// shared memory, and each value read from shared memory feeds THREAD_TILE of them through registers. What
// it leaves: every shared-memory read is a 32-bit LDS feeding 2 FFMA (16 FFMA against 8 LDS per
// k step of a thread), which caps it near half of FP32 peak; the global loads are 32-bit, and each
// slice waits for its loads behind a barrier (no overlap). Rung 2 attacks the first two.
//
// Launch: block (THREADS_PER_SIDE, THREADS_PER_SIDE), grid (ceil(N/BM), ceil(M/BM), batch).
#include "common.h"

// THREADS_PER_SIDE, THREAD_TILE and BLOCK_TILE come from the host (experiments/conv/ladder.py's rung table).
#define BM BLOCK_TILE
#define BK THREADS_PER_SIDE
static_assert(BLOCK_TILE == THREADS_PER_SIDE * THREAD_TILE, "a block tile is the threads per side times the thread tile");

KERNEL void __launch_bounds__(THREADS_PER_SIDE * THREADS_PER_SIDE)
gemm_blocked(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
             int M, int N, int K, int groups, long long strideA, long long strideB, long long strideC)
{
    __shared__ float As[BK][BM + 1];  // A slice, transposed; +1 breaks the bank stride of the store
    __shared__ float Bs[BK][BM];

    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BM;
    A += (blockIdx.z % groups) * strideA;
    B += blockIdx.z * strideB;
    C += blockIdx.z * strideC;

    float acc[THREAD_TILE][THREAD_TILE];
    for (int i = 0; i < THREAD_TILE; ++i)
        for (int j = 0; j < THREAD_TILE; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int i = 0; i < THREAD_TILE; ++i) {
            const int m = row0 + ty + i * THREADS_PER_SIDE, k = k0 + tx;
            As[tx][ty + i * THREADS_PER_SIDE] = (m < M && k < K) ? A[(long long)m * K + k] : 0.0f;
            const int kb = k0 + ty, n = col0 + tx + i * THREADS_PER_SIDE;
            Bs[ty][tx + i * THREADS_PER_SIDE] = (kb < K && n < N) ? B[(long long)kb * N + n] : 0.0f;
        }
        __syncthreads();

        for (int k = 0; k < BK; ++k) {
            float a[THREAD_TILE], b[THREAD_TILE];
            for (int i = 0; i < THREAD_TILE; ++i) a[i] = As[k][ty + i * THREADS_PER_SIDE];
            for (int j = 0; j < THREAD_TILE; ++j) b[j] = Bs[k][tx + j * THREADS_PER_SIDE];
            for (int i = 0; i < THREAD_TILE; ++i)
                for (int j = 0; j < THREAD_TILE; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();  // the next slice overwrites As/Bs
    }

    for (int i = 0; i < THREAD_TILE; ++i) {
        const int m = row0 + ty + i * THREADS_PER_SIDE;
        if (m >= M) continue;
        for (int j = 0; j < THREAD_TILE; ++j) {
            const int n = col0 + tx + j * THREADS_PER_SIDE;
            if (n < N) C[(long long)m * N + n] = acc[i][j];
        }
    }
}
