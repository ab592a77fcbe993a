"""Synthetic MLflow stores for the report tests: runs logged the way the harness logs them,
with numbers chosen so that every expected table value is known by hand.

Group A ("Synthetic GPU A", gpu): full metrics, layers.csv, energy; best tiles differ per algo.
Group B ("Synthetic CPU B", numpy): no p10/p90, no energy, no layers.csv (an older harness);
  its im2col tile 8 is faster than anything in group A, so mixing groups would change A's best tile.
Emulated ("Synthetic CPU B", emulator): a huge latency that must never appear as performance.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from experiments.conv import ConvGeometry, Variant, layer_cost  # noqa: E402
from experiments.tracking import contract as c  # noqa: E402

GPU_A = "Synthetic GPU A"
CPU_B = "Synthetic CPU B"
MODEL = "toynet"

# (name, in_channels, out_channels, k, stride, in_hw): the three conv layers of "toynet".
TOYNET_LAYERS = [("conv1", 3, 16, 3, 1, 32), ("conv2", 16, 32, 3, 2, 32), ("conv3", 32, 64, 1, 1, 16)]


def layer_rows(algo: str, latencies: list[float], baseline: list[float] | None = None,
               batch: int = 1) -> list[dict]:
    """layers.csv rows with the harness's own accounting (GEMM dims, workspace, intensity)."""
    rows = []
    for (name, cin, cout, k, stride, hw), latency, base in zip(
            TOYNET_LAYERS, latencies, baseline or [None] * len(latencies)):
        pad = k // 2
        geometry = ConvGeometry(batch, cin, cout, hw, hw, k, k, (stride, stride), (pad, pad))
        cost = layer_cost(geometry, Variant.of(algo, "vendor")).as_dict()
        rows.append({
            "layer": name, "batch": batch, "in_channels": cin, "out_channels": cout,
            "kernel_h": k, "kernel_w": k, "stride": stride, "padding": pad, "dilation": 1,
            "groups": 1, "in_h": hw, "in_w": hw, "out_h": geometry.out_h, "out_w": geometry.out_w,
            **cost,
            "latency_ms": latency, "latency_p10_ms": latency * 0.9,
            "latency_p90_ms": latency * 1.1, "baseline_latency_ms": base, "max_rel_err": 1e-7,
        })
    return rows


