"""algo=auto: per conv layer, the fastest candidate, measured within a budget and remembered.

    spec = tuning_spec({"db": "tuning.db", "budget_s": 10})
    outcome = tune_model(model, convs, inputs, runtime, spec, dtype="fp32", clock=CpuClock())
    tuned = build_tuned_model(model, outcome, runtime)        # each layer on its own choice

Candidates are the variants (experiments/conv/variant.py) of our algorithms crossed with the GEMM back-ends and tiles the runtime can run:
the blocked GEMM only where the runtime runs the kernels of hip/ (gpu, emulator); on numpy the
vendor (BLAS) variants and scalar. Sparse (CSR) GEMMs are candidates for the layers whose filter
has zeros (a pruned model): sparse against dense is measured there, not guessed. PyTorch is not
a candidate: it is the baseline that the tuned model is compared with.

Per layer (successive halving within the layer's share of the budget):

1. every candidate is built and called once (its first call, untimed by the rounds: compile,
   caches); its output is compared with PyTorch's float32 output of the layer, and a candidate
   above the dtype's tolerance (or one that raises) is out: never a fast wrong answer;
2. round r: each remaining candidate gets ``first_samples * 2**(r-1)`` more timed calls
   (``warmup`` untimed calls before its first round), by the harness's clock and protocol code
   (experiments.measure.timing.measure; cold-cache flushes included);
3. after a round, a candidate whose p10 is above the best median by more than ``drop_margin``
   is clearly slower and dropped, and at most half of the candidates (rounded up) go on;
4. it ends with one candidate left, or when the layer's share of the budget is spent (the best
   median of those still running wins). The runner-up is the fastest other candidate by its
   median.

The result goes to the tuning database (database.py) before the next layer; a layer whose key
is already there (this run's earlier layer of the same shape, or any earlier run on the same
device, runtime, kernel sources, dtype and batch) is not measured at all: ``reused`` counts
those layers, ``measured`` the others.
"""
from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from experiments.conv import ALGORITHMS, GEMMS, TILES, ConvbenchConv2d, Variant, ladder, variant
from experiments.conv.api import resolve_padding
from experiments.conv.custom import CustomGemm
from experiments.conv.tolerance import relative_error
from experiments.measure.timing import Protocol, measure

from .database import TuningDatabase, TuningEntry, TuningKey

REPO_ROOT = Path(__file__).resolve().parents[2]
# auto_sparse is itself a rule (sparse below a density threshold): tuning measures sparse and dense instead
TUNABLE_GEMMS = tuple(g for g in GEMMS if not g.startswith("auto"))
# custom (the user's kernel file, gemm.source) only where tuning.gemms names it: it needs the file
DEFAULT_GEMMS = tuple(g for g in TUNABLE_GEMMS if g != variant.CUSTOM)
SPARSE_GEMMS = tuple(g for g in TUNABLE_GEMMS if "sparse" in g)
# The rungs of the GEMM ladder tuned by default: today's rung and the top of the ladder (warp tiling
# alone, with split-K for small grids, with the batch folded into N); rungs 0, 2 and 3 are steps that
# rung 4 should dominate (conf/tuning/default.yaml: tuning.rungs to tune over any of them).
TUNED_RUNGS = ("blocked", "warptile", "splitk", "fold")
JOURNAL_MODES = ("auto", "wal", "delete")
MEASURED, REUSED = "measured", "reused"


# --- candidates ------------------------------------------------------------------------------

def candidate_module(candidate: Variant, conv: nn.Conv2d, name: str, runtime) -> ConvbenchConv2d:
    """A layer on one candidate (candidates are fp32 variants, labelled as everywhere: im2col/vendor/fp32)."""
    return ConvbenchConv2d(conv, name, candidate, runtime)


