"""A job's configuration, checked before any work: the composed Hydra config -> JobSpec.

Errors (ConfigError, with the bad value and the valid ones) are the user's to fix: unknown
model (with the close matches), unknown algorithm, unsupported tile, gpu backend without a GPU,
blocked GEMM on the numpy backend, unimplemented quantization or pruning, bad protocol values.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

from omegaconf import DictConfig, OmegaConf

from experiments.conv import GEMMS, TILES, Variant
from experiments.conv import variant as variants
from experiments.conv import resolve as resolve_conv
from experiments.conv.tolerance import RELATIVE_TOLERANCE
from experiments.conv.ladder import RUNG_NAMES
from experiments.conv.custom import DEFAULT_TILE_MACRO
from experiments.conv.variant import CUSTOM, DTYPES, GEMM_ALGORITHMS

from experiments.compress.prune import KINDS as PRUNE_KINDS

from . import validate
from .errors import ConfigError
from .models import check_model_name, input_hw, resolve_weights
from experiments.measure.timing import CACHE_MODES, Protocol

PYTORCH = "pytorch"
AUTO = "auto"                           # per layer the fastest candidate, remembered (experiments/tuning)
ENERGY_TRACKERS = ("codecarbon", "off")
DEFAULT_KERNEL_TIMEOUT_S = 600.0        # bench.kernel_timeout_s where a bench preset leaves it out
QUANTS = DTYPES                         # RELATIVE_TOLERANCE holds their tolerances (experiments/conv/tolerance.py)
PRUNES = PRUNE_KINDS                    # experiments/compress/prune.py


@dataclass(frozen=True)
class JobSpec:
    """Everything a job needs, validated; ``variant`` is what runs (algo, gemm, tile, dtype resolved:
    experiments/conv/variant.py), ``runtime`` the resolved backend."""

    model: str
    weights: object            # torchvision weights enum or None
    batch_size: int
    input_size: tuple[int, int]
    variant: Variant
    backend: str               # as requested (auto, gpu, emulator, numpy)
    runtime: object
    prune: str
    prune_amount: float
    seed: int
    model_protocol: Protocol
    layer_protocol: Protocol
    cache_mode: str
    flush_bytes: int
    energy_s: float
    progress_s: float
    kernel_timeout_s: float    # the emulator stops a kernel launch running longer (bench.kernel_timeout_s)
    cudnn_benchmark: bool      # the PyTorch baseline on a GPU: cuDNN autotunes per shape, in its untimed first call
    energy: str
    country_iso_code: str | None
    region: str | None
    measure_power_secs: float
    tracking_uri: str
    experiment: str
    tuning: object             # algo=auto: experiments.tuning.TuningSpec; None for other algorithms
    compression: object = None  # experiments.compress.pipeline.CompressionSpec (prune and quant in detail)

    @property
    def compressed(self) -> bool:
        """Pruned or not fp32: the job also measures the dense fp32 model and the accuracy cost."""
        return self.compression is not None and self.compression.active

    @property
    def tolerance(self) -> float:
        return RELATIVE_TOLERANCE[self.quant]

    @property
    def algo(self) -> str:
        return self.variant.algo

    @property
    def quant(self) -> str:
        return self.variant.dtype

    @property
    def name(self) -> str:
        """The run name: model/variant label/prune, e.g. resnet18/im2col/blocked-t16/fp32/dense."""
        prune = "dense" if self.prune == "none" else f"{self.prune}{self.prune_amount:g}"
        return f"{self.model}/{self.variant.label}/{prune}"

    def identity(self) -> tuple:
        """What the job measures: two jobs with equal identities in one sweep measure the same thing
        (the variant drops gemm and tile where they do not apply)."""
        variant, compression = self.variant, self.compression
        if self.algo == PYTORCH and not (self.quant == "fp16" and self.runtime.is_gpu) and compression is not None:
            # PyTorch has no int8 convolution, and on the CPU float32 is its fp16 path's better: such a
            # pytorch job measures PyTorch float32, the same as pytorch/fp32 (run once in a sweep)
            variant, compression = replace(variant, dtype="fp32"), replace(compression, quant="fp32")
        return (self.model, str(self.weights), self.batch_size, self.input_size, variant,
                self.runtime.name, self.prune, self.prune_amount, self.seed, self.model_protocol,
                self.layer_protocol, self.cache_mode, self.flush_bytes, self.energy_s, self.energy,
                self.country_iso_code, self.region, self.tracking_uri, self.experiment, self.tuning,
                compression)


def algos() -> tuple[str, ...]:
    """Every algo choice: the PyTorch baseline, the engine's algorithms (registered ones too), auto."""
    return (PYTORCH, *variants.ALGORITHMS, AUTO)


