"""The resolved variant from config to report: what a job is compiled with, checked by, logged as, and read back as.

Each test here is written to fail on a real bug the CPU suite once let through: the tile silently
ignored, the -D defines dropped from the gpu runtime's compile options, p10 and p90 swapped in the
logged metrics, the per-layer tolerance check dropped.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from experiments.conv import ConvGeometry, Variant, ladder, layer_cost
from experiments.conv.plan import ConvPlan
from experiments.conv.tolerance import relative_error
from experiments.harness.errors import ToleranceError
from experiments.harness.job import JobOutcome, LayerOutcome, check_tolerance
from experiments.harness.results import contract_metrics, layer_rows, resolved_params
from experiments.measure.timing import Measurement
from experiments.tracking import contract


# --- the variant itself --------------------------------------------------------------------------

@pytest.mark.parametrize("choice, label", [
    (("scalar", "blocked", 32), "scalar/fp32"),                  # no GEMM: gemm and tile dropped
    (("pytorch", "vendor", 16, "fp16"), "pytorch/fp16"),
    (("im2col", "vendor", 32), "im2col/vendor/fp32"),            # the tile only applies to blocked
    (("kn2row", "blocked", 8, "int8"), "kn2row/blocked-t8/int8"),
    (("im2col", "auto_sparse"), "im2col/auto_sparse/fp32"),
])
def test_one_label_format_and_its_parser(choice, label):
    variant = Variant.of(*choice)
    assert variant.label == label and Variant.parse(label) == variant


@pytest.mark.parametrize("bad", ["im2col", "im2col/blocked-t8", "a/b/c/fp32", "im2col/vendor/fp64"])
def test_a_label_that_is_not_one_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=f"{bad!r} is not a variant label"):
        Variant.parse(bad)


def test_every_field_is_a_logged_param_named_in_the_contract():
    params = Variant.of("kn2row", "blocked", 8).params()
    assert set(params) == set(contract.VARIANT_PARAMS)
    assert params[contract.P_VARIANT_TILE] == "8" and params[contract.P_VARIANT_LABEL] == "kn2row/blocked-t8/fp32"
    assert Variant.of("scalar").params()[contract.P_VARIANT_GEMM] == ""


# --- the tile reaches the compiler ---------------------------------------------------------------

class _RawModule:
    """cupy.RawModule's stand-in: records the options NVRTC/hiprtc would get; its kernels do nothing."""

    compiled: list = []

    def __init__(self, code: str, options: tuple):
        self.code, self.options = code, options
        _RawModule.compiled.append(self)

    def get_function(self, name):
        return lambda grid, block, args, shared_mem=0: None


@pytest.mark.parametrize("rung", ["blocked", "fold"])
@pytest.mark.parametrize("tile", [8, 32])
def test_the_gpu_runtime_compiles_the_blocked_gemm_with_the_variant_tile(monkeypatch, tile, rung):
    from experiments.runtime import gpu
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=_RawModule))
    gpu._load_module.cache_clear()
    monkeypatch.setattr(_RawModule, "compiled", [])
    runtime = gpu.GpuRuntime.__new__(gpu.GpuRuntime)   # no device: the loader is what is under test
    runtime.xp, runtime.kind = np, "cuda"
    monkeypatch.setattr(ladder, "multiprocessors", lambda runtime: ladder.DEFAULT_SMS)   # split-K asks the device
    try:
        w = np.random.default_rng(0).standard_normal((6, 4, 3, 3)).astype(np.float32)
        plan = ConvPlan.build(w, None, 1, 1, 1, 1, Variant.of("im2col", "blocked", tile, rung=rung), runtime)
        plan(np.zeros((1, 4, 7, 5), np.float32))
    finally:
        gpu._load_module.cache_clear()
    gemm = [m for m in _RawModule.compiled if f"{ladder.rung(rung).function}(" in m.code]
    assert len(gemm) == 1 and f"-DTHREADS_PER_SIDE={tile}" in gemm[0].options
    segment = "" if rung == ladder.DEFAULT_RUNG else f"-{rung}"
    assert plan.last_cost.variant == f"im2col/blocked{segment}-t{tile}/fp32"


# --- the check before timing ---------------------------------------------------------------------

def test_relative_error_is_relative_to_the_reference_peak():
    reference = np.array([[1.0, -4.0], [2.0, 0.5]])
    assert relative_error(reference, reference) == 0.0
    assert relative_error(reference + np.array([[0.0, 0.0], [0.0, 0.2]]), reference) == pytest.approx(0.2 / 4)
    assert relative_error(reference * (1 + 1e-3), reference) == pytest.approx(1e-3)
    assert relative_error(np.array([0.0, 3e-7]), np.zeros(2)) == pytest.approx(3e-7)   # all-zero reference: absolute
    assert relative_error(np.float32([1, 2]), np.float64([1, 2])) == 0.0


