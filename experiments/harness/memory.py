"""A job's peak memory, estimated before any work, against what its device or host has free.

The model is built on PyTorch's meta device (shapes, no storage) and run once on a meta batch of
the job's size: that gives every layer's activation and every conv layer's geometry, hence the
workspace of the job's algorithm, without allocating anything. The job then holds at once:

    weights      the fp32 model, our swapped copy with its prepared filters (2x) and the float64
                 reference (2x): 5x the fp32 parameters (6x when pruned or quantized: the dense model stays)
    activations  every conv layer's captured input (fp32), and the largest activation through the
                 fp32 and float64 forwards (input and output of one layer in each: 6x the largest)
    workspace    the largest layer's workspace and output for the job's algorithm(s)

In cold cache mode the flush buffer (bench.flush_mb) is allocated there too. Activations and workspace
grow with the batch, so a refusal also says the largest batch that fits. Before all this, one batch-1
forward on the meta device checks that the model takes the input size at all.
An estimate, not a measurement: it refuses what cannot fit, it does not promise what will.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from experiments.conv import memory as conv_memory
from experiments.conv.memory import gib
from experiments.conv.variant import ALGORITHMS, Variant

from .errors import ConfigError

FLOAT32 = 4


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    activation_bytes: int
    workspace_bytes: int
    workspace_layer: str

    @property
    def peak_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes + self.workspace_bytes


def _meta_model(name: str) -> nn.Module:
    from experiments.compress.digits import NAME as DIGITS, DigitsCNN
    from experiments.torchvision_compat import torchvision
    with torch.device("meta"):
        return DigitsCNN() if name == DIGITS else torchvision.models.get_model(name, weights=None)


@lru_cache(maxsize=256)
def estimate(model: str, batch: int, input_size: tuple[int, int], variants: tuple[Variant, ...],
             compressed: bool = False) -> MemoryEstimate | None:
    """The job's peak by the accounting above; None when the model cannot run on the meta device."""
    from experiments.compress.digits import CHANNELS, NAME as DIGITS
    from experiments.conv.swap import conv_layers

    from .job import conv_geometry

    net = _meta_model(model).eval()
    outputs, conv_inputs, workspace = [0], [0], [0, ""]

    def record_output(module, args, output):
        if isinstance(output, torch.Tensor):
            outputs.append(output.numel() * FLOAT32)

    def record_conv(name):
        def hook(module, args):
            x = args[0]
            conv_inputs.append(x.numel() * FLOAT32)
            g = conv_geometry(module, x.shape)
            need = max(conv_memory.peak_bytes(g, variant) for variant in variants)
            if need > workspace[0]:
                workspace[:] = [need, name]
        return hook

    hooks = [m.register_forward_hook(record_output) for m in net.modules() if not list(m.children())]
    hooks += [conv.register_forward_pre_hook(record_conv(name)) for name, conv in conv_layers(net)]
    channels = CHANNELS if model == DIGITS else 3
    try:
        with torch.no_grad():
            net(torch.empty(batch, channels, *input_size, device="meta"))
    except Exception:   # an operation without a meta kernel: no estimate rather than a wrong one
        return None
    finally:
        for hook in hooks:
            hook.remove()
    weights = sum(p.numel() for p in net.parameters()) * FLOAT32
    input_bytes = batch * channels * input_size[0] * input_size[1] * FLOAT32
    return MemoryEstimate(weights * (6 if compressed else 5),
                          sum(conv_inputs) + 6 * max(max(outputs), input_bytes), workspace[0], workspace[1])


def job_variants(spec) -> tuple[Variant, ...]:
    """The variants whose workspace the job allocates (algo=auto: every candidate algorithm's)."""
    if spec.algo == "auto":
        return tuple(Variant.of(algo, "vendor") for algo in spec.tuning.algos)
    return (spec.variant,)


