"""Import torchvision beside any torch build convbench installs.

With a matching torch/torchvision pair (every GPU set-up, and PyTorch's CPU index) the import just
works, and torchvision's compiled library registers its operators itself. Beside our CPU torch,
PyPI's torchvision 0.28.0 (a CUDA build, the only one on PyPI) fails with ``operator
torchvision::nms does not exist``: its Python side registers fake kernels for two operators that
its compiled library could not define. Only then are the two schemas defined here and the import
retried; defining them before a working library loads would abort the process (an operator
registered twice). nms itself does not run then; convbench never calls it.
"""
from __future__ import annotations

import sys

import torch

_MISSING_NMS = "operator torchvision::nms does not exist"


def _define_nms_schemas() -> None:
    lib = torch.library.Library("torchvision", "FRAGMENT")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _define_nms_schemas.library = lib  # keep the registration alive


def _import_torchvision():
    try:
        import torchvision
        return torchvision
    except RuntimeError as err:
        if _MISSING_NMS not in str(err):
            raise
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[name]  # the failed import's half-initialised modules
    _define_nms_schemas()
    import torchvision
    return torchvision


torchvision = _import_torchvision()

__all__ = ["torchvision"]
