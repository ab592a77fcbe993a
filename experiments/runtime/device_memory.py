"""A GPU job's device memory: its peak, and nothing of it carried into the next job or layer.

CuPy's pool and torch's caching allocator both keep what they once allocated, so a sweep would
otherwise hold the largest workspace of any job until it ends (vgg16 im2col at batch 64: GBs).

    start(runtime)         before a job: empty both allocators' caches, reset torch's peak counter
    peak_bytes(runtime)    CuPy's pool size (it keeps every block it allocated since start(), so its
                           size is its high-water mark) + torch's peak reserved bytes; None off a GPU
    release(runtime)       after a job, between benchmarked layers: both caches back to the driver
"""
from __future__ import annotations


def release(runtime) -> None:
    if not runtime.is_gpu:
        return
    import cupy
    import torch
    cupy.get_default_memory_pool().free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()


def start(runtime) -> None:
    if not runtime.is_gpu:
        return
    import torch
    release(runtime)
    torch.cuda.reset_peak_memory_stats()


def peak_bytes(runtime) -> int | None:
    if not runtime.is_gpu:
        return None
    import cupy
    import torch
    return int(cupy.get_default_memory_pool().total_bytes()) + int(torch.cuda.max_memory_reserved())
