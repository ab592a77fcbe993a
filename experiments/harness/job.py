"""One job: build, check against float64 PyTorch, time, measure energy. No MLflow here.

    setup    the model (eval, fixed seed) and its input on the runtime's device; our copy of the
             model with every nn.Conv2d swapped; PyTorch's first call; each conv layer's input
    check    float64 reference of the model and of every conv layer on the same inputs; the
             first call of our model (compile_s) and of each layer alone, compared with it;
             fp32: any error above the tolerance raises ToleranceError (errors are kept);
             fp16/int8: each reduced-precision layer must pass the exactness gate
             (experiments/conv/exactness.py), and the precision cost against the fp32 model
             is measured (experiments/compress/precision_cost.py), failing the job only
             above quant.max_cost
    timing   by the protocol: our model, PyTorch's, then every layer alone, ours and PyTorch's; on an
             emulated runtime (not performance) each of them is timed once (timing.ONE_CALL)
    energy   a separate fixed-duration loop of our model under CodeCarbon

``Job.run()`` fills ``Job.outcome`` as it goes, so a failed job still reports what it measured.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from experiments.conv import ConvGeometry, LayerCost, Variant, exactness, layer_cost, swap_variant
from experiments.conv import custom
from experiments.conv.api import resolve_padding
from experiments.conv.variant import CUSTOM
from experiments.conv.swap import conv_inputs, conv_layers
from experiments.conv.tolerance import RELATIVE_TOLERANCE, relative_error

from experiments.compress import fidelity, precision_cost
from experiments.compress import pipeline as compression

from .config import AUTO, PYTORCH, JobSpec
from . import machine_load
from experiments.measure.energy import EnergyMeter, EnergyResult
from .machine_load import LoadSnapshot
from .errors import ToleranceError
from .models import build_model, make_input, weights_label
from experiments.measure.timing import ONE_CALL, CacheFlusher, CpuClock, EventClock, Measurement, expected_seconds, measure


PYTORCH_VARIANT = Variant(PYTORCH)


@dataclass
class LayerOutcome:
    name: str
    geometry: ConvGeometry
    max_rel_err: float
    precision: str = ""                    # fp16/int8 jobs: what the layer ran (fp32 where quant.skip kept it)
    gate: str = ""                         # fp16/int8 jobs: how it was checked (exactness.Verdict.method)
    precision_rel_err: float | None = None  # fp16/int8 jobs: against the fp32 layer on the same input
    cost: LayerCost | None = None          # ours after the timed calls (workspace of the last call)
    ours: Measurement | None = None
    baseline: Measurement | None = None


@dataclass
class JobOutcome:
    device: str = ""
    max_rel_err: float | None = None        # our model output vs the float64 reference
    baseline_rel_err: float | None = None   # PyTorch float32 vs float64, for scale
    compile_s: float | None = None
    layers: list[LayerOutcome] = field(default_factory=list)
    model: Measurement | None = None        # our whole forward (PyTorch's for algo=pytorch)
    baseline: Measurement | None = None     # PyTorch's whole forward
    energy: EnergyResult | None = None
    tuning: object | None = None            # algo=auto: experiments.tuning.TuningOutcome
    best_single: Measurement | None = None  # algo=auto: the whole forward on the best single candidate
    compression: object | None = None       # pruned/quantized: experiments.compress.pipeline.CompressionOutcome
    energy_error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    load_start: LoadSnapshot | None = None  # the machine's load when the job started and ended (machine_load.py)
    load_end: LoadSnapshot | None = None

    @property
    def conv_flops(self) -> int:
        return sum(layer_cost(layer.geometry, PYTORCH_VARIANT).flops for layer in self.layers)


def conv_geometry(conv: nn.Conv2d, input_shape) -> ConvGeometry:
    padding, _ = resolve_padding(conv.padding, tuple(conv.weight.shape), conv.stride, conv.dilation)
    return ConvGeometry.from_shapes(input_shape, conv.weight.shape, conv.stride, padding, conv.dilation, conv.groups)


def cudnn_benchmark(on: bool) -> None:
    """The PyTorch baseline's cuDNN autotuning, set explicitly for every job (a process's earlier job or
    library must not decide it). It autotunes a shape on its first call, which every target makes before
    its timed calls: the first call is timed alone (compile_s), then the warm-up, then the samples."""
    torch.backends.cudnn.benchmark = on


def cudnn_benchmark_tag(spec: JobSpec) -> str:
    """What the cudnn_benchmark tag says: on or off where PyTorch runs on cuDNN, else unused."""
    if not (spec.runtime.is_gpu and torch.backends.cudnn.is_available()):
        return "unused (no cuDNN)"
    return "on" if spec.cudnn_benchmark else "off"


class Job:
    def __init__(self, spec: JobSpec, progress: Callable[..., object] | None = None):
        self.spec = spec
        self.runtime = spec.runtime
        if hasattr(self.runtime, "kernel_timeout_s"):   # the emulator's watchdog (a GPU kernel cannot be stopped)
            self.runtime.kernel_timeout_s = spec.kernel_timeout_s
        self.device = torch.device("cuda" if self.runtime.is_gpu else "cpu")
        self.clock = EventClock("torch") if self.runtime.is_gpu else CpuClock(self.runtime.synchronize)
        self.flush = CacheFlusher(spec.flush_bytes, self.device) if spec.cache_mode == "cold" else None
        emulated = self.runtime.emulated
        self.model_protocol = ONE_CALL if emulated else spec.model_protocol
        self.layer_protocol = ONE_CALL if emulated else spec.layer_protocol
        self.progress = progress
        self.energy_meter = EnergyMeter(spec.country_iso_code, spec.region, spec.measure_power_secs) \
            if spec.energy == "codecarbon" else None
        self.outcome = JobOutcome()

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.outcome.phases[name] = self.outcome.phases.get(name, 0.0) + time.perf_counter() - start

    def run(self) -> JobOutcome:
        self.outcome.load_start = machine_load.snapshot()
        try:
            return self._run()
        finally:
            self.outcome.load_end = machine_load.snapshot()

    def _run(self) -> JobOutcome:
        cudnn_benchmark(self.spec.cudnn_benchmark)
        if self.energy_meter is not None:
            self.energy_meter.prewarm()
        with torch.inference_mode():
            with self.phase("setup_s"):
                self._setup()
            if self.spec.algo == AUTO:   # tuning measures: no background thread meanwhile
                if self.energy_meter is not None:
                    with self.phase("energy_detect_wait_s"):
                        self.energy_meter.wait()
                with self.phase("tuning_s"):
                    self._tune()
            with self.phase("check_s"):
                self._check()
            if self.energy_meter is not None:
                with self.phase("energy_detect_wait_s"):
                    self.energy_meter.wait()    # no background thread during the timed loops
            with self.phase("timing_s"):
                self._time()
            if self.energy_meter is not None and self.spec.energy_s > 0:
                with self.phase("energy_s"):
                    self._energy()
        return self.outcome

    # --- setup ---------------------------------------------------------------------------
    def _setup(self) -> None:
        spec, out = self.spec, self.outcome
        out.device = self.runtime.device_name()
        self.model = build_model(spec.model, spec.weights, spec.seed).to(self.device)
        self.x = make_input(spec.batch_size, spec.input_size, spec.seed, spec.model).to(self.device)
        self.compressed = self.dense = None
        self.baseline_model = self.model
        if spec.compressed:   # pruned and/or quantized: the dense fp32 model stays, timed in this job too
            with self.phase("compress_s"):
                self.compressed = compression.compress(spec.compression, spec.model, self.model, self.x,
                                                       spec.input_size, spec.seed, self.device)
            self.dense, self.model = self.model, self.compressed.model
            self.baseline_model = self.compressed.baseline
            out.compression = compression.CompressionOutcome(self.compressed.report, self.compressed.baseline_label,
                                                             weights=weights_label(spec.model, spec.weights))
        self.convs = conv_layers(self.model)
        if spec.algo == PYTORCH:
            self.ours = self.baseline_model
        elif spec.algo == AUTO:
            self.ours = None   # layer by layer, once their inputs are captured below (_tune)
        else:
            self.ours = swap_variant(copy.deepcopy(self.model), spec.variant, self.runtime,
                                     self.compressed.act_scales if self.compressed else None,
                                     self.compressed.fp32_layers if self.compressed else ())
        self.baseline_first_s, self.y32 = self._first_call(lambda: self.baseline_model(self.x))
        self.inputs = conv_inputs(self.model, self.x)

    def _tune(self) -> None:
        """algo=auto: each layer's choice (tuning database or measured), then the model on the choices and
        the model on the best single candidate (timed beside it)."""
        from experiments.tuning import build_tuned_model, tune_model
        spec = self.spec
        tuning = self.outcome.tuning = tune_model(self.model, self.convs, self.inputs, self.runtime, spec.tuning,
                                                  spec.quant, self.clock, spec.tolerance, self.flush, self.progress)
        self.ours = build_tuned_model(self.model, tuning, self.runtime)
        best, self.best_single = tuning.best_single, None
        if best is not None:
            self.best_single = swap_variant(copy.deepcopy(self.model), best, self.runtime)
            self.best_single_first_s, _ = self._first_call(lambda: self.best_single(self.x))

    def _first_call(self, fn) -> tuple[float, object]:
        """Time a target's first call alone (the protocol's compile_s); returns (seconds, result)."""
        result = []
        seconds = self.clock.time(lambda: result.append(fn()))
        self.outcome.phases["first_calls_s"] = self.outcome.phases.get("first_calls_s", 0.0) + seconds
        return seconds, result[0]

    # --- check ---------------------------------------------------------------------------
    def _check(self) -> None:
        spec, out = self.spec, self.outcome
        model64 = copy.deepcopy(self.model).double()
        y64 = model64(self.x.double())
        out.baseline_rel_err = _rel_err(self.y32, y64)
        if spec.algo == PYTORCH:
            out.compile_s, y = self.baseline_first_s, self.y32
        else:
            out.compile_s, y = self._first_call(lambda: self.ours(self.x))
        out.max_rel_err = _rel_err(y, y64)
        del y64
        self.first_calls: dict[str, tuple[float, float]] = {}
        wrong: list[str] = []    # fp16/int8: the layers that fail the exactness gate
        bar = self.progress(total=len(self.convs), desc="checking layers") if self.progress else None
        for name, conv in self.convs:
            x = self.inputs[name]
            ref = model64.get_submodule(name)(x.double())
            layer = self.ours.get_submodule(name)
            ours_first, y = self._first_call(lambda: layer(x))
            base = compression.baseline_layer(self.compressed, name, conv)
            base_first = ours_first if spec.algo == PYTORCH else self._first_call(lambda: base(x))[0]
            self.first_calls[name] = (ours_first, base_first)
            out.layers.append(LayerOutcome(name, conv_geometry(conv, x.shape), _rel_err(y, ref)))
            if self.reduced_precision:
                self._gate_layer(out.layers[-1], layer, conv, x, y, wrong)
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        del model64
        if not self.reduced_precision:
            check_tolerance(spec, out)
        elif wrong:
            raise ToleranceError(f"{spec.variant.label} fails the exactness gate in {len(wrong)} of "
                                 f"{len(out.layers)} layers: " + "; ".join(wrong[:3])
                                 + ("; ..." if len(wrong) > 3 else ""))
        if self.compressed is not None:   # what the compression costs: against the dense fp32 model
            with self.phase("fidelity_s"):
                self._measure_costs()

    @property
    def reduced_precision(self) -> bool:
        """fp16/int8 on our kernels: each layer is gated exactly, the model's deviation is a cost."""
        return self.spec.quant != "fp32" and self.spec.algo not in (PYTORCH, AUTO)

    def _gate_layer(self, outcome: LayerOutcome, layer, conv, x, y, wrong: list[str]) -> None:
        outcome.precision = layer.variant.dtype
        if outcome.precision == "fp32":   # kept in fp32 by quant.skip
            tolerance = RELATIVE_TOLERANCE["fp32"]
            outcome.gate = "fp32 tolerance"
            if not outcome.max_rel_err <= tolerance:
                wrong.append(f"{outcome.name}: fp32 layer max_rel_err {outcome.max_rel_err:.3g} over {tolerance:g}")
        else:
            verdict = exactness.check_layer(layer, x, y)
            outcome.gate = verdict.method
            if not verdict.ok:
                wrong.append(verdict.describe())
        outcome.precision_rel_err = precision_cost.layer_cost(y, conv(x))

    def _measure_costs(self) -> None:
        """Against the dense fp32 model (fidelity: what pruning and precision cost together) and, at fp16/int8,
        against the fp32 model that was quantized (the precision's own cost; quant.max_cost bounds it)."""
        spec, out, data = self.spec, self.outcome, self.compressed.evaluation
        logits = fidelity.predict(self.ours, data.images, self.device)
        out.compression.fidelity = fidelity.measure(self.ours, self.dense, data, self.device, ours_logits=logits)
        if not self.reduced_precision:
            return
        layers = {layer.name: layer.precision_rel_err for layer in out.layers if layer.precision != "fp32"}
        cost = out.compression.precision = precision_cost.measure(
            logits, self.model, data, self.device, layers, spec.quant, self.compressed.fp32_layers,
            out.compression.weights)
        excess = cost.exceeds(spec.compression.quantization.max_cost)
        if excess:
            raise ToleranceError(excess)

    # --- timing --------------------------------------------------------------------------
    def _measure(self, fn, protocol, label: str, first_call_s: float, bar: bool = True) -> Measurement:
        show = bar and expected_seconds(protocol, first_call_s) > self.spec.progress_s
        return measure(fn, protocol, self.clock, label, first_call_s=first_call_s, flush=self.flush,
                       progress=self.progress if show else None)

    def _time(self) -> None:
        spec, out = self.spec, self.outcome
        protocol = self.model_protocol
        out.baseline = self._measure(lambda: self.baseline_model(self.x), protocol, "pytorch/model",
                                     self.baseline_first_s)
        out.model = out.baseline if spec.algo == PYTORCH else \
            self._measure(lambda: self.ours(self.x), protocol, f"{spec.algo}/model", out.compile_s)
        if spec.algo == AUTO and self.best_single is not None:
            out.best_single = self._measure(lambda: self.best_single(self.x), protocol, "best_single/model",
                                            self.best_single_first_s)
        if self.compressed is not None:
            self._time_dense(protocol)
        protocol = self.layer_protocol
        expected = sum(expected_seconds(protocol, a) + expected_seconds(protocol, b)
                       for a, b in self.first_calls.values())
        bar = self.progress(total=len(self.convs), desc="layers") \
            if self.progress and expected > spec.progress_s else None
        try:
            for (name, conv), layer_out in zip(self.convs, out.layers):
                x, (ours_first, base_first) = self.inputs[name], self.first_calls[name]
                layer = self.ours.get_submodule(name)
                base = compression.baseline_layer(self.compressed, name, conv)
                layer_out.baseline = self._measure(lambda: base(x), protocol, f"pytorch/{name}", base_first, bar=False)
                if spec.algo == PYTORCH:
                    layer_out.ours = layer_out.baseline
                    layer_out.cost = layer_cost(layer_out.geometry, PYTORCH_VARIANT)
                else:
                    layer_out.ours = self._measure(lambda: layer(x), protocol, f"{spec.algo}/{name}", ours_first,
                                                   bar=False)
                    layer_out.cost = layer.cost
                if bar is not None:
                    bar.update()
        finally:
            if bar is not None:
                bar.close()

    def _time_dense(self, protocol) -> None:
        """Pruned/quantized: the dense fp32 model in the same job, on PyTorch and on the same technique
        (algo=auto: PyTorch only), and PyTorch fp16 beside an int8 model on a GPU."""
        spec, c = self.spec, self.outcome.compression
        first, _ = self._first_call(lambda: self.dense(self.x))
        c.dense_baseline = self._measure(lambda: self.dense(self.x), protocol, "pytorch/dense_model", first)
        if spec.algo == PYTORCH:
            c.dense = c.dense_baseline
        elif spec.algo != AUTO:
            dense_ours = swap_variant(copy.deepcopy(self.dense), replace(spec.variant, dtype="fp32"), self.runtime)
            first, _ = self._first_call(lambda: dense_ours(self.x))
            c.dense = self._measure(lambda: dense_ours(self.x), protocol, f"{spec.algo}/dense_model", first)
        fp16 = self.compressed.fp16_baseline
        if fp16 is not None:
            first, _ = self._first_call(lambda: fp16(self.x))
            c.baseline_fp16 = self._measure(lambda: fp16(self.x), protocol, "pytorch_fp16/model", first)

    # --- energy --------------------------------------------------------------------------
    def _energy(self) -> None:
        try:
            self.outcome.energy = self.energy_meter.measure(
                lambda: self.ours(self.x), self.spec.energy_s, self.spec.batch_size, self.clock.synchronize)
        except Exception as exc:   # energy is a side measurement: the job's timings stand without it
            self.outcome.energy_error = f"{type(exc).__name__}: {exc}"


