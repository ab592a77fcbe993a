"""Import torchvision beside the CPU build of torch.

The only torchvision 0.28.0 wheel on PyPI is built for CUDA. With the CPU torch its
import fails with ``operator torchvision::nms does not exist``, because its Python side
registers fake kernels for two C++ ops the CPU torch never defined. Defining their
schemas first makes the import (and ``torchvision.models``) work; nms itself does not,
and convbench never calls it. On a GPU machine with a matching torchvision, the
schemas already exist and nothing is defined.
"""
from __future__ import annotations

import torch


def _define_missing_schemas() -> None:
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        return  # a working torchvision build already registered them
    except RuntimeError:
        pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _define_missing_schemas.library = lib  # keep the registration alive


_define_missing_schemas()

import torchvision  # noqa: E402

__all__ = ["torchvision"]
