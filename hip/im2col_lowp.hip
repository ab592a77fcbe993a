// im2col_fp16 / im2col_int8: im2col.hip on half-precision or int8 inputs (same layout, launch and
// index arithmetic: the body in im2col.h; padding is written as zero, which is exact in both types).
//
//   x    : N x C x H x W                    (__half or signed char, contiguous)
//   cols : N x (C*KH*KW) x (HO*WO)          row r = (c*KH + kh)*KW + kw, column p = oh*WO + ow
//
// The unfolded input is the k*k inflation of im2col, here in 2 or 1 bytes per element instead of 4.
//
// Launch: as im2col.hip: block (ELEMENTWISE_THREADS), grid (ceil(HO*WO/(ELEMENTWISE_OUTPUTS*ELEMENTWISE_THREADS)), min(C*KH*KW, 65535), N).
#define CONVBENCH_HALF
#include "im2col.h"

KERNEL void __launch_bounds__(ELEMENTWISE_THREADS)
im2col_fp16(const __half* __restrict__ x, __half* __restrict__ cols,
            int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int HO, int WO,
            unsigned wo_mul, unsigned wo_shift, unsigned kw_mul, unsigned kw_shift, unsigned taps_mul, unsigned taps_shift)
{
    im2col_body(x, cols, __float2half_rn(0.0f), C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, HO, WO,
                wo_mul, wo_shift, kw_mul, kw_shift, taps_mul, taps_shift);
}

KERNEL void __launch_bounds__(ELEMENTWISE_THREADS)
im2col_int8(const signed char* __restrict__ x, signed char* __restrict__ cols,
            int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int HO, int WO,
            unsigned wo_mul, unsigned wo_shift, unsigned kw_mul, unsigned kw_shift, unsigned taps_mul, unsigned taps_shift)
{
    im2col_body(x, cols, (signed char)0, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, HO, WO,
                wo_mul, wo_shift, kw_mul, kw_shift, taps_mul, taps_shift);
}
