// Rung 6 of the GEMM ladder: gemm_fold, rung 5 with the batch folded into N.
//
// C[b] = A[b % groups] * B[b] for every image b = i * groups + g (i < images, g < groups), float32,
// row-major, any M, N, K; rung 5's split-K, warp-tiled, double-buffered block (gemm_ladder.h).
//
// What changes from rung 5: the images that share a filter (the same A[g]) become one GEMM with
// images x N columns, so a tile of BN = 128 columns may span several images:
//
//   rung 5, batch 32, N = 49:  32 GEMMs of 49 columns, each a 128-column tile 62% padding
//   rung 6:                    one GEMM of 32*49 = 1568 columns, 13 tiles, the last one 75% full
//
//      image 0 (N cols)   image 1          image 2
//   |...................|...................|......  <- folded column j = i*N + n
//   |<-- tile 0 (BN) -->|<-- tile 1 -->|<-- tile 2 -->|
//
// Column j of the folded GEMM is column n = j % N of image i = j / N; each thread works that out
// once for the columns it loads (before the K loop) and once for the columns it stores (after it):
// no division in the K loop. Loads and stores stay 128-bit where N % 4 == 0 (then a float4 never
// straddles two images); otherwise every column has its own offset.
//
// What it should buy: on conv-shaped GEMMs at batch > 1 with small N (late layers: 7 x 7 = 49), the
// padding of the last tile of each image is gone and the grid has images x fewer blocks of the
// same work each, with split-K on top when even that is too few blocks.
//
// Launch: block (THREADS_PER_SIDE^2), grid (ceil(images*N/BN), ceil(M/BM), groups * splits); out is C
// (splits = 1) or a splits x images*groups x M x N workspace; strideB = K*N, strideC = M*N.
#define LADDER_FOLDED_COLUMNS
#include "gemm_ladder.h"

// The folded column j's offset from image 0 (image i at i * image_stride), or -1 past the last image.
__device__ __forceinline__ long long folded_offset(int j, int N, int images, long long image_stride)
{
    const int image = j / N;
    return image < images ? image * image_stride + (j - image * N) : -1;
}

KERNEL void __launch_bounds__(LADDER_THREADS)
gemm_fold(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ out,
          int M, int N, int K, int groups, int images, long long strideA, long long strideB, long long strideC,
          int k_per_split)
{
    __shared__ __align__(16) ASlice As[2];
    __shared__ __align__(16) BSlice Bs[2];

    const int t = threadIdx.x;
    const int g = blockIdx.z % groups, split = blockIdx.z / groups;  // once per block
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    const int k_begin = split * k_per_split, k_end = min(K, k_begin + k_per_split);
    A += g * strideA;
    B += g * strideB;
    const long long b_image_stride = groups * strideB;

    SliceLoads loads;
    setup_a_loads(loads, A, M, K, row0, t);
    loads.vec_b = VEC == 4 && N % 4 == 0 && aligned16(B);
    loads.b_n = (t % (BN / VEC)) * VEC;
    loads.b_k = t / (BN / VEC);
    // Offsets from the thread's first column, whose address B_first replaces B in the K loop: one
    // 64-bit pointer live there instead of a pointer and an offset (at 32 threads per side, 64 registers a
    // thread, NVRTC spilled with both).
    const long long first = max(folded_offset(col0 + loads.b_n, N, images, b_image_stride), 0LL);
    const float* B_first = B + first;
    loads.b_valid = 0;
    for (int v = 0; v < VEC; ++v) {
        const long long offset = folded_offset(col0 + loads.b_n + v, N, images, b_image_stride);
        loads.b_cols[v] = v == 0 || offset < 0 ? 0 : offset - first;   // b_cols[0] is 0: B_first itself
        loads.b_valid += offset >= 0;  // the valid columns come first
    }

    const Origin o = warp_tile_origin(t);
    float acc[TM][TN];
    zero(acc);
    double_buffered_loop(loads, B_first, K, N, k_begin, k_end, o, t, As, Bs, acc);

    // The output's offsets only now: nothing of them stays in registers through the K loop.
    out += (long long)split * images * groups * strideC + g * strideC;
    const long long c_image_stride = groups * strideC;
    long long c_cols[TN];
    for (int j = 0; j < TN; ++j)
        c_cols[j] = folded_offset(col0 + o.col + (j / 4) * o.col_step + j % 4, N, images, c_image_stride);
    const bool vec = N % 4 == 0 && aligned16(out);
    for (int i = 0; i < TM; ++i) {
        const int m = row0 + o.row + (i / 4) * o.row_step + i % 4;
        if (m >= M) continue;
        float* c_row = out + (long long)m * N;
        for (int q = 0; q < TN / 4; ++q) {
            const float* v = &acc[i][4 * q];
            if (vec && c_cols[4 * q] >= 0) {  // all four in one image (N % 4 == 0), and all exist
                *reinterpret_cast<float4*>(c_row + c_cols[4 * q]) = make_float4(v[0], v[1], v[2], v[3]);
            } else {
                for (int j = 0; j < 4; ++j)
                    if (c_cols[4 * q + j] >= 0) c_row[c_cols[4 * q + j]] = v[j];
            }
        }
    }
}