def _choice(kind: str, value, valid) -> str:
    if value not in valid:
        raise ConfigError(f"{kind}={value!r} is not supported; valid: {', '.join(map(str, valid))}")
    return value


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}={value!r} is not supported; valid: true, false")
    return value


def _protocol(node, where: str) -> Protocol:
    try:
        return Protocol(int(node.warmup), int(node.min_samples), float(node.min_time_s), float(node.max_time_s))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def gemm_rung(gemm) -> str | None:
    """gemm.rung, or the deprecated gemm.kernel that it replaced (null unless given: it wins, with a warning)."""
    deprecated = gemm.get("kernel")
    if deprecated is None:
        return gemm.get("rung")
    warnings.warn(f"gemm.kernel is deprecated: the GEMM ladder's step is gemm.rung (use gemm.rung={deprecated})",
                  FutureWarning, stacklevel=2)
    return deprecated


def job_spec(cfg: DictConfig) -> JobSpec:
    """Check a composed job config before any work; raises ConfigError naming the bad value."""
    from experiments import runtime as runtimes

    validate.check_config(cfg)     # types, ranges, tracking URI, energy location
    model, algo, gemm, bench, energy = cfg.model, cfg.algo, cfg.gemm, cfg.bench, cfg.energy
    check_model_name(model.name)
    weights = resolve_weights(model.name, model.weights, model.get("download", False))
    size = input_hw(OmegaConf.to_object(model.input_size) if OmegaConf.is_config(model.input_size)
                    else model.input_size)
    _choice("algo", algo.name, algos())
    _choice("gemm", gemm.name, GEMMS)
    tile, rung = gemm.get("tile"), gemm_rung(gemm)
    if gemm.name == "blocked":
        _choice("gemm.tile", tile, TILES)
        _choice("gemm.rung", rung, RUNG_NAMES)
    custom_kernel = _custom_kernel(gemm) if gemm.name == CUSTOM and algo.name in GEMM_ALGORITHMS else None
    _choice("backend", cfg.backend.name, runtimes.BACKENDS)
    _choice("quant", cfg.quant.name, QUANTS)
    _choice("prune", cfg.prune.name, PRUNES)
    compression = _compression(cfg, model.name, size, gemm.name, algo.name)
    _choice("bench.cache_mode", bench.cache_mode, CACHE_MODES)
    _choice("energy", energy.name, ENERGY_TRACKERS)
    try:
        if algo.name in (PYTORCH, AUTO):
            variant, runtime = Variant.of(algo.name, dtype=cfg.quant.name), runtimes.resolve(cfg.backend.name)
        else:
            variant, runtime = resolve_conv(algo.name, gemm.name, tile, cfg.backend.name, cfg.quant.name, rung,
                                            custom_kernel)
    except (ValueError, RuntimeError) as exc:   # bad combination; GpuUnavailableError is a RuntimeError
        auto = " (backend=auto chose numpy: no GPU is visible)" if cfg.backend.name == "auto" else ""
        raise ConfigError(f"{type(exc).__name__}: {exc}{auto}") from None
    if runtime.is_gpu:
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("backend=gpu runs the model around the kernels with torch on the same device, "
                              "but this torch build sees no CUDA/ROCm device; install a GPU build of torch")
    tuning = _tuning(cfg.get("tuning"), runtime, cfg.quant.name, gemm) if algo.name == AUTO else None
    return JobSpec(
        model=model.name, weights=weights, batch_size=int(model.batch_size), input_size=size,
        variant=variant, backend=cfg.backend.name, runtime=runtime, prune=cfg.prune.name,
        prune_amount=compression.prune.amount, seed=int(cfg.seed),
        model_protocol=_protocol(bench.model, "bench.model"), layer_protocol=_protocol(bench.layer, "bench.layer"),
        cache_mode=bench.cache_mode, flush_bytes=int(float(bench.flush_mb) * 2**20),
        energy_s=float(bench.energy_s), progress_s=float(bench.get("progress_s", 3.0)),
        kernel_timeout_s=float(bench.get("kernel_timeout_s", DEFAULT_KERNEL_TIMEOUT_S)),
        cudnn_benchmark=_flag(bench.get("cudnn_benchmark", True), "bench.cudnn_benchmark"),
        energy=energy.name, country_iso_code=energy.get("country_iso_code"), region=energy.get("region"),
        measure_power_secs=float(energy.get("measure_power_secs") or 1),
        tracking_uri=str(cfg.tracking.uri), experiment=str(cfg.tracking.experiment), tuning=tuning,
        compression=compression)