class SyntheticStore:
    """Logs parent and job runs into a sqlite store under `root`, artifacts under root too."""

    def __init__(self, root: Path, experiment: str = "convbench-test"):
        self.root = Path(root)
        self.uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self.client.create_experiment(
            experiment, artifact_location=(self.root / "artifacts").as_uri())
        self.clock = 1_700_000_000_000  # start times increase run by run: "latest" is defined
        self.parent_id = None

    def _tick(self) -> int:
        self.clock += 1000
        return self.clock

    def parent(self, sweep_id: str) -> str:
        run = self.client.create_run(self.experiment_id, start_time=self._tick(),
                                     tags={c.T_RUN_KIND: "parent", c.T_SWEEP_ID: sweep_id},
                                     run_name=f"sweep-{sweep_id}")
        self.client.set_terminated(run.info.run_id, "FINISHED")
        self.parent_id = run.info.run_id
        return run.info.run_id

    def job(self, algo: str, gemm: str = "blocked", tile: int = 16, *, device: str = GPU_A,
            backend: str = "gpu", metrics: dict | None = None, layers: list[dict] | None = None,
            status: str = "ok", error: str = "", quant: str = "fp32", prune: str = "none",
            prune_amount: float = 0.0, model: str = MODEL, energy_mode: str = "nvml",
            timing: str | None = None, tags: dict | None = None, sweep_id: str = "s1", rung: str | None = None) -> str:
        runtime = {"gpu": "cuda", "numpy": "cpu", "emulator": "emulated"}[backend]
        timing = timing or ("emulated" if backend == "emulator" else "measured")
        name = f"{model}/{algo}/{gemm}-t{tile}/{quant}/{prune}-{prune_amount}"
        tags = {c.T_RUN_KIND: "job", c.T_STATUS: status, c.T_DEVICE: device, c.T_BACKEND: backend,
                c.T_RUNTIME: runtime, c.T_TIMING: timing, c.T_GIT_SHA: "0123456789abcdef",
                c.T_GIT_DIRTY: "false", c.T_KERNEL_HASH: "feedc0de", c.T_SWEEP_ID: sweep_id,
                c.T_ENERGY_MODE: energy_mode, f"{c.T_VERSION_PREFIX}torch": "2.13.0",
                f"{c.T_VERSION_PREFIX}mlflow": "3.17.2", **(tags or {})}
        if error:
            tags[c.T_ERROR] = error
        if self.parent_id:
            tags["mlflow.parentRunId"] = self.parent_id
        params = {c.P_MODEL: model, c.P_BATCH: "1", c.P_INPUT_SIZE: "32", c.P_ALGO: algo,
                  c.P_GEMM: gemm, c.P_TILE: str(tile), c.P_BACKEND: backend, c.P_QUANT: quant,
                  c.P_PRUNE: prune, c.P_PRUNE_AMOUNT: str(prune_amount), c.P_BENCH: "smoke",
                  c.P_CACHE_MODE: "hot", "bench.warmup": "10"}
        if rung is not None:   # the resolved variant as the harness logs it (variant.*), its rung included
            params.update(Variant.of(algo, gemm, tile, quant, rung).params())
            name = f"{model}/{Variant.of(algo, gemm, tile, quant, rung).label}/{prune}-{prune_amount}"
        start = self._tick()
        run = self.client.create_run(self.experiment_id, start_time=start, tags=tags, run_name=name)
        run_id = run.info.run_id
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), start, 0) for k, v in (metrics or {}).items()],
            params=[Param(k, v) for k, v in params.items()])
        if layers is not None:
            path = self.root / "staging" / run_id / c.A_LAYERS
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(c.LAYER_COLUMNS))
                writer.writeheader()
                writer.writerows(layers)
            self.client.log_artifact(run_id, str(path))
        self.client.set_terminated(run_id, "FINISHED" if status == "ok" else "FAILED",
                                   end_time=start + 500)
        return run_id


def timing(median: float, baseline: float | None = 10.0, spread: bool = True,
           energy_j: float | None = None) -> dict:
    """Metrics of a job: median, side-by-side PyTorch baseline, optionally p10/p90 and energy."""
    metrics = {c.LATENCY_MS: median, c.MAX_REL_ERR: 1e-7, c.CONV_LATENCY_MS: median * 0.9,
               c.GFLOPS: 1.0 / median, c.COMPILE_S: 0.1}
    if baseline is not None:
        metrics[c.BASELINE_LATENCY_MS] = baseline
        metrics[c.SPEEDUP_VS_BASELINE] = baseline / median
    if spread:
        metrics.update({c.LATENCY_P10_MS: median * 0.9, c.LATENCY_P90_MS: median * 1.2,
                        c.LATENCY_IQR_REL: 0.05})
    if energy_j is not None:
        metrics.update({c.ENERGY_PER_INFERENCE_J: energy_j, c.ENERGY_KWH: 1e-4,
                        c.EMISSIONS_KG: 5e-5})  # carbon intensity 0.5 kg/kWh
    return metrics


