// depthwise_conv: direct depthwise convolution (groups == C), no GEMM, no workspace.
//
//   x   : N x C x H x W          w : F x KH x KW  (the F x 1 x KH x KW filter; F = M*C, M the multiplier)
//   out : N x F x HO x WO
//
//   out[n][f][oh][ow] = sum_{kh,kw} w[f][kh][kw] * x[n][f / M][oh*SH-PH+kh*DH][ow*SW-PW+kw*DW]
//
// Every output channel reads one input channel only, so there is nothing to share between output
// channels (no GEMM: each group's "GEMM" would be 1 x HO*WO x KH*KW) and the layer is memory bound:
// the kernel reads each input pixel from the caches KH*KW times and writes each output once.
//
// Each thread computes 4 consecutive outputs of the flat index i = f*HO*WO + p of one image, so
// consecutive threads write consecutive 16 bytes (one 128-bit store where F*HO*WO % 4 == 0), and
// small late-layer planes (7x7) still fill whole blocks, which then span several channels. The
// filters of the block's channels (a few, or one) are staged once in shared memory, where every
// thread of a channel reads the same tap (a broadcast); a block whose channels' filters do not fit
// (huge kernels on 1x1 planes) reads them from global memory instead.
//
//   i:   | t0: 4 outputs | t1: 4 outputs | ...      (f, oh, ow) of the first from fast_div, once;
//        |<- channel f ->|<- channel f+1 ...           the others step along the row, then the plane
//
// No integer division anywhere: fast_div (common.h, constants from the host) splits i into
// (f, oh, ow) and finds the input channel f / M.
//
// Launch: block (DEPTHWISE_THREADS), grid (ceil(F*HO*WO / (DEPTHWISE_OUTPUTS*DEPTHWISE_THREADS)), 1, N); F*HO*WO < 2^31.
#include "common.h"

// DEPTHWISE_THREADS and DEPTHWISE_OUTPUTS (outputs per thread) come from the host (experiments/conv/kernel_launch.py).
#define DW_SHARED_TAPS 2304  // 9 KiB: 256 channels of a 3x3 filter (the most a block spans on planes of >= 4 pixels)

KERNEL void __launch_bounds__(DEPTHWISE_THREADS)
depthwise_conv(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out,
               int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
               int DH, int DW, int HO, int WO, unsigned plane_mul, unsigned plane_shift,
               unsigned wo_mul, unsigned wo_shift, unsigned multiplier_mul, unsigned multiplier_shift)
{
    __shared__ float ws[DW_SHARED_TAPS];

    const int plane = HO * WO, total = F * plane, taps = KH * KW;
    const int first = blockIdx.x * DEPTHWISE_THREADS * DEPTHWISE_OUTPUTS;
    const int last = min(first + DEPTHWISE_THREADS * DEPTHWISE_OUTPUTS, total) - 1;
    const int f_first = (int)fast_div(first, plane_mul, plane_shift);
    const int staged_taps = ((int)fast_div(last, plane_mul, plane_shift) - f_first + 1) * taps;
    const bool staged = staged_taps <= DW_SHARED_TAPS;  // the same for every thread of the block
    if (staged)
        for (int t = threadIdx.x; t < staged_taps; t += DEPTHWISE_THREADS) ws[t] = w[(long long)f_first * taps + t];
    __syncthreads();

    const int i0 = first + DEPTHWISE_OUTPUTS * threadIdx.x;
    if (i0 >= total) return;  // after the only barrier
    int f = (int)fast_div(i0, plane_mul, plane_shift);
    const int p = i0 - f * plane;
    int oh = (int)fast_div(p, wo_mul, wo_shift), ow = p - oh * WO;
    const int valid = min(total - i0, DEPTHWISE_OUTPUTS);
    const float* images = x + (long long)blockIdx.z * C * H * W;

    float acc[DEPTHWISE_OUTPUTS];
    for (int j = 0; j < DEPTHWISE_OUTPUTS; ++j) {
        float sum = 0.0f;
        if (j < valid) {
            const float* filter = staged ? ws + (f - f_first) * taps : w + (long long)f * taps;
            const float* image = images + (long long)fast_div(f, multiplier_mul, multiplier_shift) * H * W;
            for (int kh = 0; kh < KH; ++kh) {
                const int ih = oh * SH - PH + kh * DH;
                if (ih < 0 || ih >= H) continue;
                for (int kw = 0; kw < KW; ++kw) {
                    const int iw = ow * SW - PW + kw * DW;
                    if (iw < 0 || iw >= W) continue;
                    sum = fmaf(filter[kh * KW + kw], image[ih * W + iw], sum);
                }
            }
        }
        acc[j] = sum;
        if (++ow == WO) { ow = 0; if (++oh == HO) { oh = 0; ++f; } }
    }
    float* dst = out + (long long)blockIdx.z * total + i0;
    if (valid == DEPTHWISE_OUTPUTS && total % 4 == 0 && (reinterpret_cast<unsigned long long>(out) & 15) == 0) {
        *reinterpret_cast<float4*>(dst) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    } else {
        for (int j = 0; j < valid; ++j) dst[j] = acc[j];
    }
}
