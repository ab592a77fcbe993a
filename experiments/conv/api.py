"""conv2d: torch.nn.functional.conv2d semantics, computed by a convbench algorithm."""
from __future__ import annotations

import difflib
from os import PathLike
import warnings

from .. import runtime as runtimes
from . import custom, lowp, variant
from .custom import CustomGemm
from .arrays import from_runtime, to_runtime
from .geometry import as_pair
from .plan import ConvPlan
from .variant import CUSTOM, DEFAULT_TILE, GEMMS, TILES, Variant


def _unknown(kind: str, value, valid) -> ValueError:
    close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ValueError(f"unknown {kind} {value!r}{hint}; valid: {', '.join(map(str, valid))}")


def validate(algo: str, gemm: str, tile: int, backend="auto"):
    """Check a choice before any work; returns the runtime it resolves to (see ``resolve``)."""
    return resolve(algo, gemm, tile, backend)[1]


def resolve(algo: str, gemm: str, tile: int | None, backend="auto", dtype: str = "fp32",
            rung: str | None = None, custom_kernel: CustomGemm | None = None):
    """Check a choice before any work; returns (its Variant, the runtime it resolves to).

    ``rung``: the blocked GEMM's rung of the ladder (experiments.conv.ladder; None: the default).
    ``custom_kernel``: gemm='custom''s kernel file, checked (experiments.conv.custom.read_kernel); it is
    compiled here on the runtime, so that a compile error is raised before any work.

    ``backend`` is a name (auto, gpu, emulator, numpy) or a runtime object (e.g. an
    ``EmulatorRuntime(warp_size=64)``).
    """
    if algo not in variant.ALGORITHMS:   # looked up now: an algorithm registered after import counts
        raise _unknown("algorithm", algo, variant.ALGORITHMS)
    if gemm not in GEMMS:
        raise _unknown("GEMM back-end", gemm, GEMMS)
    if gemm == "blocked" and tile not in TILES:
        raise ValueError(
            f"tile={tile!r} is not supported by the blocked GEMM; valid: {', '.join(map(str, TILES))} "
            f"(threads per block side; each thread computes a 4x4 micro-tile)")
    runtime = runtimes.resolve(backend) if isinstance(backend, str) else backend
    if gemm == "blocked" and algo in variant.GEMM_ALGORITHMS and not runtime.has_kernels:
        raise ValueError(
            f"gemm='blocked' is a hip/ kernel and backend {runtime.name!r} runs no kernels; "
            f"use gemm='vendor' (BLAS) or 'sparse' (scipy CSR) on the numpy backend, or backend='gpu' or "
            f"'emulator' for the blocked GEMM")
    lowp.check_dtype(dtype, gemm)
    if gemm != CUSTOM or algo not in variant.GEMM_ALGORITHMS:
        return Variant.of(algo, gemm, tile, dtype, rung), runtime
    if custom_kernel is None:
        raise ValueError("gemm='custom' needs your kernel file: custom_kernel=experiments.conv.custom.read_kernel(path)")
    if not runtime.has_kernels:
        raise ValueError(f"gemm='custom' runs your kernel file and backend {runtime.name!r} runs no kernels; use "
                         f"backend='emulator' (the CPU, for correctness) or 'gpu'")
    chosen = Variant.of(algo, gemm, tile, dtype, custom=custom_kernel)
    custom.load(runtime, custom_kernel, tile)   # KernelCompileError at the user's file:line
    return chosen, runtime


def rung_argument(rung: str | None, gemm_kernel: str | None) -> str | None:
    """``rung``, or the deprecated ``gemm_kernel`` keyword it replaced (with a FutureWarning)."""
    if gemm_kernel is None:
        return rung
    if rung is not None and rung != gemm_kernel:
        raise ValueError(f"rung={rung!r} and the deprecated gemm_kernel={gemm_kernel!r} disagree; pass rung only")
    warnings.warn("gemm_kernel= is deprecated: the ladder's step is named rung= (same values)", FutureWarning,
                  stacklevel=3)
    return gemm_kernel


def resolve_padding(padding, weight_shape, stride, dilation):
    """torch's padding argument (int, pair, 'valid' or 'same') as (symmetric pair, extra right/bottom).

    'same' with an even effective kernel needs one more row/column after than before, as in
    torch; that extra is applied to the input explicitly.
    """
    if not isinstance(padding, str):
        return as_pair(padding, "padding"), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"padding={padding!r}; valid: an int, a pair of ints, 'valid' or 'same'")
    if as_pair(stride, "stride") != (1, 1):
        raise ValueError(f"padding='same' needs stride 1 (as in torch), got stride={stride!r}")
    totals = [d * (k - 1) for d, k in zip(as_pair(dilation, "dilation"), weight_shape[2:])]
    return tuple(t // 2 for t in totals), tuple(t % 2 for t in totals)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           algo: str = "im2col", gemm: str = "blocked", tile: int = DEFAULT_TILE, backend="auto",
           dtype: str = "fp32", act_scale: float | None = None, rung: str | None = None,
           gemm_kernel: str | None = None, custom_kernel=None):
    """``torch.nn.functional.conv2d`` by one of convbench's algorithms.

    x, weight and bias may be torch tensors (any layout or device), numpy or cupy arrays; the
    result has the kind (and torch device) of ``x``. Computation is float32.

    ``groups`` > 1 runs every group's GEMM in one batched launch (scalar: channel blocks within
    a group); a depthwise layer (groups == C_in) runs the direct depthwise kernel whatever
    ``algo``. ``gemm='sparse'`` multiplies the filter as a CSR matrix (the SpMM kernel, or
    scipy on the numpy backend); ``gemm='auto_sparse'`` does so only when the filter's density
    is at or below the runtime's measured threshold (experiments.conv.sparse), else uses the
    vendor GEMM.

    ``dtype`` 'fp16' stores input and filter in half precision and accumulates in float32; 'int8'
    quantizes the filter per output channel and the input per tensor (scale ``act_scale``, or
    max|x|/127 of this input), accumulates in int32 and dequantizes (experiments.conv.lowp).
    The output is float32 in every case.

    ``rung`` names the rung of the GEMM ladder that ``gemm='blocked'`` runs (experiments.conv.
    ladder: naive, blocked (the default), vec4, dbuf, warptile, splitk, fold; float32 only);
    ``gemm_kernel`` is its deprecated former name.

    ``gemm='custom'`` runs your own GEMM kernel file, ``custom_kernel``: its path, or the CustomGemm of
    ``experiments.conv.custom.read_kernel(path, function, tile_macro, ...)`` (docs/your-kernel.md).
    """
    if isinstance(custom_kernel, (str, PathLike)):
        custom_kernel = custom.read_kernel(custom_kernel)
    variant, runtime = resolve(algo, gemm, tile, backend, dtype, rung_argument(rung, gemm_kernel), custom_kernel)
    symmetric, extra = resolve_padding(padding, tuple(weight.shape), stride, dilation)
    xd = to_runtime(x, runtime)
    if any(extra):
        xd = runtime.xp.pad(xd, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    bd = None if bias is None else to_runtime(bias, runtime)
    plan = ConvPlan.build(to_runtime(weight, runtime), bd, stride, symmetric, dilation, groups,
                          variant, runtime, act_scale)
    return from_runtime(plan(xd), like=x)
