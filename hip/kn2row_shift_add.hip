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
// Launch: block (256), grid (ceil(HO*WO/256), min(F, 65535), N); grid-stride over f.
#include "common.h"

KERNEL void kn2row_shift_add(const float* __restrict__ partial, float* __restrict__ out,
                             int F, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW,
                             int DH, int DW, int HO, int WO)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= HO * WO) return;
    const int oh = p / WO, ow = p % WO;
    const long long plane = (long long)H * W;
    const float* image = partial + (long long)blockIdx.z * F * KH * KW * plane;
    float* image_out = out + (long long)blockIdx.z * F * HO * WO;

    for (int f = blockIdx.y; f < F; f += gridDim.y) {
        float sum = 0.0f;
        for (int kh = 0; kh < KH; ++kh) {
            const int ih = oh * SH - PH + kh * DH;
            if (ih < 0 || ih >= H) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int iw = ow * SW - PW + kw * DW;
                if (iw < 0 || iw >= W) continue;
                sum += image[((long long)f * KH * KW + kh * KW + kw) * plane + (long long)ih * W + iw];
            }
        }
        image_out[(long long)f * HO * WO + p] = sum;
    }
}
