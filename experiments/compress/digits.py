"""A small CNN on scikit-learn's digits: real labels, offline, so accuracy costs are measured for real.

scikit-learn ships the UCI digits set inside the package (1797 grey 8x8 images of 10 classes): no
download. The split is fixed (seeded permutation: 1437 training, 360 test images), inputs are
standardised. The model is a small ResNet-like CNN, ``DigitsCNN``: a stem conv, two stages each of
a strided conv and a torchvision BasicBlock with an identity shortcut (so every pruning kind,
including layer pruning, applies), global average pooling and a linear classifier. Trained with Adam
for a few epochs on the CPU (a few seconds), it reaches about 97-99% test accuracy.

The trained weights are cached in ``$CONVBENCH_CACHE_DIR/digits`` (default ~/.cache/convbench/digits),
under a key hashed from this file's source, the seed and the torch and scikit-learn versions: a
change to the model or its training retrains. Training is deterministic for a given seed on one
machine (single-threaded math during training).

    model = digits_model(seed=0)                     # trained (or loaded), eval mode
    x, y = digits_split("test")                      # N x 1 x 8 x 8 float32, N int64 labels
"""
from __future__ import annotations

import hashlib
import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

NAME = "digits_cnn"
INPUT_SIZE = (8, 8)
CHANNELS = 1
CLASSES = 10
TEST_IMAGES = 360
EPOCHS = 8
BATCH = 64
LEARNING_RATE = 3e-3


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        from experiments.torchvision_compat import torchvision
        BasicBlock = torchvision.models.resnet.BasicBlock
        self.stem = nn.Sequential(nn.Conv2d(CHANNELS, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.block1 = BasicBlock(width, width)
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True))
        self.block2 = BasicBlock(2 * width, 2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, CLASSES)

    def forward(self, x):
        x = self.block2(self.down(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@lru_cache(maxsize=1)
def _data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[:TEST_IMAGES], order[TEST_IMAGES:]
    mean, std = images[train].mean(), images[train].std()
    images = ((images - mean) / std)[:, None]
    return {"train": (images[train], digits.target[train]), "test": (images[test], digits.target[test])}


def digits_split(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """(images N x 1 x 8 x 8 float32, labels N int64) of the fixed train or test split."""
    x, y = _data()[split]
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def cache_path(seed: int) -> Path:
    import sklearn
    key = hashlib.sha256()
    key.update(Path(__file__).read_bytes())
    key.update(f"{seed}|{torch.__version__}|{sklearn.__version__}".encode())
    root = Path(os.environ.get("CONVBENCH_CACHE_DIR", Path.home() / ".cache" / "convbench"))
    return root / "digits" / f"{NAME}-{key.hexdigest()[:16]}.pt"


def train(model: nn.Module, epochs: int, seed: int) -> nn.Module:
    """Adam on the training split (also the fine-tuning between pruning steps); leaves eval mode.

    BatchNorm statistics stay frozen in fine-tuning (eval mode) so that a pruned model keeps the
    statistics of its remaining channels; the first training of a fresh model updates them."""
    with torch.inference_mode(False):
        x, y = digits_split("train")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # reproducible sums
    try:
        with torch.enable_grad(), torch.inference_mode(False):
            for _ in range(epochs):
                for batch in torch.randperm(len(x), generator=generator).split(BATCH):
                    optimizer.zero_grad()
                    loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                    loss.backward()
                    optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def digits_model(seed: int = 0) -> nn.Module:
    """The trained DigitsCNN for ``seed`` (trained once per machine, then loaded from the cache), eval mode."""
    path = cache_path(seed)
    with torch.inference_mode(False):   # ordinary tensors, trainable also when the caller runs in inference mode
        torch.manual_seed(seed)
        model = DigitsCNN()
        if path.is_file():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        train(model.train(), EPOCHS, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)          # atomic: concurrent jobs never read half a file
    return model.eval()


def finetuner(epochs: int, seed: int):
    """A ``finetune(model)`` for prune_model: ``epochs`` epochs on the training split, BatchNorm frozen."""
    if epochs <= 0:
        return None

    def finetune(model: nn.Module) -> None:
        train(model.eval(), epochs, seed)
    return finetune
