// kn2row_shift_add: the second step of kn2row, summing the k*k shifted partial planes.
//
// The GEMM step computed, per image, one partial plane per (output channel f, offset kh, kw):
//
//   partial : N x (F*KH*KW) x (H*W)        row (f*KH + kh)*KW + kw, i.e. filter tap (kh, kw)
//                                          applied to every input pixel
//   out     : N x F x HO x WO
//
//   out[n][f][oh][ow] = sum_{kh,kw} partial[n][(f*KH + kh)*KW + kw][ih][iw]
//                       with ih = oh*SH - PH + kh*DH, iw = ow*SW - PW + kw*DW inside the image
//
// Stride, padding and dilation are all handled here: the GEMM saw the unpadded input.
// The partial planes are the k*k output inflation of kn2row.
//
// Memory bound: each thread sums 4 consecutive output pixels of one channel (one 128-bit store
// where HO*WO % 4 == 0), consecutive threads consecutive pixels. No integer division: the first
// pixel's (oh, ow) comes from fast_div (common.h) once per thread, the other three step along the row.
//
// Launch: block (ELEMENTWISE_THREADS), grid (ceil(HO*WO / (ELEMENTWISE_OUTPUTS*ELEMENTWISE_THREADS)), min(F, 65535), N);
// grid-stride over f.
#include "common.h"

// ELEMENTWISE_THREADS and ELEMENTWISE_OUTPUTS (4: one float4 per thread) come from the host (experiments/conv/kernel_launch.py).
static_assert(ELEMENTWISE_OUTPUTS == 4, "one float4 of outputs per thread");

KERNEL void __launch_bounds__(ELEMENTWISE_THREADS)
kn2row_shift_add(const float* __restrict__ partial, float* __restrict__ out,
                 int F, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW,
                 int DH, int DW, int HO, int WO, unsigned wo_mul, unsigned wo_shift)
{
    const int plane_out = HO * WO;
    const int p0 = ELEMENTWISE_OUTPUTS * (blockIdx.x * ELEMENTWISE_THREADS + threadIdx.x);
    if (p0 >= plane_out) return;
    int oh[4], ow[4];
    oh[0] = (int)fast_div(p0, wo_mul, wo_shift);
    ow[0] = p0 - oh[0] * WO;
    for (int j = 1; j < 4; ++j) {
        const bool wrap = ow[j - 1] + 1 == WO;
        ow[j] = wrap ? 0 : ow[j - 1] + 1;
        oh[j] = oh[j - 1] + wrap;
    }
    const int valid = min(plane_out - p0, 4);
    const long long plane = (long long)H * W;
    const float* image = partial + (long long)blockIdx.z * F * KH * KW * plane;
    float* image_out = out + (long long)blockIdx.z * F * plane_out + p0;
    const bool vec = plane_out % 4 == 0 && (reinterpret_cast<unsigned long long>(out) & 15) == 0;

    for (int f = blockIdx.y; f < F; f += gridDim.y) {
        float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        const float* taps = image + (long long)f * KH * KW * plane;
        for (int kh = 0; kh < KH; ++kh) {
            for (int kw = 0; kw < KW; ++kw, taps += plane) {
                for (int j = 0; j < 4; ++j) {
                    const int ih = oh[j] * SH - PH + kh * DH, iw = ow[j] * SW - PW + kw * DW;
                    if (j < valid && ih >= 0 && ih < H && iw >= 0 && iw < W) sum[j] += taps[ih * W + iw];
                }
            }
        }
        float* dst = image_out + (long long)f * plane_out;
        if (vec && valid == 4) {
            *reinterpret_cast<float4*>(dst) = make_float4(sum[0], sum[1], sum[2], sum[3]);
        } else {
            for (int j = 0; j < valid; ++j) dst[j] = sum[j];
        }
    }
}
