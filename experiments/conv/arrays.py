"""Moving arrays between the caller's kind (torch, numpy, cupy) and a runtime's ``xp``.

Inputs become C-contiguous float32 arrays of the runtime (channels_last and strided views are
made contiguous here, once); outputs go back to the kind, and for torch the device, the caller
gave. Torch CUDA tensors and CuPy arrays share memory through DLPack, without copies.
"""
from __future__ import annotations

import numpy as np
import torch


def array_kind(a) -> str:
    if isinstance(a, torch.Tensor):
        return "torch"
    if isinstance(a, np.ndarray):
        return "numpy"
    if type(a).__module__.startswith("cupy"):
        return "cupy"
    raise TypeError(f"expected a torch tensor, numpy array or cupy array, got {type(a).__name__}")


def to_runtime(a, runtime):
    """A C-contiguous float32 array of ``runtime.xp`` holding the values of ``a``."""
    xp, kind = runtime.xp, array_kind(a)
    if kind == "torch":
        t = a.detach().to(torch.float32).contiguous()
        if runtime.is_gpu:
            return xp.from_dlpack(t if t.is_cuda else t.cuda())
        return t.cpu().numpy()
    if kind == "cupy" and not runtime.is_gpu:
        a = a.get()
    return xp.ascontiguousarray(xp.asarray(a, dtype=xp.float32))


def from_runtime(y, like):
    """``y`` (an array of a runtime) as the kind of ``like``, on ``like``'s device."""
    kind = array_kind(like)
    on_host = isinstance(y, np.ndarray)
    if kind == "torch":
        t = torch.from_numpy(y) if on_host else torch.from_dlpack(y)
        return t.to(like.device)
    if kind == "numpy":
        return y if on_host else y.get()
    import cupy
    return cupy.asarray(y)
