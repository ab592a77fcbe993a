// spmm_csr: C[b] = A * B[b], A sparse (M x K, CSR), B[b] dense (K x N), float32, row-major, any sizes.
//
//   row_ptr : M+1 ints     the nonzeros of row m are j = row_ptr[m] .. row_ptr[m+1]-1
//   col_idx : nnz ints     their column k
//   values  : nnz floats   their value
//   B[b]    : K x N at B + b*strideB,   C[b] : M x N at C + b*strideC   (b = blockIdx.z)
//
//   C[b][m][n] = sum_j values[j] * B[b][col_idx[j]][n]
//
// The sparse GEMM of a pruned filter (experiments/conv/sparse.py): A is the im2col filter matrix
// (F x C*KH*KW) or the kn2row filter rows (F*KH*KW x C), block-diagonal for a grouped layer, and
// B the unfolded input or the input itself. Only the nonzeros are multiplied: at density d the
// work is d times the dense GEMM's, but each nonzero streams a row segment of B (no reuse in
// registers as in gemm_blocked), hence a crossover density below which it wins.
//
// One block per (row tile, column tile) of C: SPMM_ROWS rows by SPMM_COLS columns. Thread (tx, ty)
// owns row m = row tile + ty and the SPMM_CPT columns n = column tile + tx + j*SPMM_LANES, so a warp
// (32 consecutive tx of one ty; a 64-wide wavefront covers two rows) walks one row's nonzeros
// together: each reads the same (col_idx, value) pair (a broadcast) and a contiguous segment of
// B's row col_idx (coalesced). Rows are independent: no shared memory and no barriers, so
// threads past M or N simply return.
//
// Launch: block (SPMM_LANES, SPMM_ROWS), grid (ceil(N/SPMM_COLS), ceil(M/SPMM_ROWS), batch).
#include "common.h"

// SPMM_LANES, SPMM_ROWS and SPMM_CPT come from the host (experiments/conv/kernel_launch.py).
#define SPMM_COLS (SPMM_LANES * SPMM_CPT)

KERNEL void __launch_bounds__(SPMM_LANES * SPMM_ROWS)
spmm_csr(const int* __restrict__ row_ptr, const int* __restrict__ col_idx, const float* __restrict__ values,
         const float* __restrict__ B, float* __restrict__ C, int M, int N, long long strideB, long long strideC)
{
    const int m = blockIdx.y * SPMM_ROWS + threadIdx.y;
    const int n0 = blockIdx.x * SPMM_COLS + threadIdx.x;
    if (m >= M || n0 >= N) return;
    B += blockIdx.z * strideB;
    C += blockIdx.z * strideC;

    float acc[SPMM_CPT];
    for (int j = 0; j < SPMM_CPT; ++j) acc[j] = 0.0f;
    const int end = row_ptr[m + 1];
    for (int e = row_ptr[m]; e < end; ++e) {
        const float v = values[e];
        const float* b = B + (long long)col_idx[e] * N;
        for (int j = 0; j < SPMM_CPT; ++j) {
            const int n = n0 + j * SPMM_LANES;
            if (n < N) acc[j] = fmaf(v, b[n], acc[j]);
        }
    }
    for (int j = 0; j < SPMM_CPT; ++j) {
        const int n = n0 + j * SPMM_LANES;
        if (n < N) C[(long long)m * N + n] = acc[j];
    }
}