# Per-layer latencies [ms] of group A. Fastest per layer: conv1 im2col+vendor,
# conv2 kn2row+blocked (tile 32), conv3 pytorch.
A_LAYER_MS = {
    ("pytorch", None): [3.0, 4.0, 1.2],
    ("im2col", 8): [2.0, 3.0, 3.0], ("im2col", 16): [1.5, 2.0, 1.5], ("im2col", 32): [1.0, 2.5, 2.5],
    ("kn2row", 8): [4.0, 4.0, 4.0], ("kn2row", 16): [3.0, 3.0, 3.0], ("kn2row", 32): [2.5, 1.0, 3.5],
    ("im2col", "vendor"): [0.8, 1.5, 1.7], ("kn2row", "vendor"): [1.0, 1.2, 3.8],
    ("scalar", None): [6.0, 7.0, 7.0],
}
# Group A end-to-end medians [ms]; PyTorch side by side = 10 ms except kn2row+vendor (12 ms).
A_MEDIAN_MS = {
    ("im2col", 8): 8.0, ("im2col", 16): 5.0, ("im2col", 32): 6.0,
    ("kn2row", 8): 12.0, ("kn2row", 16): 9.0, ("kn2row", 32): 7.0,
}
# What the end-to-end table of group A must hold: technique, tile, median, speedup.
A_EXPECTED = {
    "pytorch": (None, 10.0, 1.0),
    "im2col+blocked": (16, 5.0, 2.0),
    "im2col+vendor": (None, 4.0, 2.5),
    "kn2row+blocked": (32, 7.0, 10.0 / 7.0),
    "kn2row+vendor": (None, 6.0, 2.0),      # side-by-side baseline 12 ms, not the 10 ms run
    "scalar": (None, 20.0, 0.5),            # the later of two scalar runs
}


def full_store(root: Path) -> SyntheticStore:
    """Groups A and B, an emulated run, a failed run, pruned and quantized runs."""
    store = SyntheticStore(root)
    store.parent("s1")
    pytorch_layers = A_LAYER_MS[("pytorch", None)]

    def a_layers(algo, key):
        return layer_rows(algo, A_LAYER_MS[(algo, key)], baseline=pytorch_layers)

    store.job("pytorch", metrics=timing(10.0, energy_j=0.5), layers=a_layers("pytorch", None))
    for (algo, tile), median in A_MEDIAN_MS.items():
        store.job(algo, "blocked", tile, metrics=timing(median, energy_j=0.3),
                  layers=a_layers(algo, tile))
    store.job("im2col", "vendor", metrics=timing(4.0, energy_j=0.2),
              layers=a_layers("im2col", "vendor"))
    store.job("kn2row", "vendor", metrics=timing(6.0, baseline=12.0, energy_j=0.25),
              layers=a_layers("kn2row", "vendor"))
    # scalar crossed with two GEMM settings: one variant, the later run counts.
    store.job("scalar", "blocked", 16, metrics=timing(30.0, energy_j=0.9),
              layers=a_layers("scalar", None))
    store.job("scalar", "vendor", metrics=timing(20.0, energy_j=0.8), layers=a_layers("scalar", None))
    store.job("kn2row", "blocked", 64, status="failed",
              error="RuntimeError: tile 64 needs 64 KiB of shared memory")
    # Pruning and quantization (group A).
    store.job("im2col", "vendor", metrics=timing(3.0) | {c.MAX_REL_ERR: 1e-6},
              prune="unstructured", prune_amount=0.5)
    store.job("im2col", "vendor", metrics=timing(2.0) | {c.MAX_REL_ERR: 1e-5},
              prune="unstructured", prune_amount=0.9)
    store.job("im2col", "vendor", metrics=timing(2.5) | {c.MAX_REL_ERR: 3e-4}, quant="fp16")

    # Group B: an older harness (no p10/p90, no energy, no layers.csv) on another device.
    store.parent("s2")
    b = {"device": CPU_B, "backend": "numpy", "energy_mode": "off"}
    store.job("pytorch", metrics=timing(6.0, baseline=6.0, spread=False), **b)
    store.job("im2col", "blocked", 8, metrics=timing(3.0, baseline=6.0, spread=False), **b)
    store.job("im2col", "blocked", 16, metrics=timing(4.0, baseline=6.0, spread=False), **b)
    store.job("im2col", "vendor", metrics=timing(2.0, baseline=6.0, spread=False), **b)

    # Emulated: correct but slow; never performance.
    store.job("im2col", "blocked", 16, device=CPU_B, backend="emulator",
              metrics=timing(999.0, baseline=6.0), energy_mode="off")
    return store


def sparse_store(root: Path) -> SyntheticStore:
    """Older runs: only medians, no p10/p90, no energy, no layers.csv, no pruning."""
    store = SyntheticStore(root)
    store.job("pytorch", metrics=timing(10.0, spread=False))
    store.job("im2col", "vendor", metrics=timing(5.0, spread=False))
    return store