def check_input_size(model: str, input_size: tuple[int, int]) -> None:
    """ConfigError when the model cannot take images of this size: one batch-1 forward on the meta device
    (shapes only, milliseconds), which a pooling or a fixed-size layer refuses as the real run would."""
    if not _meta_forward_fails(model, input_size):
        return
    try:
        _meta_forward(model, input_size)
    except Exception as exc:      # again, for its message
        if _meta_forward_fails(model, REFERENCE_SIZE):
            return    # an operation without a meta kernel, not the size: the real run will tell
        smallest = _smallest_size(model, input_size)
        valid = f"at least {smallest}" if smallest is not None else f"{REFERENCE_SIZE[0]}"
        raise ConfigError(f"model.input_size={list(input_size)}: {model} cannot take {input_size[0]}x{input_size[1]} "
                          f"images ({type(exc).__name__}: {_first_line(exc)}); valid: {valid}") from None


REFERENCE_SIZE = (224, 224)     # every torchvision classification model takes ImageNet's size


@lru_cache(maxsize=64)
def _meta_forward_fails(model: str, input_size: tuple[int, int]) -> bool:
    try:
        _meta_forward(model, input_size)
        return False
    except Exception:
        return True


def _meta_forward(model: str, input_size: tuple[int, int]) -> None:
    from experiments.compress.digits import CHANNELS, NAME as DIGITS
    with torch.no_grad():
        _meta_model(model).eval()(torch.empty(1, CHANNELS if model == DIGITS else 3, *input_size, device="meta"))


def _smallest_size(model: str, input_size: tuple[int, int]) -> int | None:
    """The smallest square size the model takes, between the refused one and the reference; None when
    the reference is the only one (a fixed-size model, e.g. a vision transformer)."""
    low, high = min(input_size), REFERENCE_SIZE[0]
    if _meta_forward_fails(model, (high - 1, high - 1)):
        return None
    if not _meta_forward_fails(model, (low, low)):
        low = 0
    while high - low > 1:    # low refused, high taken
        middle = (low + high) // 2
        low, high = (middle, high) if _meta_forward_fails(model, (middle, middle)) else (low, middle)
    return high


def _first_line(exc: Exception, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flush_bytes(spec) -> int:
    """The cold-cache flush buffer (bench.flush_mb), allocated where the job runs; none in hot mode."""
    return spec.flush_bytes if spec.cache_mode == "cold" else 0


def check_job(spec) -> None:
    """ConfigError when the model cannot take the input size, or when the job's estimated peak (the
    cold-cache flush buffer included) exceeds the free memory of where it runs."""
    check_input_size(spec.model, tuple(spec.input_size))
    found = estimate(spec.model, spec.batch_size, tuple(spec.input_size), job_variants(spec), spec.compressed)
    if found is None:
        return
    free, where = conv_memory.free_bytes(spec.runtime)
    flush = flush_bytes(spec)
    if free is None or found.peak_bytes + flush <= free:
        return
    if found.peak_bytes <= free:
        raise ConfigError(f"bench.flush_mb={spec.flush_bytes / 2**20:g}: the cold-cache flush buffer ({gib(flush)}) "
                          f"and the job's peak ({gib(found.peak_bytes)}) exceed the {gib(free)} free on {where}; "
                          f"valid: at most {(free - found.peak_bytes) // 2**20} MB, or bench.cache_mode=hot")
    per_image = (found.activation_bytes + found.workspace_bytes) / spec.batch_size
    fits = int((free - found.weights_bytes - flush) // per_image) if per_image else 0
    need = (f"{spec.name} at {spec.input_size[0]}x{spec.input_size[1]} needs about {gib(found.peak_bytes + flush)} at "
            f"its peak (weights {gib(found.weights_bytes)}, activations {gib(found.activation_bytes)}, largest "
            f"workspace {gib(found.workspace_bytes)} in {found.workspace_layer or 'no layer'}"
            + (f", cold-cache flush buffer {gib(flush)}" if flush else "") + f") but {where} has {gib(free)} free")
    if fits >= 1:
        raise ConfigError(f"model.batch_size={spec.batch_size}: {need}; the largest batch that fits is about {fits}")
    fitting = [algo for algo in ("pytorch", *ALGORITHMS)
               if (other := estimate(spec.model, spec.batch_size, tuple(spec.input_size),
                                     (Variant.of(algo, spec.variant.gemm or "vendor", dtype=spec.quant),),
                                     spec.compressed)) is not None and other.peak_bytes + flush <= free]
    raise ConfigError(f"algo={spec.algo}: {need}; algorithms that fit at this batch: "
                      f"{', '.join(fitting) or 'none (use a smaller model.input_size)'}")