@dataclass(frozen=True)
class TuningSpec:
    """tuning of conf/algo/auto.yaml, checked (see tuning_spec)."""

    db: str
    budget_s: float = 30.0
    algos: tuple[str, ...] = ALGORITHMS
    gemms: tuple[str, ...] = DEFAULT_GEMMS
    tiles: tuple[int, ...] = TILES
    rungs: tuple[str, ...] = TUNED_RUNGS
    warmup: int = 2
    first_samples: int = 3
    drop_margin: float = 0.05
    remeasure: bool = False
    journal_mode: str = "auto"
    custom: CustomGemm | None = None   # tuning.gemms with custom: the user's kernel (gemm.source), checked

    @property
    def db_path(self) -> Path:
        """A relative path is relative to the repository root (as the default sqlite MLflow store)."""
        path = Path(os.path.expanduser(self.db))
        return path if path.is_absolute() else REPO_ROOT / path


def tuning_spec(node, custom: CustomGemm | None = None) -> TuningSpec:
    """tuning (a mapping) -> TuningSpec; ValueError naming the bad value. ``custom``: the user's kernel
    (gemm.source), required when tuning.gemms names custom."""
    node = {k: v for k, v in dict(node or {}).items() if k != "name"}   # name: the preset's (conf/tuning/)
    deprecated = node.pop("kernels", None)
    if deprecated is not None:
        warnings.warn("tuning.kernels is deprecated: the GEMM ladder's steps are tuning.rungs (same values)",
                      FutureWarning, stacklevel=2)
        node.setdefault("rungs", deprecated)
    unknown = set(node) - set(TuningSpec.__dataclass_fields__)
    if unknown:
        raise ValueError(f"tuning has unknown keys {sorted(unknown)}; valid: "
                         f"{', '.join(TuningSpec.__dataclass_fields__)}")
    if not node.get("db"):
        raise ValueError("tuning.db: the tuning database path is empty")

    def subset(key, valid, cast=str):
        values = node.get(key, getattr(TuningSpec, key))
        values = (values,) if isinstance(values, (str, int)) else tuple(values)
        bad = [v for v in values if cast(v) not in valid] if values else ["(none)"]
        if bad:
            raise ValueError(f"tuning.{key}={list(values)!r}: {bad[0]!r} is not valid; "
                             f"choose from {', '.join(map(str, valid))}")
        return tuple(dict.fromkeys(cast(v) for v in values))

    try:
        spec = TuningSpec(
            db=str(node["db"]), budget_s=float(node.get("budget_s", TuningSpec.budget_s)),
            algos=subset("algos", variant.ALGORITHMS), gemms=subset("gemms", TUNABLE_GEMMS), tiles=subset("tiles", TILES, int),
            rungs=subset("rungs", ladder.RUNG_NAMES),
            warmup=int(node.get("warmup", TuningSpec.warmup)),
            first_samples=int(node.get("first_samples", TuningSpec.first_samples)),
            drop_margin=float(node.get("drop_margin", TuningSpec.drop_margin)),
            remeasure=bool(node.get("remeasure", False)),
            journal_mode=str(node.get("journal_mode", "auto")), custom=custom)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc) if str(exc).startswith("tuning") else f"tuning: {exc}") from None
    if spec.budget_s <= 0:
        raise ValueError(f"tuning.budget_s={spec.budget_s!r}: expected seconds > 0")
    if spec.warmup < 0 or spec.first_samples < 1 or spec.drop_margin < 0:
        raise ValueError(f"tuning: warmup must be >= 0, first_samples >= 1 and drop_margin >= 0 "
                         f"(got {spec.warmup}, {spec.first_samples}, {spec.drop_margin})")
    if variant.CUSTOM in spec.gemms and custom is None:
        raise ValueError("tuning.gemms names custom: your kernel file is gemm.source=PATH (with gemm.tile_macro, "
                         "gemm.function... as for gemm=custom; docs/your-kernel.md)")
    if spec.journal_mode not in JOURNAL_MODES:
        raise ValueError(f"tuning.journal_mode={spec.journal_mode!r}; valid: {', '.join(JOURNAL_MODES)}")
    return spec


