// im2col: unfold one batch of images into the GEMM operand of the im2col algorithm.
//
//   x    : N x C x H x W                    (float32, contiguous)
//   cols : N x (C*KH*KW) x (HO*WO)          row r = (c*KH + kh)*KW + kw, column p = oh*WO + ow
//
//   cols[n][r][p] = x[n][c][oh*SH - PH + kh*DH][ow*SW - PW + kw*DW], or 0 in the padding.
//
// Each input pixel is copied once per kernel offset that sees it: the k*k inflation of the
// input that the following GEMM (C_out x C*KH*KW times cols) pays for in memory traffic.
//
// Launch: block (256), grid (ceil(HO*WO/256), min(C*KH*KW, 65535), N). Rows beyond
// gridDim.y are covered by a grid-stride loop; consecutive threads write consecutive p.
#include "common.h"

KERNEL void im2col(const float* __restrict__ x, float* __restrict__ cols,
                   int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW,
                   int DH, int DW, int HO, int WO)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= HO * WO) return;
    const int oh = p / WO, ow = p % WO;
    const int rows = C * KH * KW;
    const float* image = x + (long long)blockIdx.z * C * H * W;
    float* out = cols + (long long)blockIdx.z * rows * HO * WO;

    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const int c = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW;
        const int ih = oh * SH - PH + kh * DH, iw = ow * SW - PW + kw * DW;
        const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
        out[(long long)r * HO * WO + p] = inside ? image[((long long)c * H + ih) * W + iw] : 0.0f;
    }
}