def check_tolerance(spec: JobSpec, out: JobOutcome) -> None:
    """ToleranceError when the model output or any single layer is further from float64 PyTorch than the
    dtype's tolerance: a wrong layer fails the job even where the model output hides it."""
    worst = max(out.layers, key=lambda layer: layer.max_rel_err, default=None)
    if out.max_rel_err > spec.tolerance or (worst is not None and worst.max_rel_err > spec.tolerance):
        raise ToleranceError(
            f"{spec.variant.label} exceeds the {spec.quant} tolerance {spec.tolerance:g} against float64 PyTorch: "
            f"model output max_rel_err {out.max_rel_err:.3g}"
            + (f", worst layer {worst.name} {worst.max_rel_err:.3g}" if worst else "")
            + (_custom_diagnosis(spec, out) if spec.variant.gemm == CUSTOM else ""))


def _custom_diagnosis(spec: JobSpec, out: JobOutcome) -> str:
    """A user's kernel that is wrong: its first wrong layer, and that layer's GEMM run alone on fresh operands
    with the first wrong element of C, so that the student knows where to look."""
    first = next((layer for layer in out.layers if not layer.max_rel_err <= spec.tolerance), None)
    if first is None:
        return ""
    cost = layer_cost(first.geometry, spec.variant)
    text = f"; first wrong layer {first.name} (max_rel_err {first.max_rel_err:.3g})"
    if not cost.gemm_groups:
        return text
    try:
        check = custom.check_gemm(spec.runtime, spec.variant.custom, spec.variant.tile, cost.gemm_m,
                                  cost.gemm_n // first.geometry.batch, cost.gemm_k, spec.tolerance)   # one image's
    except Exception as exc:   # the kernel failing outright on this shape says as much
        return f"{text}: its GEMM alone fails: {type(exc).__name__}: {exc}"
    return f"{text}: {spec.variant.custom.name} alone on {check.describe()}"


def _rel_err(y: torch.Tensor, reference: torch.Tensor) -> float:
    """The engine's relative error (max|y - ref| / max|ref|), on host copies."""
    return relative_error(y.detach().cpu().numpy(), reference.detach().cpu().numpy())
