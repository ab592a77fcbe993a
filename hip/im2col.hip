// im2col: unfold one batch of images into the GEMM operand of the im2col algorithm.
//
//   x    : N x C x H x W                    (float32, contiguous)
//   cols : N x (C*KH*KW) x (HO*WO)          row r = (c*KH + kh)*KW + kw, column p = oh*WO + ow
//
//   cols[n][r][p] = x[n][c][oh*SH - PH + kh*DH][ow*SW - PW + kw*DW], or 0 in the padding.
//
// Each input pixel is copied once per kernel offset that sees it: the k*k inflation of the
// input that the following GEMM (C_out x C*KH*KW times cols) pays for in memory traffic. The
// kernel is a copy, memory bound, so it issues as little as it can per element:
//
//   block (blockIdx.x, r):  one row r of cols, ELEMENTWISE_OUTPUTS * ELEMENTWISE_THREADS consecutive columns
//   thread:                 4 consecutive columns p0..p0+3, one 128-bit store where the row is
//                           16-byte aligned (HO*WO % 4 == 0), scalar stores otherwise
//
//   cols row r: | t0: p0..p3 | t1: p4..p7 | ... |      consecutive threads, consecutive 16 bytes
//
// No integer division: the row's (c, kh, kw) and the first pixel's (oh, ow) come from fast_div
// (common.h: a multiply-high and a shift, with constants the host computed), once per thread; the
// other three pixels step along the output row.
//
// Launch: block (ELEMENTWISE_THREADS), grid (ceil(HO*WO / (ELEMENTWISE_OUTPUTS*ELEMENTWISE_THREADS)), min(C*KH*KW, 65535), N);
// rows beyond gridDim.y are covered by a grid-stride loop.
#include "im2col.h"

KERNEL void __launch_bounds__(ELEMENTWISE_THREADS)
im2col(const float* __restrict__ x, float* __restrict__ cols,
       int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW, int HO, int WO,
       unsigned wo_mul, unsigned wo_shift, unsigned kw_mul, unsigned kw_shift, unsigned taps_mul, unsigned taps_shift)
{
    im2col_body(x, cols, 0.0f, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, HO, WO,
                wo_mul, wo_shift, kw_mul, kw_shift, taps_mul, taps_shift);
}
