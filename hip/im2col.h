// The body of im2col (im2col.hip) for any element type: im2col_lowp.hip instantiates it for __half
// and int8 with the same layout, launch and index arithmetic. The header of im2col.hip explains it.
#pragma once
#include "common.h"

// ELEMENTWISE_THREADS and ELEMENTWISE_OUTPUTS (4: one float4 per thread) come from the host (experiments/conv/kernel_launch.py).
static_assert(ELEMENTWISE_OUTPUTS == 4, "one float4 of outputs per thread");

// Four consecutive elements of a row: one 128-bit store for float where `vec`, else one at a time.
template <class T>
__device__ __forceinline__ void store_run(T* dst, const T (&v)[4], int valid, bool)
{
    for (int j = 0; j < valid; ++j) dst[j] = v[j];
}
__device__ __forceinline__ void store_run(float* dst, const float (&v)[4], int valid, bool vec)
{
    if (vec && valid == 4) {
        *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
        return;
    }
    for (int j = 0; j < valid; ++j) dst[j] = v[j];
}

template <class T>
__device__ __forceinline__ void im2col_body(const T* __restrict__ x, T* __restrict__ cols, T zero,
                                            int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW,
                                            int DH, int DW, int HO, int WO, unsigned wo_mul, unsigned wo_shift,
                                            unsigned kw_mul, unsigned kw_shift, unsigned taps_mul, unsigned taps_shift)
{
    const int plane = HO * WO;
    const int p0 = ELEMENTWISE_OUTPUTS * (blockIdx.x * ELEMENTWISE_THREADS + threadIdx.x);
    if (p0 >= plane) return;
    int oh[4], ow[4];
    oh[0] = (int)fast_div(p0, wo_mul, wo_shift);
    ow[0] = p0 - oh[0] * WO;
    for (int j = 1; j < 4; ++j) {
        const bool wrap = ow[j - 1] + 1 == WO;
        ow[j] = wrap ? 0 : ow[j - 1] + 1;
        oh[j] = oh[j - 1] + wrap;
    }
    const int rows = C * KH * KW, valid = min(plane - p0, 4);
    const T* image = x + (long long)blockIdx.z * C * H * W;
    T* out = cols + (long long)blockIdx.z * rows * plane + p0;
    const bool vec = plane % 4 == 0 && (reinterpret_cast<unsigned long long>(cols) & 15) == 0;

    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const int c = (int)fast_div(r, taps_mul, taps_shift), tap = r - c * KH * KW;
        const int kh = (int)fast_div(tap, kw_mul, kw_shift), kw = tap - kh * KW;
        const T* channel = image + (long long)c * H * W;
        T v[4];
        for (int j = 0; j < 4; ++j) {
            const int ih = oh[j] * SH - PH + kh * DH, iw = ow[j] * SW - PW + kw * DW;
            v[j] = (j < valid && ih >= 0 && ih < H && iw >= 0 && iw < W) ? channel[ih * W + iw] : zero;
        }
        store_run(out + (long long)r * plane, v, valid, vec);
    }
}
