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
// The parallelism parameter TILE (8, 16 or 32) is the side of the thread block: TILE x TILE
// threads. Each thread keeps a WPT x WPT micro-tile of C in registers, so one block owns a
// BM x BM tile of C (BM = TILE*WPT) and walks K in slices of BK = TILE:
//
//                 BM columns of B
//               +----------------+
//        BK     |   Bs[BK][BM]   |   staged in shared memory per K slice
//               +----------------+
//   +----+      +----------------+
//   | As |  BM  |   C tile       |   thread (tx, ty) owns rows ty + i*TILE and
//   |    |      |   BM x BM      |   columns tx + j*TILE, i, j < WPT
//   +----+      +----------------+
//    BK
//
// Rows and columns of a thread are strided by TILE (not contiguous) so that neighbouring
// threads read neighbouring shared-memory words (no bank conflicts) and write neighbouring
// words of C (coalesced). Out-of-range elements are loaded as 0 and never stored, which is
// what makes any M, N, K correct.
//
// What it buys over rung 0: each value loaded from global memory feeds BM multiply-adds through
// shared memory, and each value read from shared memory feeds WPT of them through registers. What
// it leaves: every shared-memory read is a 32-bit LDS feeding 2 FFMA (16 FFMA against 8 LDS per
// k step of a thread), which caps it near half of FP32 peak; the global loads are 32-bit, and each
// slice waits for its loads behind a barrier (no overlap). Rung 2 attacks the first two.
//
// Launch: block (TILE, TILE), grid (ceil(N/BM), ceil(M/BM), batch).
#include "common.h"

#ifndef TILE
#define TILE 16
#endif
#ifndef WPT
#define WPT 4
#endif
#define BM (TILE * WPT)
#define BK TILE

KERNEL void __launch_bounds__(TILE * TILE)
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

    float acc[WPT][WPT];
    for (int i = 0; i < WPT; ++i)
        for (int j = 0; j < WPT; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int i = 0; i < WPT; ++i) {
            const int m = row0 + ty + i * TILE, k = k0 + tx;
            As[tx][ty + i * TILE] = (m < M && k < K) ? A[(long long)m * K + k] : 0.0f;
            const int kb = k0 + ty, n = col0 + tx + i * TILE;
            Bs[ty][tx + i * TILE] = (kb < K && n < N) ? B[(long long)kb * N + n] : 0.0f;
        }
        __syncthreads();

        for (int k = 0; k < BK; ++k) {
            float a[WPT], b[WPT];
            for (int i = 0; i < WPT; ++i) a[i] = As[k][ty + i * TILE];
            for (int j = 0; j < WPT; ++j) b[j] = Bs[k][tx + j * TILE];
            for (int i = 0; i < WPT; ++i)
                for (int j = 0; j < WPT; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();  // the next slice overwrites As/Bs
    }

    for (int i = 0; i < WPT; ++i) {
        const int m = row0 + ty + i * TILE;
        if (m >= M) continue;
        for (int j = 0; j < WPT; ++j) {
            const int n = col0 + tx + j * TILE;
            if (n < N) C[(long long)m * N + n] = acc[i][j];
        }
    }
}
