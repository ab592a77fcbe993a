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
// One thread per output pixel, over the flat index i = f*HO*WO + p of one image: consecutive
// threads write consecutive pixels (coalesced), and small late-layer planes (7x7) still fill whole
// blocks, which then span several channels. The filters of the block's channels (a few, or one)
// are staged once in shared memory, where every thread of a channel reads the same tap (a
// broadcast); a block whose channels' filters do not fit (huge kernels on 1x1 planes) reads them
// from global memory instead.
//
// Launch: block (DW_THREADS), grid (ceil(F*HO*WO / DW_THREADS), 1, N).
#include "common.h"

#define DW_THREADS 256
#define DW_SHARED_TAPS 2304  // 9 KiB: 256 channels of a 3x3 filter (the most a block spans, on 1x1 planes)

KERNEL void __launch_bounds__(DW_THREADS)
depthwise_conv(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out,
               int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW,
               int DH, int DW, int HO, int WO)
{
    __shared__ float ws[DW_SHARED_TAPS];

    const long long plane = (long long)HO * WO, total = (long long)F * plane;
    const long long first = (long long)blockIdx.x * DW_THREADS;
    const long long last = min(first + DW_THREADS, total) - 1;
    const int taps = KH * KW;
    const int f_first = (int)(first / plane);
    const int staged_taps = ((int)(last / plane) - f_first + 1) * taps;
    const bool staged = staged_taps <= DW_SHARED_TAPS;  // the same for every thread of the block
    if (staged)
        for (int t = threadIdx.x; t < staged_taps; t += DW_THREADS) ws[t] = w[(long long)f_first * taps + t];
    __syncthreads();

    const long long i = first + threadIdx.x;
    if (i >= total) return;  // after the only barrier
    const int f = (int)(i / plane), p = (int)(i % plane);
    const int oh = p / WO, ow = p % WO;
    const float* filter = staged ? ws + (f - f_first) * taps : w + (long long)f * taps;
    const float* image = x + ((long long)blockIdx.z * C + f / (F / C)) * H * W;

    float acc = 0.0f;
    for (int kh = 0; kh < KH; ++kh) {
        const int ih = oh * SH - PH + kh * DH;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < KW; ++kw) {
            const int iw = ow * SW - PW + kw * DW;
            if (iw < 0 || iw >= W) continue;
            acc = fmaf(filter[kh * KW + kw], image[(long long)ih * W + iw], acc);
        }
    }
    out[(long long)blockIdx.z * total + i] = acc;
}