def candidates_for(runtime, spec: TuningSpec, sparse: bool = True) -> list[Variant]:
    """The candidates of ``spec`` that ``runtime`` can run, in a fixed order; the sparse GEMMs (one
    candidate each, on every backend) only with ``sparse``: for a layer whose filter has zeros."""
    found = []
    for algo in spec.algos:
        if algo == "scalar":
            found.append(Variant.of("scalar"))
            continue
        for gemm in spec.gemms:
            if gemm == variant.CUSTOM:
                if runtime.has_kernels:
                    found += [Variant.of(algo, gemm, tile, custom=spec.custom) for tile in spec.tiles]
            elif gemm == "blocked":
                if runtime.has_kernels:
                    found += [Variant.of(algo, "blocked", tile, rung=rung)
                              for rung in spec.rungs for tile in spec.tiles]
            elif gemm not in SPARSE_GEMMS or sparse:
                found.append(Variant.of(algo, gemm))
    if not found:
        raise ValueError(f"tuning leaves no candidate on backend {runtime.name!r} (algos {list(spec.algos)}, "
                         f"gemms {list(spec.gemms)}; the blocked GEMM needs backend gpu or emulator)")
    return found


# --- keys -------------------------------------------------------------------------------------

def device_label(runtime) -> str:
    """The device of the key: the GPU's name; for CPU runtimes the CPU's and the threads the job computes
    with (torch's, which follow OMP_NUM_THREADS: a Ray task or a SLURM job gets the cores it was given,
    not the host's)."""
    name = runtime.device_name()
    if runtime.is_gpu:
        return name
    return f"{name} [{compute_threads()} threads]"


def compute_threads() -> int:
    """Threads a CPU job computes with: torch's intra-op threads, at most the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads()))


def runtime_label(runtime) -> str:
    return f"{runtime.name}/{runtime.kind}"


def kernel_hash_for(runtime) -> str:
    """The kernel sources' hash where the runtime runs them; "none" for the numpy runtime."""
    if not runtime.has_kernels:
        return "none"
    from experiments.runtime import sources   # looked up at call time: an edit of hip/ shows at once
    return sources.kernel_source_hash()


def density(conv: nn.Conv2d) -> float:
    """The fraction of the filter's weights that are not zero (1.0 for a dense layer)."""
    return float(torch.count_nonzero(conv.weight).item()) / conv.weight.numel()


def shape_label(conv: nn.Conv2d, input_shape) -> str:
    """The layer without its batch, e.g. c64-f128-56x56-k3x3-s2x2-p1x1-d1x1-g1-bias; a pruned filter
    adds its density (-density0.30), which decides sparse against dense."""
    _, c, h, w = (int(v) for v in input_shape)
    f, _, kh, kw = conv.weight.shape
    padding, extra = resolve_padding(conv.padding, tuple(conv.weight.shape), conv.stride, conv.dilation)
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    label = f"c{c}-f{f}-{h}x{w}-k{kh}x{kw}-s{sh}x{sw}-p{padding[0]}x{padding[1]}-d{dh}x{dw}-g{conv.groups}"
    if any(extra):
        label += f"-extra{extra[0]}x{extra[1]}"
    if conv.padding_mode != "zeros":
        label += f"-{conv.padding_mode}"
    filled = density(conv)
    if filled < 1.0:
        label += f"-density{filled:.2f}"
    return label + ("-bias" if conv.bias is not None else "")


# --- one layer --------------------------------------------------------------------------------

@dataclass
class _Trial:
    candidate: Variant
    module: ConvbenchConv2d | None = None
    samples: list[float] = field(default_factory=list)
    first_call_s: float | None = None
    rounds: int = 0
    status: str = "kept"
    error: str | None = None

    @property
    def median(self) -> float:
        return _percentile(self.samples, 50)

    @property
    def p10(self) -> float:
        return _percentile(self.samples, 10)

    def result(self) -> dict:
        out: dict = {"status": self.status, "round": self.rounds, "n": len(self.samples)}
        if self.samples:
            out["median_s"] = self.median
        if self.first_call_s is not None:
            out["first_call_s"] = self.first_call_s
        if self.error:
            out["error"] = self.error
        return out


