// im2col_fp16 / im2col_int8: im2col.hip on half-precision or int8 inputs (same layout, launch and
// grid-stride loop; padding is written as zero, which is exact in both types).
//
//   x    : N x C x H x W                    (__half or signed char, contiguous)
//   cols : N x (C*KH*KW) x (HO*WO)          row r = (c*KH + kh)*KW + kw, column p = oh*WO + ow
//
// The unfolded input is the k*k inflation of im2col, here in 2 or 1 bytes per element instead of 4.
//
// Launch: block (256), grid (ceil(HO*WO/256), min(C*KH*KW, 65535), N).
#define CONVBENCH_HALF
#include "common.h"

#define IM2COL_BODY(ZERO)                                                                         \
    const int p = blockIdx.x * blockDim.x + threadIdx.x;                                          \
    if (p >= HO * WO) return;                                                                     \
    const int oh = p / WO, ow = p % WO;                                                           \
    const int rows = C * KH * KW;                                                                 \
    x += (long long)blockIdx.z * C * H * W;                                                       \
    cols += (long long)blockIdx.z * rows * HO * WO;                                               \
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {                                          \
        const int c = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW;                             \
        const int ih = oh * SH - PH + kh * DH, iw = ow * SW - PW + kw * DW;                       \
        const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;                               \
        cols[(long long)r * HO * WO + p] = inside ? x[((long long)c * H + ih) * W + iw] : ZERO;   \
    }

KERNEL void im2col_fp16(const __half* __restrict__ x, __half* __restrict__ cols,
                        int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW,
                        int DH, int DW, int HO, int WO)
{
    IM2COL_BODY(__float2half_rn(0.0f))
}

KERNEL void im2col_int8(const signed char* __restrict__ x, signed char* __restrict__ cols,
                        int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW,
                        int DH, int DW, int HO, int WO)
{
    IM2COL_BODY((signed char)0)
}
