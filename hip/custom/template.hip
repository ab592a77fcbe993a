// Your own GEMM kernel for convbench: copy this file, write your kernel, then
//     make check-kernel SOURCE=my_gemm.hip TILE=16                         (any laptop: the emulator)
//     python run.py -m algo=im2col gemm=custom,vendor gemm.source=my_gemm.hip gemm.tile=8,16,32   (a GPU)
// docs/your-kernel.md has the whole contract; in short:
//   - C = A * B, row-major: A is M x K, B is K x N, C is M x N, any M, N, K >= 1 (mind the edges);
//   - one launch per GEMM; the thread block is TILE x TILE threads and, by default, each block computes a
//     TILE x TILE tile of C: grid (ceil(N / TILE), ceil(M / TILE)). A block that computes more (a 4 x 4
//     micro-tile per thread: 4*TILE x 4*TILE) says so with gemm.block_tile=[rows,columns];
//   - the tile arrives as -DTILE=t (gemm.tile=t); a kernel whose macro has another name (TILE_WIDTH)
//     sets gemm.tile_macro=TILE_WIDTH. Give it a default under #ifndef, as below, never a bare #define;
//   - convbench includes hip/custom/convbench_custom.h before this file (the HIP/CUDA subset of hip/common.h)
//     and defines CONVBENCH: host code (main, hipMalloc, printf) goes inside #ifndef CONVBENCH.
#include <hip/hip_runtime.h>

#ifndef TILE
#define TILE 16
#endif

// The simplest kernel that keeps the contract: one thread per element of C, straight from global memory.
__global__ void my_gemm(const float* A, const float* B, float* C, int M, int N, int K)
{
    const int row = blockIdx.y * TILE + threadIdx.y;
    const int col = blockIdx.x * TILE + threadIdx.x;
    if (row >= M || col >= N) return;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k)
        acc += A[(long long)row * K + k] * B[(long long)k * N + col];
    C[(long long)row * N + col] = acc;
}

#ifndef CONVBENCH
// Your own test program (PA1's main) can stay here: convbench never compiles it.
#endif
