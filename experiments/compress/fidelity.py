"""What compression costs a model: agreement with the dense float32 model, and accuracy on labels.

    top1_agreement    fraction of evaluation images whose top-1 class is the dense float32 model's
    fidelity_rel_err  max|y - y_dense| / max|y_dense| over the evaluation batch (tolerance.py's measure)
    accuracy_top1     top-1 accuracy on labelled images (digits test split, or an image folder),
                      beside the dense float32 model's on the same images

Evaluation data (``evaluation_data``): the digits model's fixed test split (360 labelled images);
else the images of ``image_folder`` (torchvision ImageFolder layout: one sub-folder per class,
whose sorted names must follow the model's class indices, as ImageNet's synset ids do), resized
and normalised as for ImageNet; else a fixed seeded batch of standard-normal images (no labels:
agreement and error only, on a random-input model a weak signal, said so in the report).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from experiments.conv.tolerance import relative_error

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EvaluationData:
    images: torch.Tensor            # N x C x H x W float32, CPU
    labels: torch.Tensor | None     # N int64, or None
    source: str                     # "digits test split", "image folder PATH", "random (seed S)"


@dataclass(frozen=True)
class Fidelity:
    images: int
    top1_agreement: float
    rel_err: float
    accuracy: float | None = None          # ours (compressed, our kernels) on the labels
    dense_accuracy: float | None = None    # the dense float32 PyTorch model on the same labels
    source: str = ""


def evaluation_data(model_name: str, input_size: tuple[int, int], images: int, seed: int,
                    image_folder: str | None = None, max_images: int = 256) -> EvaluationData:
    from .digits import NAME as DIGITS
    from .digits import digits_split
    if model_name == DIGITS:
        x, y = digits_split("test")
        return EvaluationData(x, y, "digits test split")
    if image_folder:
        return _image_folder(image_folder, input_size, max_images)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(images, 3, *input_size, generator=generator)
    return EvaluationData(x, None, f"random normal images (seed {seed})")


def _image_folder(path: str, input_size: tuple[int, int], max_images: int) -> EvaluationData:
    from pathlib import Path

    from experiments.torchvision_compat import torchvision
    if not Path(path).is_dir():
        raise FileNotFoundError(f"accuracy.image_folder={path!r} is not a directory")
    T = torchvision.transforms
    resize = tuple(int(round(s * 256 / 224)) for s in input_size)
    transform = T.Compose([T.Resize(resize), T.CenterCrop(input_size), T.ToTensor(),
                           T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    folder = torchvision.datasets.ImageFolder(path, transform=transform)
    if len(folder) == 0:
        raise FileNotFoundError(f"accuracy.image_folder={path!r} holds no images")
    # evenly spread over the (sorted) samples, so that a cut keeps every class
    picks = np.linspace(0, len(folder) - 1, min(max_images, len(folder))).round().astype(int)
    pairs = [folder[int(i)] for i in picks]
    return EvaluationData(torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]),
                          f"image folder {path} ({len(pairs)} of {len(folder)} images)")


def predict(model: nn.Module, images: torch.Tensor, device, batch: int = 64) -> torch.Tensor:
    """Logits of ``model`` on ``images`` in batches, as float32 on the CPU."""
    outs = []
    with torch.no_grad():
        for chunk in images.split(batch):
            outs.append(model(chunk.to(device)).float().cpu())
    return torch.cat(outs)


def measure(ours: nn.Module, dense: nn.Module, data: EvaluationData, device, batch: int = 64,
            ours_logits: torch.Tensor | None = None) -> Fidelity:
    """Fidelity of ``ours`` (the compressed model on our kernels; or its ``ours_logits`` on the images,
    when already computed) to ``dense`` (float32 PyTorch)."""
    y = predict(ours, data.images, device, batch) if ours_logits is None else ours_logits
    ref = predict(dense, data.images, device, batch)
    agreement = float((y.argmax(1) == ref.argmax(1)).float().mean())
    accuracy = dense_accuracy = None
    if data.labels is not None:
        accuracy = float((y.argmax(1) == data.labels).float().mean())
        dense_accuracy = float((ref.argmax(1) == data.labels).float().mean())
    return Fidelity(len(data.images), agreement, relative_error(y.numpy(), ref.numpy()), accuracy,
                    dense_accuracy, data.source)
