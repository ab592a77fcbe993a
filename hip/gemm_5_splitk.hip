// Rung 5 of the GEMM ladder: gemm_splitk, rung 4 with K split over several blocks.
//
// C[b] = A[b % groups] * B[b], float32, row-major, any M, N, K; rung 4's warp-tiled,
// double-buffered block (gemm_ladder.h).
//
// What changes from rung 4: a GEMM with few output tiles and a long K (the late layers of a CNN:
// resnet18's layer4 at batch 1 is M=512, N=49, K=4608, 4 x 1 tiles of 128 x 128 walking 576 slices
// one after another on a 132-SM GPU) gives each of `splits` blocks one range of K (a multiple of
// BK) for the same output tile. Each split writes its partial tile to its own plane of a workspace;
// gemm_splitk_reduce then sums the planes in a fixed order (deterministic, no atomics):
//
//   grid z = split * batch + b            partial[split][b] = A[b % groups][:, Ks] * B[b][Ks, :]
//   +-------+  +-------+  +-------+
//   | K0-K1 |  | K1-K2 |  | K2-K3 |  -->  gemm_splitk_reduce: C[b] = sum over splits, float4 at a time
//   +-------+  +-------+  +-------+
//
// With splits = 1 it writes C directly and is rung 4. The launcher picks splits so that the grid
// fills the GPU (experiments/conv/ladder.py): what it should buy is up to `splits` times more
// blocks in flight on small-M/N GEMMs, for one extra pass over splits x M x N floats.
//
// Launch: block (THREADS_PER_SIDE^2), grid (ceil(N/BN), ceil(M/BM), batch * splits); out is C (splits = 1)
// or a splits x batch x M x N workspace (strideC = M*N); k_per_split a multiple of BK.
#include "gemm_ladder.h"

KERNEL void __launch_bounds__(LADDER_THREADS)
gemm_splitk(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ out,
            int M, int N, int K, int groups, int batch, long long strideA, long long strideB, long long strideC,
            int k_per_split)
{
    __shared__ __align__(16) ASlice As[2];
    __shared__ __align__(16) BSlice Bs[2];

    const int t = threadIdx.x;
    const int b = blockIdx.z % batch, split = blockIdx.z / batch;  // once per block
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    const int k_begin = split * k_per_split, k_end = min(K, k_begin + k_per_split);
    A += (b % groups) * strideA;
    B += b * strideB;

    SliceLoads loads;
    setup_a_loads(loads, A, M, K, row0, t);
    setup_b_loads(loads, B, N, col0, t);
    const Origin o = warp_tile_origin(t);
    float acc[TM][TN];
    zero(acc);
    double_buffered_loop(loads, B, K, N, k_begin, k_end, o, t, As, Bs, acc);
    out += blockIdx.z * strideC;  // plane split of the workspace, image b (C itself when splits = 1)
    store_tile(out, M, N, row0, col0, o, acc);
}

// C[i] = sum_s partial[s * count + i], i < count: four consecutive elements per thread, float4 loads
// and stores where count % 4 == 0 (every plane then starts 16-byte aligned), grid-stride.
// Launch: block (REDUCE_THREADS), grid (min(ceil(count/(REDUCE_OUTPUTS*REDUCE_THREADS)), 65535)); both from
// the host (experiments/conv/ladder.py), and REDUCE_OUTPUTS is 4: one float4 per thread and step.
static_assert(REDUCE_OUTPUTS == 4, "the reduction handles one float4 per thread and step");
KERNEL void __launch_bounds__(REDUCE_THREADS)
gemm_splitk_reduce(const float* __restrict__ partial, float* __restrict__ C, long long count, int splits)
{
    const bool vec = count % 4 == 0 && aligned16(partial) && aligned16(C);
    const long long step = (long long)REDUCE_OUTPUTS * blockDim.x * gridDim.x;
    for (long long i = (long long)REDUCE_OUTPUTS * (blockIdx.x * blockDim.x + threadIdx.x); i < count; i += step) {
        if (vec) {
            float4 sum = *reinterpret_cast<const float4*>(partial + i);
            for (int s = 1; s < splits; ++s) {
                const float4 v = *reinterpret_cast<const float4*>(partial + s * count + i);
                sum.x += v.x; sum.y += v.y; sum.z += v.z; sum.w += v.w;
            }
            *reinterpret_cast<float4*>(C + i) = sum;
        } else {
            for (long long j = i; j < i + 4 && j < count; ++j) {
                float sum = partial[j];
                for (int s = 1; s < splits; ++s) sum += partial[s * count + j];
                C[j] = sum;
            }
        }
    }
}
