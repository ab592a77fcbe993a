"""Filter layouts: the F x C x KH x KW filter as each algorithm multiplies with it."""
from __future__ import annotations


def prepare_weight(w, algo: str, xp, groups: int = 1):
    """The F x C x KH x KW filter in the layout its algorithm multiplies with:

        im2col  F x (C*KH*KW)     rows are output channels, as the unfolded input's rows
        kn2row  (F*KH*KW) x C     row (f*KH + kh)*KW + kw: one filter tap of one output channel
        scalar  F x C x KH x KW   as given (the kernel reads it as F x (C*KH*KW))

    With groups = G > 1 the filter is F x C/G x KH x KW and the GEMM layouts are stacked per
    group, G x (F/G) x (C/G*KH*KW) and G x (F/G*KH*KW) x C/G (the batched GEMM's A[g]).
    """
    f, c, kh, kw = w.shape
    if algo == "im2col":
        prepared = w.reshape(f, c * kh * kw)
    elif algo == "kn2row":
        prepared = w.transpose(0, 2, 3, 1).reshape(f * kh * kw, c)
    else:
        prepared = w
    if groups > 1 and algo in ("im2col", "kn2row"):
        prepared = prepared.reshape(groups, -1, prepared.shape[1])   # rows of group g are consecutive
    return xp.ascontiguousarray(prepared)