def _percentile(samples, q: float) -> float:
    import numpy as np
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q)) if samples else math.inf


def tune_layer(conv: nn.Conv2d, name: str, x: torch.Tensor, runtime, candidates: list[Variant],
               spec: TuningSpec, clock, tolerance: float, budget_s: float, flush=None) -> TuningEntry:
    """Measure the candidates on one layer (see the module's docstring); raises RuntimeError
    naming the layer when no candidate runs it correctly."""
    deadline = time.perf_counter() + budget_s
    reference = conv(x)
    trials = [_Trial(c) for c in candidates]
    for trial in trials:
        try:
            trial.module = candidate_module(trial.candidate, conv, name, runtime)
            out = []
            trial.first_call_s = clock.time(lambda: out.append(trial.module(x)))
            err = relative_error(out[0].detach().cpu().numpy(), reference.detach().cpu().numpy())
            if not err <= tolerance:
                trial.status, trial.error = "failed", f"error {err:.3g} above the tolerance {tolerance:g}"
        except Exception as exc:   # a candidate that cannot run this layer is out, not the job
            trial.status, trial.error = "failed", f"{type(exc).__name__}: {exc}"
    alive = [t for t in trials if t.status != "failed"]
    if not alive:
        reasons = "; ".join(f"{t.candidate.label}: {t.error}" for t in trials)
        raise RuntimeError(f"algo=auto: no candidate runs layer {name!r} correctly ({reasons})")
    samples = spec.first_samples
    while True:
        for trial in alive:
            share = max((deadline - time.perf_counter()) / len(alive), 1e-3)
            protocol = Protocol(spec.warmup if trial.rounds == 0 else 0, samples, 0.0, share)
            module = trial.module
            measured = measure(lambda: module(x), protocol, clock, f"tune/{trial.candidate.label}/{name}",
                               flush=flush)
            trial.samples += measured.samples_s
            trial.rounds += 1
        alive.sort(key=lambda t: t.median)
        if len(alive) == 1 or time.perf_counter() >= deadline:
            break
        best = alive[0].median
        going_on = [t for t in alive if t.p10 <= best * (1 + spec.drop_margin)][:math.ceil(len(alive) / 2)]
        for trial in alive:
            if trial not in going_on:
                trial.status = "dropped"
        alive = going_on
        if len(alive) == 1:
            break
        samples *= 2
    winner = alive[0]
    others = sorted((t for t in trials if t is not winner and t.samples), key=lambda t: t.median)
    winner.status = "chosen"
    runner_up = others[0] if others else None   # its status says how far it got (dropped, kept)
    return TuningEntry(winner.candidate.label, winner.median, runner_up.candidate.label if runner_up else None,
                       runner_up.median if runner_up else None, {t.candidate.label: t.result() for t in trials})


# --- the model ----------------------------------------------------------------------------------

@dataclass
class LayerChoice:
    name: str
    key: TuningKey
    entry: TuningEntry
    source: str                      # measured | reused
    reused_from_run: bool = False    # reused: an earlier layer of this run had its shape (else the database)
    candidates: dict[str, Variant] = field(default_factory=dict)   # by label: a custom kernel's whole variant

    @property
    def choice(self) -> Variant:
        return self.candidates.get(self.entry.choice) or Variant.parse(self.entry.choice)

    @property
    def runner_up(self) -> Variant | None:
        if not self.entry.runner_up:
            return None
        return self.candidates.get(self.entry.runner_up) or Variant.parse(self.entry.runner_up)