def _custom_kernel(gemm):
    """gemm=custom's keys (conf/gemm/base.yaml) -> the checked kernel file (experiments/conv/custom.py)."""
    from experiments.conv.custom import ContractError, read_kernel
    if gemm.get("source") is None:
        raise ConfigError("gemm=custom needs your kernel file: gemm.source=PATH (template: hip/custom/template.hip; "
                          "docs/your-kernel.md)")
    block_tile = gemm.get("block_tile")
    try:
        return read_kernel(gemm.source, gemm.get("function"), gemm.get("tile_macro") or DEFAULT_TILE_MACRO,
                           OmegaConf.to_object(block_tile) if OmegaConf.is_config(block_tile) else block_tile,
                           gemm.get("batched", False))
    except ContractError as exc:
        raise ConfigError(str(exc)) from None


def _tuning(node, runtime, quant: str, gemm):
    """algo=auto's tuning node (conf/tuning/) -> TuningSpec, with at least one candidate on this runtime;
    tuning.gemms with custom: the user's kernel of gemm.source, checked and compiled at every tuned tile."""
    from experiments.conv import custom
    from experiments.tuning import candidates_for, tuning_spec
    if quant != "fp32":
        raise ConfigError(f"algo=auto with quant={quant}: the tuner measures fp32 candidates only so far; "
                          f"use quant=fp32, or a fixed algorithm for {quant}")
    try:
        values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        kernel = _custom_kernel(gemm) if CUSTOM in ((values or {}).get("gemms") or ()) else None
        spec = tuning_spec(values, kernel)
        for candidate in candidates_for(runtime, spec):
            if candidate.custom is not None:
                custom.load(runtime, candidate.custom, candidate.tile)   # a compile error before any work
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return spec


def _compression(cfg, model_name: str, size: tuple[int, int], gemm: str, algo: str):
    """prune, quant and accuracy nodes -> CompressionSpec (experiments/compress/pipeline.py)."""
    from experiments.compress.digits import INPUT_SIZE, NAME as DIGITS
    from experiments.compress.pipeline import CompressionSpec
    from experiments.compress.prune import PruneSpec
    from experiments.conv import lowp
    prune, quant, accuracy = cfg.prune, cfg.quant, cfg.get("accuracy") or {}
    if model_name == DIGITS and size != INPUT_SIZE:
        raise ConfigError(f"model={DIGITS} takes 8x8 images; model.input_size={list(size)} (use 8)")
    try:
        kind = str(prune.name)
        spec = PruneSpec(kind, float(prune.get("amount") or 0.0) if kind != "none" else 0.0,
                         str(prune.get("importance", "l1")), str(prune.get("scope", "layer")),
                         prune.get("steps", 1))
        if quant.name != "fp32" and algo not in (PYTORCH, AUTO):
            lowp.check_dtype(quant.name, gemm)
        options = _quant_options(quant)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    epochs = prune.get("finetune_epochs", 0) or 0
    if epochs and model_name != DIGITS:
        raise ConfigError(f"prune.finetune_epochs={epochs}: fine-tuning needs training data, which only "
                          f"model={DIGITS} has (scikit-learn's digits); use 0 for {model_name}")
    numbers = {"quant.calibration_images": quant.get("calibration_images", 8),
               "accuracy.eval_images": accuracy.get("eval_images", 16),
               "accuracy.max_images": accuracy.get("max_images", 256)}
    folder = accuracy.get("image_folder")
    if folder is not None:
        from pathlib import Path
        if not Path(str(folder)).is_dir():
            raise ConfigError(f"accuracy.image_folder={folder!r} is not a directory (ImageFolder layout: one "
                              f"sub-folder of images per class)")
    return CompressionSpec(spec, str(quant.name), epochs, numbers["quant.calibration_images"],
                           numbers["accuracy.eval_images"], None if folder is None else str(folder),
                           numbers["accuracy.max_images"], options)


def _quant_options(quant):
    """quant.calibration, percentile, skip, max_cost (types checked: validate.TYPED) -> QuantOptions
    (ValueError naming a bad value)."""
    from experiments.compress.quantization import QuantOptions
    skip = quant.get("skip") or []
    max_cost = quant.get("max_cost")
    return QuantOptions(str(quant.get("calibration", "max")), float(quant.get("percentile", 99.99)),
                        (skip,) if isinstance(skip, str) else tuple(map(str, skip)),
                        None if max_cost is None else float(max_cost))
