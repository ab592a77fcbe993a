"""torchvision classification models by name, with a fixed seed, and their input.

``model.weights`` null means random initialisation (offline, reproducible through the seed).
A weights name (``DEFAULT``, ``IMAGENET1K_V1``, ...) must already be in the torch hub cache: convbench
downloads only when ``model.download=true`` asks it to, so that a sweep on a machine without network
fails before any work, saying how to fetch the file, instead of hanging on a download.
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from experiments.torchvision_compat import torchvision

from experiments.compress.digits import NAME as DIGITS

from .errors import ConfigError


@lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    """Names of torchvision's image classification models (torchvision.models, not detection etc.)."""
    return tuple(torchvision.models.list_models(module=torchvision.models))


def check_model_name(name: str) -> None:
    models = classification_models()
    if name in models or name == DIGITS:   # digits_cnn: convbench's own small trained CNN
        return
    close = difflib.get_close_matches(str(name), models, n=4, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"model.name={name!r} is not a torchvision classification model.{hint} "
        f"Known names: `python -c \"from experiments.harness.models import classification_models as m; "
        f"print(*m())\"` ({len(models)} models, e.g. resnet18, vgg16, densenet121).")


def resolve_weights(name: str, weights: str | None, download: bool = False):
    """The torchvision weights enum for ``weights`` (None stays None); checks the hub cache unless
    ``download`` allows fetching them."""
    if weights in (None, "", "none", "None"):
        return None
    if name == DIGITS:
        raise ConfigError(f"model.weights={weights!r}: {DIGITS} always uses its own trained weights; use null")
    enum = torchvision.models.get_model_weights(name)
    member = str(weights).split(".")[-1]
    if "." in str(weights) and str(weights).split(".")[0] != enum.__name__:
        raise ConfigError(f"model.weights={weights!r} are not weights of {name}; valid: "
                          f"{', '.join(f'{enum.__name__}.{m}' for m in enum.__members__)} or null")
    if member not in enum.__members__:
        raise ConfigError(f"model.weights={weights!r}: unknown weights for {name}; valid: "
                          f"{', '.join(enum.__members__)} (or {enum.__name__}.<name>), or null for random init")
    resolved = enum[member]
    cached = weights_cache_path(resolved)
    if not cached.is_file() and not download:
        raise ConfigError(
            f"model.weights={weights!r}: {cached.name} is not in the torch hub cache ({cached.parent}); "
            f"convbench downloads nothing unless asked. Fetch it once on a machine with network "
            f"(`python -c \"from experiments.torchvision_compat import torchvision; "
            f"torchvision.models.get_model('{name}', weights='{resolved}')\"`, then copy {cached.name} into "
            f"{cached.parent}), or let this run fetch it with model.download=true, or use model.weights=null "
            f"(random weights).")
    return resolved


def weights_label(name: str, weights) -> str:
    """What a model's weights are, as results label them: "random" (initialised from the seed),
    "trained on digits" (digits_cnn), or the torchvision weights' name."""
    if name == DIGITS:
        return "trained on digits"
    return "random" if weights is None else str(weights)


def weights_cache_path(weights) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


INPUT_SIZE_VALID = "a positive int or [height, width]"


def is_input_size(value) -> bool:
    """Whether ``value`` is a valid ``model.input_size``: a positive int or [height, width] of them."""
    size = [value] * 2 if isinstance(value, int) else list(value) if isinstance(value, (list, tuple)) else []
    return len(size) == 2 and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)


def input_hw(input_size) -> tuple[int, int]:
    """``model.input_size`` (an int or [height, width]) as a pair of positive ints."""
    if not is_input_size(input_size):
        raise ConfigError(f"model.input_size={input_size!r}: expected {INPUT_SIZE_VALID}")
    return (input_size, input_size) if isinstance(input_size, int) else (input_size[0], input_size[1])


def build_model(name: str, weights, seed: int) -> nn.Module:
    """The model in eval mode; random weights drawn from ``seed`` unless ``weights`` is given.
    digits_cnn: trained on scikit-learn's digits with ``seed`` (cached; experiments/compress/digits.py)."""
    if name == DIGITS:
        from experiments.compress.digits import digits_model
        return digits_model(seed)
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=weights)
    return model.eval()


def make_input(batch_size: int, input_size, seed: int, model: str | None = None) -> torch.Tensor:
    """A standard-normal N x 3 x H x W float32 batch from its own seeded generator (CPU); for
    digits_cnn the first ``batch_size`` images of its test split (N x 1 x 8 x 8, cycled beyond 360)."""
    if model == DIGITS:
        from experiments.compress.digits import digits_split
        images = digits_split("test")[0]
        return images[torch.arange(batch_size) % len(images)].clone()
    h, w = input_hw(input_size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, 3, h, w, generator=generator)