@dataclass
class TuningOutcome:
    db_path: Path
    candidates: list[Variant]
    layers: list[LayerChoice] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def measured(self) -> int:
        return sum(layer.source == MEASURED for layer in self.layers)

    @property
    def reused(self) -> int:
        return sum(layer.source == REUSED for layer in self.layers)

    @property
    def reused_from_run(self) -> int:
        """Reused layers whose shape an earlier layer of this run measured (not the database's)."""
        return sum(layer.source == REUSED and layer.reused_from_run for layer in self.layers)

    @property
    def tuned_conv_s(self) -> float:
        """The sum over layers of the chosen candidates' tuning medians."""
        return sum(layer.entry.choice_s for layer in self.layers)

    def single_conv_s(self) -> dict[str, float]:
        """For each candidate measured on every layer, the sum of its tuning medians over the layers
        (what the model's convolutions would take on that candidate alone)."""
        totals: dict[str, float] = {}
        for candidate in self.candidates:
            medians = [layer.entry.medians().get(candidate.label) for layer in self.layers]
            if medians and all(m is not None for m in medians):
                totals[candidate.label] = sum(medians)
        return totals

    @property
    def best_single(self) -> Variant | None:
        """The one candidate that would run the whole model fastest, by the tuning measurements."""
        totals = self.single_conv_s()
        by_label = {c.label: c for c in self.candidates}
        return by_label[min(totals, key=totals.get)] if totals else None


def tune_model(model: nn.Module, convs: list[tuple[str, nn.Conv2d]], inputs: dict[str, torch.Tensor], runtime,
               spec: TuningSpec, dtype: str, clock, tolerance: float, flush=None,
               progress=None) -> TuningOutcome:
    """Choose a candidate for every layer of ``convs`` (their inputs captured in ``inputs``),
    from the tuning database where it has the layer, else by measuring it (then stored)."""
    started = time.perf_counter()
    outcome = TuningOutcome(spec.db_path, candidates_for(runtime, spec))
    device, rt, kernel_hash = device_label(runtime), runtime_label(runtime), kernel_hash_for(runtime)
    if spec.custom is not None and variant.CUSTOM in spec.gemms:   # an edited kernel file is measured again
        kernel_hash = f"{kernel_hash}+{spec.custom.sha256[:16]}"
    by_label = {c.label: c for c in outcome.candidates}
    per_layer = [candidates_for(runtime, spec, sparse=density(conv) < 1.0) for _, conv in convs]
    keys = [TuningKey(device, rt, kernel_hash, shape_label(conv, inputs[name].shape), dtype,
                      int(inputs[name].shape[0]), ",".join(c.label for c in candidates))
            for (name, conv), candidates in zip(convs, per_layer)]
    bar = progress(total=len(convs), desc="tuning") if progress else None
    with TuningDatabase(spec.db_path, spec.journal_mode) as db, torch.inference_mode():
        fresh = set()          # keys measured by this run (remeasure: measure each key once, then reuse)
        pending = {key for key in keys if spec.remeasure or db.get(key) is None}
        try:
            for (name, conv), key, candidates in zip(convs, keys, per_layer):
                entry = None if key in pending and key not in fresh else db.get(key)
                if entry is not None:
                    outcome.layers.append(LayerChoice(name, key, entry, REUSED, reused_from_run=key in fresh,
                                                      candidates=by_label))
                else:
                    left = len(pending - fresh)
                    budget = max(spec.budget_s - (time.perf_counter() - started), 0.0) / max(left, 1)
                    entry = tune_layer(conv, name, inputs[name], runtime, candidates, spec, clock, tolerance,
                                       budget, flush)
                    db.put(key, entry)
                    fresh.add(key)
                    outcome.layers.append(LayerChoice(name, key, entry, MEASURED, candidates=by_label))
                if bar is not None:
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
    outcome.seconds = time.perf_counter() - started
    return outcome


def build_tuned_model(model: nn.Module, outcome: TuningOutcome, runtime) -> nn.Module:
    """A copy of ``model`` with every tuned layer swapped for a ConvbenchConv2d on its choice."""
    tuned = copy.deepcopy(model)
    for layer in outcome.layers:
        conv = tuned.get_submodule(layer.name)
        parent_name, _, child = layer.name.rpartition(".")
        parent = tuned.get_submodule(parent_name) if parent_name else tuned
        setattr(parent, child, candidate_module(layer.choice, conv, layer.name, runtime))
    return tuned
