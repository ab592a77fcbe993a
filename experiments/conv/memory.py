"""Memory a convolution's workspace needs, against what its runtime has free, checked before allocating.

im2col inflates the input and kn2row the output k*k times (accounting.py): on a large kernel at a
large stride (a ViT patch embedding: 16x16 at stride 16) kn2row asks for tens of GiB of partial
planes. Without this check numpy dies with a raw MemoryError, or the machine swaps first.

What one call allocates on a kernel runtime (experiments/conv/kernel_launch.py) at its peak, e = the
element size of the variant's dtype (4 fp32, 2 fp16, 1 int8), out = the N x F x Ho x Wo float32 output:

    input copy     q = N x C x H x W x e, fp16 and int8 (the input at the filter's precision)
    im2col         q + columns (N x C*k*k x Ho x Wo x e; none for 1x1 stride 1) + GEMM result
                   + the larger of: during the GEMM, its extra buffers; after it, int8's dequantized out
    kn2row         q + planes (the GEMM result, N x F*k*k x H x W, float32 or int32)
                   + the larger of: the GEMM's extra buffers; int8's float32 planes + the shift-add's out
    scalar         q + out (+ int8's int32 accumulator)
    GEMM extras    split-K's splits x (GEMM result) float32 partial sums (rungs splitk and fold; the split
                   count depends on the device's SMs: experiments/conv/ladder.py, split_plan); vendor int8's
                   torch._int_mm operands (the folded int8 columns, one group's int32 result)
    int8           + the F float32 output scales
"""
from __future__ import annotations

from pathlib import Path

import psutil

from . import ladder
from .accounting import ELEMENT_BYTES
from .geometry import ConvGeometry
from .variant import ALGORITHMS, Variant

GiB = 2**30
_CGROUP = Path("/sys/fs/cgroup")


class WorkspaceTooLargeError(MemoryError):
    """A layer's workspace does not fit in the memory its runtime has free; names the layer and what fits."""


def gib(n_bytes: float) -> str:
    value = n_bytes / GiB
    return f"{value:.3g} GiB" if value < 100 else f"{value:,.0f} GiB"


def host_free_bytes() -> int:
    """Memory this process can still take: the kernel's estimate of available memory, bounded by
    this container's cgroup limit where one is set (CI runners, SLURM jobs)."""
    free = psutil.virtual_memory().available
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((_CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, free)


def free_bytes(runtime) -> tuple[int | None, str]:
    """(bytes free, where) for the memory the runtime's arrays live in: the GPU's or the host's; None when
    the device cannot say (then nothing is refused on a guess)."""
    if runtime.is_gpu:
        cupy = runtime.xp
        try:
            free, _total = cupy.cuda.runtime.memGetInfo()
            return free + cupy.get_default_memory_pool().free_bytes(), f"the GPU ({runtime.device_name()})"
        except Exception:   # no driver answer (CuPy's CUDARuntimeError, a stand-in array module)
            return None, "the GPU"
    return host_free_bytes(), "the host"


def output_bytes(g: ConvGeometry) -> int:
    return 4 * g.batch * g.out_channels * g.out_h * g.out_w


def peak_bytes(g: ConvGeometry, variant: Variant, sms: int = ladder.DEFAULT_SMS) -> int:
    """What one call of ``variant`` on ``g`` allocates at its peak (the module's table), on a device of ``sms``
    multiprocessors (split-K's share; DEFAULT_SMS, an H100's, where the device is not known yet)."""
    e, int8 = ELEMENT_BYTES[variant.dtype], variant.dtype == "int8"
    n, out = g.batch, output_bytes(g)
    inputs = n * g.in_channels * g.in_h * g.in_w
    q = inputs * e if variant.dtype != "fp32" else 0
    scales = 4 * g.out_channels if int8 else 0
    if g.is_depthwise or variant.algo not in ("im2col", "kn2row", "scalar"):
        return out + (inputs * (4 + e) if q else 0)   # depthwise: the input rounded to the dtype, in float32
    if variant.algo == "scalar":
        return q + out + (out if int8 else 0) + scales
    if variant.algo == "im2col":
        m, k, cols = g.group_out_channels, g.group_in_channels * g.taps, g.out_h * g.out_w
        result = out
    else:
        m, k, cols = g.group_out_channels * g.taps, g.group_in_channels, g.in_h * g.in_w
        result = 4 * n * g.out_channels * g.taps * cols
    extras = 0
    if variant.gemm == "blocked" and variant.rung in ("splitk", "fold") and variant.dtype == "fp32":
        extras = ladder.split_plan(variant.rung, variant.tile, m, cols, k, n * g.groups, g.groups,
                                   sms).workspace_bytes(n * g.groups, m, cols)
    elif variant.gemm == "vendor" and int8:
        extras = n * k * cols + result // g.groups
    if variant.algo == "im2col":
        columns = 0 if g.is_pointwise else n * g.in_channels * g.taps * cols * e
        return q + columns + result + max(extras, out if int8 else 0) + scales
    after = (result if int8 else 0) + (0 if g.is_pointwise else out)
    return q + result + max(extras, after) + scales


def check_workspace(g: ConvGeometry, variant: Variant, runtime, layer: str = "") -> None:
    """Raise WorkspaceTooLargeError when ``variant`` on ``g`` cannot fit in the runtime's free memory."""
    need = peak_bytes(g, variant, ladder.multiprocessors(runtime))
    if need <= output_bytes(g):   # no workspace: nothing to check
        return
    free, where = free_bytes(runtime)
    if free is None or need <= free:
        return
    fitting = [algo for algo in ALGORITHMS
               if peak_bytes(g, Variant.of(algo, variant.gemm or "vendor", dtype=variant.dtype)) <= free]
    what = layer or (f"conv2d {g.in_channels}->{g.out_channels}, {g.kernel_h}x{g.kernel_w} kernel, stride "
                     f"{g.stride[0]}x{g.stride[1]} on {g.batch}x{g.in_channels}x{g.in_h}x{g.in_w}")
    raise WorkspaceTooLargeError(
        f"{what}: algo={variant.algo} needs {gib(need)} (workspace and output) but {where} has {gib(free)} free; "
        + (f"algorithms that fit: {', '.join(fitting)}" if fitting else "no algorithm fits: use a smaller batch"))
