"""Memory a convolution's workspace needs, against what its runtime has free, checked before allocating.

im2col inflates the input and kn2row the output k*k times (accounting.py): on a large kernel at a
large stride (a ViT patch embedding: 16x16 at stride 16) kn2row asks for tens of GiB of partial
planes. Without this check numpy dies with a raw MemoryError, or the machine swaps first.
"""
from __future__ import annotations

from pathlib import Path

import psutil

from .accounting import layer_cost
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


def peak_bytes(g: ConvGeometry, variant: Variant) -> int:
    """What one call allocates at once: its workspace and its float32 output."""
    return layer_cost(g, variant).workspace_bytes + 4 * g.batch * g.out_channels * g.out_h * g.out_w


def check_workspace(g: ConvGeometry, variant: Variant, runtime, layer: str = "") -> None:
    """Raise WorkspaceTooLargeError when ``variant`` on ``g`` cannot fit in the runtime's free memory."""
    need = peak_bytes(g, variant)
    if need <= 4 * g.batch * g.out_channels * g.out_h * g.out_w:   # no workspace: nothing to check
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
