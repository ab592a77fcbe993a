// A classic shared-memory tiled matrix multiplication, as a GPU course's first assignment writes it:
// C = A * B, row-major, one thread per element of C, TILE_WIDTH x TILE_WIDTH tiles of A and B staged
// in shared memory. Written against convbench's contract (docs/your-kernel.md), host code and all.
#include <hip/hip_runtime.h>

#ifndef TILE_WIDTH
#define TILE_WIDTH 16
#endif

__global__ void tiled_matmul(const float* A, const float* B, float* C, int M, int N, int K)
{
    __shared__ float As[TILE_WIDTH][TILE_WIDTH];
    __shared__ float Bs[TILE_WIDTH][TILE_WIDTH];
    const int row = blockIdx.y * TILE_WIDTH + threadIdx.y;
    const int col = blockIdx.x * TILE_WIDTH + threadIdx.x;
    float acc = 0.0f;
    for (int t = 0; t < (K + TILE_WIDTH - 1) / TILE_WIDTH; ++t) {
        const int a_col = t * TILE_WIDTH + threadIdx.x, b_row = t * TILE_WIDTH + threadIdx.y;
        As[threadIdx.y][threadIdx.x] = (row < M && a_col < K) ? A[row * K + a_col] : 0.0f;
        Bs[threadIdx.y][threadIdx.x] = (b_row < K && col < N) ? B[b_row * N + col] : 0.0f;
        __syncthreads();
        for (int k = 0; k < TILE_WIDTH; ++k)
            acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
        __syncthreads();
    }
    if (row < M && col < N)
        C[row * N + col] = acc;
}

#ifndef CONVBENCH
#include <stdio.h>
#include <stdlib.h>
int main()
{
    const int M = 100, N = 70, K = 50;
    float *A, *B, *C;
    hipMalloc(&A, M * K * sizeof(float));
    hipMalloc(&B, K * N * sizeof(float));
    hipMalloc(&C, M * N * sizeof(float));
    dim3 block(TILE_WIDTH, TILE_WIDTH), grid((N + TILE_WIDTH - 1) / TILE_WIDTH, (M + TILE_WIDTH - 1) / TILE_WIDTH);
    hipLaunchKernelGGL(tiled_matmul, grid, block, 0, 0, A, B, C, M, N, K);
    hipDeviceSynchronize();
    printf("done\n");
    return 0;
}
#endif
