// scalar_conv: convolution by scalar matrix multiplication (scale-and-add), no workspace.
//
//   x   : N x C x H x W          w : F x C/G x KH x KW  (read as F x TAPS, TAPS = C/G*KH*KW)
//   out : N x F x HO x WO
//
//   for each tap t = (c, kh, kw):  out[n][f][oh][ow] += w[f][t] * x[n][c][oh*SH-PH+kh*DH][ow*SW-PW+kw*DW]
//
// Unblocked, every output channel re-reads the whole shifted input: about 0.17 FLOP/B, hopelessly
// memory bound. Here each thread owns one output pixel and COB output channels in registers, so
// each input value it loads feeds COB multiply-adds. The block's COB filters are staged in shared
// memory STAGE taps at a time; all threads read the same weight (a broadcast):
//
//   ws[STAGE][COB]   <- w[f0 .. f0+COB)[t0 .. t0+STAGE)
//   thread p:  v = x(shifted by tap t, pixel p);  acc[0..COB) += ws[t][0..COB) * v
//
// Groups (G > 1): output channel f belongs to group f / (F/G) and only sees that group's C/G input
// channels, so the filter is F x (C/G*KH*KW) and a block's COB channels never straddle two groups:
// blockIdx.y = group * ceil((F/G)/COB) + channel block within the group. G = 1 is the plain case.
//
// Launch: block (SCALAR_PIXELS), grid (ceil(HO*WO/SCALAR_PIXELS), G * ceil((F/G)/COB), N).
#include "common.h"

// SCALAR_PIXELS (threads per block, one output pixel each) and COB come from the host (experiments/conv/kernel_launch.py).
#define STAGE 32

KERNEL void __launch_bounds__(SCALAR_PIXELS)
scalar_conv(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out,
            int C, int H, int W, int F, int G, int KH, int KW, int SH, int SW, int PH, int PW,
            int DH, int DW, int HO, int WO)
{
    __shared__ float ws[STAGE][COB];

    const int p = blockIdx.x * SCALAR_PIXELS + threadIdx.x;
    const bool active = p < HO * WO;  // inactive threads still stage weights and meet the barriers
    const int oh = active ? p / WO : 0, ow = active ? p % WO : 0;
    const int group_in = C / G, group_out = F / G, blocks_per_group = (group_out + COB - 1) / COB;
    const int group = blockIdx.y / blocks_per_group;
    const int f0 = group * group_out + (blockIdx.y % blocks_per_group) * COB;
    const int f_end = (group + 1) * group_out;  // first channel of the next group
    const int taps = group_in * KH * KW;
    const float* image = x + ((long long)blockIdx.z * C + (long long)group * group_in) * H * W;

    float acc[COB];
    for (int j = 0; j < COB; ++j) acc[j] = 0.0f;

    int c = 0, kh = 0, kw = 0;  // the tap t0 + s, stepped (no division per stage or tap)
    for (int t0 = 0; t0 < taps; t0 += STAGE) {
        for (int i = threadIdx.x; i < STAGE * COB; i += SCALAR_PIXELS) {
            const int j = i / STAGE, s = i % STAGE;  // consecutive threads read consecutive taps
            const int f = f0 + j, t = t0 + s;
            ws[s][j] = (f < f_end && t < taps) ? w[(long long)f * taps + t] : 0.0f;
        }
        __syncthreads();

        if (active) {
            const int staged = min(STAGE, taps - t0);
#pragma unroll 1  // unrolled, the stepped tap indices of several taps at once spill on sm_90
            for (int s = 0; s < staged; ++s) {
                const int ih = oh * SH - PH + kh * DH, iw = ow * SW - PW + kw * DW;
                const float v = (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    ? image[((long long)c * H + ih) * W + iw] : 0.0f;
                for (int j = 0; j < COB; ++j) acc[j] = fmaf(ws[s][j], v, acc[j]);
                if (++kw == KW) { kw = 0; if (++kh == KH) { kh = 0; ++c; } }
            }
        }
        __syncthreads();  // the next stage overwrites ws
    }

    if (!active) return;
    float* image_out = out + (long long)blockIdx.z * F * HO * WO;
    for (int j = 0; j < COB && f0 + j < f_end; ++j) image_out[(long long)(f0 + j) * HO * WO + p] = acc[j];
}
