// Conversions around the low-precision GEMMs (one thread per element, grid-stride):
//
//   to_half          y = (half) x, round to nearest even                       (fp16 inputs)
//   quantize_int8    q = clamp(rint(x * inv_scale), -127, 127)                 (int8 inputs)
//                    symmetric, per tensor: inv_scale = 127 / (calibrated max |x|)
//   dequantize_int32 y[b][r][p] = (float) acc[b][r][p] * scale[r / rows_per_scale]
//                    scale[f] = activation scale * weight scale of output channel f; rows_per_scale
//                    is 1 for im2col and scalar (row = channel), KH*KW for kn2row's partial planes
//
// rintf rounds half to even, as numpy.rint: the numpy reference gives the same int8 values.
// Launch: block (256), grid (min(ceil(n/256), 65535)) for all three.
#define CONVBENCH_HALF
#include "common.h"

KERNEL void to_half(const float* __restrict__ x, __half* __restrict__ y, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

KERNEL void quantize_int8(const float* __restrict__ x, signed char* __restrict__ q, float inv_scale, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = rintf(x[i] * inv_scale);
        q[i] = (signed char)fminf(fmaxf(v, -127.0f), 127.0f);
    }
}

KERNEL void dequantize_int32(const int* __restrict__ acc, const float* __restrict__ scale, float* __restrict__ y,
                             int rows, int cols, int rows_per_scale, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const int r = (int)((i / cols) % rows);
        y[i] = (float)acc[i] * scale[r / rows_per_scale];
    }
}