def _spec(dtype="fp32"):
    from experiments.harness.config import JobSpec
    from experiments.runtime import resolve
    fields = {name: None for name in JobSpec.__dataclass_fields__}
    return JobSpec(**{**fields, "model": "m", "variant": Variant.of("im2col", "vendor", dtype=dtype),
                      "runtime": resolve("numpy")})


def _outcome(model_err, *layer_errs):
    g = ConvGeometry.from_shapes((1, 3, 8, 8), (4, 3, 3, 3), padding=1)
    return JobOutcome(max_rel_err=model_err, layers=[LayerOutcome(f"conv{i}", g, e) for i, e in enumerate(layer_errs)])


def test_one_layer_over_the_tolerance_fails_the_job_even_when_the_model_output_passes():
    spec = _spec()
    check_tolerance(spec, _outcome(1e-6, 2e-6, 9e-5))
    with pytest.raises(ToleranceError, match="worst layer conv1 0.0003"):
        check_tolerance(spec, _outcome(1e-6, 2e-6, 3e-4, 1e-6))
    with pytest.raises(ToleranceError, match="model output max_rel_err 0.0002"):
        check_tolerance(spec, _outcome(2e-4, 1e-6))
    check_tolerance(_spec("int8"), _outcome(5e-2, 9e-2))


# --- what is logged ------------------------------------------------------------------------------

def test_logged_percentiles_are_ordered():
    samples = tuple(np.linspace(1e-3, 3e-3, 21))
    layer = LayerOutcome("conv0", ConvGeometry.from_shapes((1, 3, 8, 8), (4, 3, 3, 3), padding=1), 1e-7,
                         ours=Measurement("im2col/conv0", samples), baseline=Measurement("pytorch/conv0", samples))
    layer.cost = layer_cost(layer.geometry, Variant.of("im2col", "vendor"))
    outcome = JobOutcome(max_rel_err=1e-7, layers=[layer], model=Measurement("im2col/model", samples),
                         baseline=Measurement("pytorch/model", samples))
    m = contract_metrics(_spec(), outcome)
    assert m[contract.LATENCY_P10_MS] < m[contract.LATENCY_MS] < m[contract.LATENCY_P90_MS]
    assert m[contract.LATENCY_P10_MS] == pytest.approx(1.2) and m[contract.LATENCY_P90_MS] == pytest.approx(2.8)
    row, = layer_rows(_spec(), outcome)
    assert row["latency_p10_ms"] < row["latency_ms"] < row["latency_p90_ms"]
    assert set(row) <= set(contract.LAYER_COLUMNS)
    assert resolved_params(_spec())[contract.P_VARIANT_LABEL] == "im2col/vendor/fp32"


# --- config -> run -> report ---------------------------------------------------------------------

def test_an_emulator_job_with_tile_8_reaches_the_report_as_tile_8(convbench, tmp_path, monkeypatch):
    """One tiny job into a temp sqlite store, then the report from that store."""
    from analysis import report
    from analysis.load import jobs_frame, read_layers
    from analysis.store import Store
    from experiments.runtime.emulator import EmulatorRuntime

    compiled = []
    real_load = EmulatorRuntime.load
    monkeypatch.setattr(EmulatorRuntime, "load", lambda self, source, defines=None: (
        compiled.append((str(source), dict(defines or {}))), real_load(self, source, defines))[1])
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = convbench("model=digits_cnn", "model.input_size=8", "backend=emulator", "algo=kn2row", "gemm=blocked",
                     "gemm.tile=8", "bench=smoke", "bench.model.warmup=1", "bench.model.min_samples=7",
                     "bench.layer.warmup=1", "bench.layer.min_samples=5", "energy=off", f"tracking.uri={uri}")
    assert code == 0
    assert {d["THREADS_PER_SIDE"] for source, d in compiled if source.endswith("gemm_1_blocked.hip")} == {8}

    store = Store(uri)
    jobs = jobs_frame(store.runs([e.experiment_id for e in store.experiments(None)]))
    job, = jobs.itertuples()
    assert (job.variant, job.algo, job.gemm, job.tile, job.quant) == ("kn2row/blocked-t8/fp32", "kn2row", "blocked",
                                                                     8, "fp32")
    # emulated: one timed call whatever bench asks (not performance), so no percentiles
    assert job.latency_samples == 1 and job.latency_ms > 0 and np.isnan(job.latency_p10_ms)
    layers = read_layers(store.download_layers(job.run_id, tmp_path / "layers"), job.run_id)
    assert len(layers) and (layers["variant"] == "kn2row/blocked-t8/fp32").all() and (layers["tile"] == 8).all()
    assert (layers["latency_ms"] > 0).all() and layers["latency_p10_ms"].isna().all()

    assert report.main(["--tracking-uri", uri, "--out", str(tmp_path / "reports")]) == 0
    emulated = pd.read_csv(tmp_path / "reports" / "tables" / "emulated.csv")   # correct, never performance
    assert emulated[["technique", "tile", "precision", "status"]].values.tolist() == [["kn2row+blocked", 8, "fp32", "ok"]]
