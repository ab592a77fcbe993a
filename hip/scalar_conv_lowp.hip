// scalar_conv_fp16 / scalar_conv_int8: scalar_conv.hip (scale-and-add, COB output channels per
// thread in registers, filters staged in shared memory, groups) on low-precision storage:
//
//   kernel             x, w (storage)    products and sums    out
//   scalar_conv_fp16   __half            float32 (fmaf)       float32
//   scalar_conv_int8   signed char       int32                int32 (dequantized by the caller)
//
//   x : N x C x H x W     w : F x C/G x KH x KW     out : N x F x HO x WO
//
// Launch: block (SCALAR_PIXELS), grid (ceil(HO*WO/SCALAR_PIXELS), G * ceil((F/G)/COB), N), as scalar_conv.
#define CONVBENCH_HALF
#include "common.h"

// SCALAR_PIXELS (threads per block, one output pixel each) and COB come from the host (experiments/conv/kernel_launch.py).
#define STAGE 32

#define SCALAR_LOWP_BODY(ACC, WIDEN, MADD)                                                        \
    __shared__ ACC ws[STAGE][COB];                                                                \
    const int p = blockIdx.x * SCALAR_PIXELS + threadIdx.x;                                              \
    const bool active = p < HO * WO;                                                              \
    const int oh = active ? p / WO : 0, ow = active ? p % WO : 0;                                 \
    const int group_in = C / G, group_out = F / G, blocks_per_group = (group_out + COB - 1) / COB;\
    const int group = blockIdx.y / blocks_per_group;                                              \
    const int f0 = group * group_out + (blockIdx.y % blocks_per_group) * COB;                     \
    const int f_end = (group + 1) * group_out;                                                    \
    const int taps_per_channel = KH * KW, taps = group_in * taps_per_channel;                     \
    x += ((long long)blockIdx.z * C + (long long)group * group_in) * H * W;                       \
    ACC acc[COB];                                                                                 \
    for (int j = 0; j < COB; ++j) acc[j] = (ACC)0;                                                \
    for (int t0 = 0; t0 < taps; t0 += STAGE) {                                                    \
        for (int i = threadIdx.x; i < STAGE * COB; i += SCALAR_PIXELS) {                                 \
            const int j = i / STAGE, s = i % STAGE;                                               \
            const int f = f0 + j, t = t0 + s;                                                     \
            ws[s][j] = (f < f_end && t < taps) ? WIDEN(w[(long long)f * taps + t]) : (ACC)0;      \
        }                                                                                         \
        __syncthreads();                                                                          \
        if (active) {                                                                             \
            int c = t0 / taps_per_channel, kh = (t0 % taps_per_channel) / KW, kw = t0 % KW;       \
            const int staged = min(STAGE, taps - t0);                                             \
            for (int s = 0; s < staged; ++s) {                                                    \
                const int ih = oh * SH - PH + kh * DH, iw = ow * SW - PW + kw * DW;               \
                const ACC v = (ih >= 0 && ih < H && iw >= 0 && iw < W)                            \
                                  ? WIDEN(x[((long long)c * H + ih) * W + iw]) : (ACC)0;          \
                for (int j = 0; j < COB; ++j) acc[j] = MADD(ws[s][j], v, acc[j]);                 \
                if (++kw == KW) { kw = 0; if (++kh == KH) { kh = 0; ++c; } }                      \
            }                                                                                     \
        }                                                                                         \
        __syncthreads();                                                                          \
    }                                                                                             \
    if (!active) return;                                                                          \
    out += (long long)blockIdx.z * F * HO * WO;                                                   \
    for (int j = 0; j < COB && f0 + j < f_end; ++j) out[(long long)(f0 + j) * HO * WO + p] = acc[j];

#define WIDEN_HALF(v) __half2float(v)
#define WIDEN_INT8(v) ((int)(v))
#define MADD_FLOAT(a, b, c) fmaf(a, b, c)
#define MADD_INT(a, b, c) ((a) * (b) + (c))

KERNEL void __launch_bounds__(SCALAR_PIXELS)
scalar_conv_fp16(const __half* __restrict__ x, const __half* __restrict__ w, float* __restrict__ out,
                 int C, int H, int W, int F, int G, int KH, int KW, int SH, int SW, int PH, int PW,
                 int DH, int DW, int HO, int WO)
{
    SCALAR_LOWP_BODY(float, WIDEN_HALF, MADD_FLOAT)
}

KERNEL void __launch_bounds__(SCALAR_PIXELS)
scalar_conv_int8(const signed char* __restrict__ x, const signed char* __restrict__ w, int* __restrict__ out,
                 int C, int H, int W, int F, int G, int KH, int KW, int SH, int SW, int PH, int PW,
                 int DH, int DW, int HO, int WO)
{
    SCALAR_LOWP_BODY(int, WIDEN_INT8, MADD_INT)
}
