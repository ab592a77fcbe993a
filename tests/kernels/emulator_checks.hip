// Kernels that test the emulator runtime itself (tests/test_emulator.py), not convolutions.
// Plain HIP/CUDA like the kernels of hip/ (only `scalars` would need cuda_fp16.h on a GPU, for __half).
#include "common.h"

#ifndef TILE
#define TILE 16
#endif

// -DDROP_SYNC=1 removes the barriers of matmul_tiled: the emulator must then give a wrong answer.
#ifdef DROP_SYNC
#define BARRIER()
#else
#define BARRIER() __syncthreads()
#endif

// C = A * B (M x K times K x N, row-major), one element of C per thread, K walked in TILE-wide
// slices staged in shared memory. Block (TILE, TILE), grid (ceil(N/TILE), ceil(M/TILE)).
KERNEL void __launch_bounds__(TILE * TILE)
matmul_tiled(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
             int M, int N, int K)
{
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        As[ty][tx] = (row < M && k0 + tx < K) ? A[(long long)row * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(long long)(k0 + ty) * N + col] : 0.0f;
        BARRIER();
        for (int k = 0; k < TILE; ++k) acc = fmaf(As[ty][k], Bs[k][tx], acc);
        BARRIER();
    }
    if (row < M && col < N) C[(long long)row * N + col] = acc;
}

// Each thread writes its 12 built-in coordinates at out[12 * t], t = its linear index in the grid.
KERNEL void write_indices(unsigned int* out)
{
    const unsigned int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned int* o = out + 12ull * (block * (blockDim.x * blockDim.y * blockDim.z) + thread);
    o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
    o[3] = blockIdx.x;  o[4] = blockIdx.y;  o[5] = blockIdx.z;
    o[6] = blockDim.x;  o[7] = blockDim.y;  o[8] = blockDim.z;
    o[9] = gridDim.x;   o[10] = gridDim.y;  o[11] = gridDim.z;
}

KERNEL void write_warp_size(int* out) { out[0] = warpSize; }

// out[i + shift] = 1 for i < n: shift 1 writes one element past the end, -1 one before the start.
KERNEL void write_shifted(float* out, int n, int shift)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i + shift] = 1.0f;
}

// Every thread of the grid adds 1 to *count and its global index to *sum: atomics across blocks
// that run concurrently on the emulator's workers.
KERNEL void count_threads(unsigned int* count, unsigned long long* sum)
{
    atomicAdd(count, 1u);
    atomicAdd(sum, (unsigned long long)(blockIdx.x * blockDim.x + threadIdx.x));
}

// Threads with threadIdx.x >= active return before the barrier that the others wait at.
KERNEL void divergent_barrier(float* out, int active)
{
    if ((int)threadIdx.x >= active) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// Thread `deep` fills a local array of 80 KB, more than a fiber's 64 KiB stack: it runs into the stack
// below its own (the previous thread's), which the emulator must report instead of computing on. The
// array lives in a function of its own, so that only that thread's frame grows.
__device__ __noinline__ float fill_deep_array()
{
    volatile float local[20000];
    for (int i = 0; i < 20000; ++i) local[i] = (float)i;
    return local[0] + local[19999];
}

KERNEL void deep_stack(float* out, int deep)
{
    out[threadIdx.x] = (int)threadIdx.x == deep ? fill_deep_array() : 1.0f;
}

// Per-block sum of x through dynamic shared memory (blockDim.x floats, a power of two), and the
// number of positive x per block through __syncthreads_count.
KERNEL void block_sum(const float* __restrict__ x, float* __restrict__ sums, int* __restrict__ positives, int n)
{
    extern __shared__ float partial[];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = i < n ? x[i] : 0.0f;
    partial[threadIdx.x] = v;
    const int count = __syncthreads_count(v > 0.0f);
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        sums[blockIdx.x] = partial[0];
        positives[blockIdx.x] = count;
    }
}

// Scalars of every common type reach the kernel intact.
KERNEL void scalars(double* out, int i, unsigned int u, long long ll, float f, double d, __half h, bool b)
{
    out[0] = i; out[1] = u; out[2] = (double)ll; out[3] = f; out[4] = d; out[5] = (float)h; out[6] = b;
}
