"""Compose the report's sections from job rows and layer rows.

Order of the report: setup (what was measured, how), findings, one chapter per device and
backend (end-to-end, per layer, tile sweep, energy, roofline, pruning, quantization), then the
runs that are not compared: emulated and failed. A section only appears where runs hold its data.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import figures, findings, tables
from analysis.ceilings import Ceilings, ceilings_for, device_peaks, observed_envelope
from analysis.document import Bullets, Figure, Names, Paragraph, Section, Table
from analysis.load import STATUS_FAILED, STATUS_OK, STATUS_RUNNING
from analysis.render import FIGURES_DIR
from analysis.selection import (
    GROUP_KEYS, SCENARIO_KEYS, comparison_runs, dense_fp32, group_label, iterate_groups, iterate_scenarios,
    scenario_label,
)
from experiments.tracking import contract as c
from experiments.tracking.labels import GPU, interval_text, ratio_text, significant, versus_pytorch_text, what_ran

PROTOCOL = (
    "Bench protocol (docs/design.md): buffers are built and the result is checked against a float64 "
    "PyTorch reference before any timing; the first call is timed alone (`compile_s`); at least "
    "10 warm-up calls follow, then calls repeat until a minimum time and a minimum sample count "
    "are met. GPU calls are timed with device events on one stream, CPU calls with "
    "`time.perf_counter_ns`; host-device copies stay outside the timed region. Tables give the "
    "median with p10 and p90; IQR/median above 10% is flagged as noisy. PyTorch is timed in every "
    "job, side by side, and speedups are the ratio of the two medians."
)

ENERGY_MODES = {
    "rapl": "measured with RAPL energy counters (CPU, RAM)",
    "nvml": "measured with NVML power readings (GPU)",
    "estimated": ("estimated by CodeCarbon from load and TDP constants (no power counters were "
                  "available): it mostly tracks run time, so read it as an estimate"),
    "off": "not measured",
    "failed": "failed (CodeCarbon reported an error; the run's energy_error tag says which): no figure",
}

# How each energy mode is named in a figure title, so a chart never hides that it is an estimate.
ENERGY_MODE_SHORT = {"rapl": "RAPL counters", "nvml": "NVML power readings",
                     "estimated": "CodeCarbon ESTIMATE, not measured"}

FMT_MS = significant      # 4 significant digits, never '1e+03'
FMT_X = ratio_text         # '1.56× faster', '1.6× slower'
def FMT_CI(value) -> str:   # noqa: N802  (a format, like the constants beside it)
    """An interval's end read like the point estimate: '0.421 (2.38× slower)'."""
    return f"{value:.3g} ({ratio_text(value)})"
FMT_REL = "{:.1%}"


def energy_mode_text(modes) -> str:
    modes = sorted({m for m in modes if m}) or ["unknown"]
    if len(modes) == 1:
        return ENERGY_MODES.get(modes[0], f"in mode '{modes[0]}' (not documented)")
    return "; ".join(f"{m}: {ENERGY_MODES.get(m, 'mode not documented')}" for m in modes)


def _speedup_format(value) -> str:
    """The number beside its reading: '0.63 (1.6× slower)'; PyTorch's own row reads 'reference'."""
    return "1 (reference)" if value == 1 else f"{value:.3g} ({ratio_text(value)})"


def _tile_format(value) -> str:
    return str(int(value))


def _error_format(value) -> str:
    first = str(value).strip().splitlines()[0] if str(value).strip() else ""
    return first if len(first) <= 160 else first[:157] + "..."



# Columns of pruned/quantized jobs (experiments/compress; tables._compression_columns).
COMPRESSION_FORMATS = {"speedup vs dense, same job [×]": "{:.2f}×", "MAC ratio": "{:.3g}", "pruned (achieved)": "{:.2f}",
                       "top-1 agreement": "{:.3f}", "fidelity rel err": "{:.2g}", "top-1 accuracy": "{:.3f}",
                       "dense top-1 accuracy": "{:.3f}", "cost: rel err vs fp32": "{:.2g}", "top-1 vs fp32": "{:.3f}",
                       "worst layer rel err": "{:.2g}"}
COMPRESSION_NOTE = ("Speedups are wall-clock: \"speedup vs dense, same job\" divides the dense fp32 model's time "
                    "on the same technique, measured in the same job, by the pruned model's; the MAC ratio beside it "
                    "is what pruning tools report (dense MACs over MACs with non-zero weights), which dense kernels "
                    "do not deliver for unstructured or filter pruning. Top-1 agreement and relative error are "
                    "against the dense fp32 model on the job's evaluation images (random images for a randomly "
                    "initialised model, a weak signal); top-1 accuracy where labels exist (digits_cnn, an image "
                    "folder). PyTorch has no int8 convolution on GPUs: int8 runs are compared with fp32 (and fp16). "
                    "Every fp16/int8 layer passed the exactness gate (int8 bit-exact against an integer reference, fp16 "
                    "within the float32 accumulation bound); the cost columns measure the precision alone, against the "
                    "fp32 model it quantized: relative error of the logits, top-1 agreement, and the worst layer on the "
                    "input the fp32 model gives it; \"kept fp32\" names the layers quant.skip left in fp32. Costs on "
                    "random weights (weights: random) say how the arithmetic behaves, not what accuracy a trained "
                    "model keeps.")

class ReportBuilder:
    def __init__(self, jobs: pd.DataFrame, layers: pd.DataFrame, out_dir: Path,
                 measured_ceilings: dict[str, Ceilings], source: dict, data_notes: list[str],
                 samples: dict | None = None):
        self.jobs = jobs
        self.layers = layers
        self.samples = samples or {}     # run_id -> {target: raw seconds} (analysis/samples.py)
        self.figures_dir = out_dir / FIGURES_DIR
        self.measured_ceilings = measured_ceilings
        self.source = source
        self.data_notes = list(data_notes)
        self.names = Names()
        self.findings = Section("Findings")

    # --- helpers ----------------------------------------------------------------------

    def _figure(self, draw, name_parts, caption, *args) -> Figure:
        name = self.names("fig", *name_parts)
        path = draw(*args, self.figures_dir / f"{name}.png")
        return Figure(name, caption, path)

    def _table(self, name_parts, caption, frame, formats=None) -> Table:
        return Table(self.names(*name_parts), caption, frame, formats or {})

    # --- the whole report -------------------------------------------------------------

    def build(self) -> list[Section]:
        ok = self.jobs[self.jobs["status"] == STATUS_OK]
        measured = ok[~ok["emulated"]]
        chapters = [self._group_chapter(key, runs) for key, runs in iterate_groups(measured)]
        sections = [self._what_ran(measured), self._setup(), self.findings, *chapters,
                    self._emulated(ok[ok["emulated"]]), self._failed(), self._data_notes()]
        return [s for s in sections if not s.is_empty()]

    # --- what ran ---------------------------------------------------------------------

    def _what_ran(self, measured: pd.DataFrame) -> Section:
        """First thing a reader sees: which implementations the numbers are of, and on what."""
        section = Section("What ran")
        items = [f"{device}: {what_ran(backend)} ({len(runs)} run(s))"
                 for (device, backend), runs in measured.groupby(["device", "backend"], sort=True)]
        emulated = self.jobs[self.jobs["emulated"]]
        if len(emulated):
            items.append(f"{len(emulated)} emulated run(s): {what_ran('emulator')}; in the correctness table only.")
        if not (measured["backend"] == "gpu").any():
            section.add(Paragraph("**No GPU run in this report.** Every timing below is of "
                                  + (f"the {what_ran('numpy')}" if len(measured) else "no measured run")
                                  + f": it says nothing about the {GPU}. Run the sweep with `backend=gpu` on a "
                                  "GPU machine for those."))
        if items:
            section.add(Bullets(items))
        return section

    # --- setup ------------------------------------------------------------------------

    def _setup(self) -> Section:
        section = Section("Setup")
        jobs = self.jobs
        counts = self.source.get("status_counts") or jobs["status"].value_counts().to_dict()
        span = ""
        if len(jobs):
            first, last = jobs["start_time"].min(), jobs["start_time"].max()
            span = f", started {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
        section.add(Paragraph(
            f"Source: `{self.source['tracking_uri']}`, experiment(s) "
            f"{', '.join(self.source['experiments'])}; {self.source.get('runs', len(jobs))} job runs "
            f"({counts.get(STATUS_OK, 0)} ok, {counts.get(STATUS_FAILED, 0)} failed, "
            f"{counts.get(STATUS_RUNNING, 0)} unfinished){span}. Runs are compared only within "
            f"one device, backend and cache mode, and within one model, batch and input size."))
        rows = []
        for key, runs in iterate_groups(jobs):
            dirty = runs["git_dirty"].astype(str).str.lower().isin(["true", "1", "yes"]).any()
            shas = sorted({s[:10] for s in runs["git_sha"] if s})
            rows.append({
                "device": key[0], "backend": key[1], "runtime": ", ".join(sorted(set(runs["runtime"]) - {""})),
                "cache mode": key[2], "timing": ", ".join(sorted(set(runs["timing"]))),
                "runs ok": int((runs["status"] == STATUS_OK).sum()),
                "runs failed": int((runs["status"] == STATUS_FAILED).sum()),
                "sweeps": runs["sweep_id"].replace("", pd.NA).nunique(),
                "git sha": ", ".join(shas) + (" (uncommitted changes)" if dirty else ""),
                "kernel hash": ", ".join(sorted({h for h in runs["kernel_hash"] if h})),
                "energy mode": ", ".join(sorted({m for m in runs["energy_mode"] if m})),
            })
        devices = pd.DataFrame(rows)
        devices = devices.loc[:, [col for col in devices.columns
                                  if not (devices[col].astype(str) == "").all()]]
        section.add(self._table(["setup", "devices"], "Devices, backends and code versions",
                                devices))
        versions = self._versions()
        if not versions.empty:
            section.add(self._table(["setup", "versions"], "Library versions (tags version.*)",
                                    versions))
        section.add(Paragraph(PROTOCOL))
        bench = self._bench_parameters()
        if not bench.empty:
            section.add(self._table(["setup", "bench"], "Bench parameters as logged (bench.*)", bench))
        used = self._runs_used()
        if not used.empty:
            section.add(self._table(["setup", "runs_used"], "Runs used: one per configuration, the most precise "
                                    "protocol (paper > default > smoke) and among those the newest", used))
        section.add(Paragraph("Energy: " + energy_mode_text(jobs["energy_mode"]) + "."))
        if jobs["emulated"].any():
            section.add(Paragraph("Runs on the emulator (kernels compiled for the CPU) check "
                                  "correctness only; their timings are not performance and appear "
                                  "in no comparison."))
        return section

    def _runs_used(self) -> pd.DataFrame:
        used = self.jobs[self.jobs["status"] == STATUS_OK].sort_values("start_time")
        return pd.DataFrame({
            "run": used["run_name"], "run id": used["run_id"].str[:8], "model": used["model"],
            "technique": used["technique"], tables.TILE: used["tile"], "precision": used["quant"],
            "pruning": used["prune"], "backend": used["backend"], "protocol": used["bench"].replace("", "unknown"),
            "started (UTC)": used["start_time"].dt.strftime("%Y-%m-%d %H:%M"),
        }).dropna(axis=1, how="all").reset_index(drop=True)

    def _versions(self) -> pd.DataFrame:
        found: dict[str, set] = {}
        for versions in self.jobs["versions"]:
            for library, version in versions.items():
                found.setdefault(library, set()).add(version)
        return pd.DataFrame([{"library": lib, "version": ", ".join(sorted(v))}
                             for lib, v in sorted(found.items())])

    def _bench_parameters(self) -> pd.DataFrame:
        found: dict[str, set] = {}
        for params in self.jobs["bench_params"]:
            for name, value in params.items():
                found.setdefault(name, set()).add(value)
        return pd.DataFrame([{"parameter": name, "value(s)": ", ".join(sorted(v))}
                             for name, v in sorted(found.items())])

    # --- one device/backend -----------------------------------------------------------

    def _group_chapter(self, key, runs: pd.DataFrame) -> Section:
        label = group_label(key)
        chapter = Section(label)
        found = self.findings.child(label)
        dense = dense_fp32(runs)
        compared = comparison_runs(dense)
        e2e_tables = []
        end_to_end = chapter.child("End-to-end inference time")
        per_layer = chapter.child("Per-layer comparison")
        sweep_section = chapter.child("Parallelism parameter: blocked GEMM tile sweep")
        energy = chapter.child("Energy and CO2")
        auto = chapter.child("algo=auto: the tuned choice per layer")
        points = []
        for scenario_key, scenario_runs in iterate_scenarios(compared):
            scenario = scenario_label(scenario_key)
            e2e, notes = tables.end_to_end(scenario_runs, self.samples)
            e2e_tables.append(e2e)
            self._end_to_end(end_to_end.child(scenario), key, scenario, e2e, notes)
            all_tiles = dense[(dense["model"] == scenario_key[0]) & (dense["batch"] == scenario_key[1])
                              & (dense["input_size"] == scenario_key[2])]
            facts = findings.end_to_end_findings(e2e)
            facts += self._tile_sweep(sweep_section.child(scenario), key, scenario, all_tiles, e2e)
            facts += self._per_layer(per_layer.child(scenario), key, scenario, scenario_runs)
            facts += self._energy(energy.child(scenario), key, scenario, scenario_runs)
            facts += self._auto(auto.child(scenario), key, scenario, scenario_runs)
            if facts:
                found.child(scenario).add(Bullets(facts))
            points.append(tables.roofline_points(scenario_runs, self.layers))
        noise = findings.noise_findings(e2e_tables) if e2e_tables else []
        if noise:
            found.child("Measurement noise").add(Bullets(noise))
        drifted = tables.baseline_drifts(runs)
        if drifted:
            found.child("Baseline drift").add(Bullets([d.text() for d in drifted]))
        roof_facts = self._roofline(chapter.child("Roofline"), key, points)
        if roof_facts:
            found.child("Roofline").add(Bullets(roof_facts))
        self._pruning(chapter.child("Pruning"), found, key, runs)
        self._quantization(chapter.child("Quantization"), found, key, runs)
        if dense.empty:
            chapter.blocks.insert(0, Paragraph("No dense fp32 runs on this device and backend: "
                                               "only the pruning/quantization sections apply."))
        return chapter

    def _end_to_end(self, section, key, scenario, e2e, notes):
        if e2e.empty:
            return
        formats = {tables.TILE: _tile_format, tables.MEDIAN_MS: FMT_MS, tables.P10_MS: FMT_MS,
                   tables.P90_MS: FMT_MS, tables.IQR_REL: FMT_REL, tables.SPEEDUP: _speedup_format,
                   tables.PYTORCH_SAME_JOB_MS: FMT_MS, tables.CI_LOW: FMT_CI, tables.CI_HIGH: FMT_CI,
                   tables.ENERGY_PER_IMAGE: "{:.3g}", tables.CO2_PER_IMAGE: "{:.3g}"}
        section.add(Paragraph(
            f"What ran: {what_ran(key[1])}. Median model forward latency with p10 and p90; blocked GEMM "
            "rows are at their best tile (named). Speedup = PyTorch's median timed in the same job, side "
            "by side (column 'PyTorch same job'), ÷ this median: it cancels drift between jobs, so it can "
            "differ from the ratio to the separate PyTorch row. Its 95% interval is a bootstrap of both "
            "medians from the job's raw samples; where it contains 1 the difference is **not significant**. "
            f"That interval covers the noise within the job only: PyTorch's drift between jobs is checked "
            f"apart (findings, 'Baseline drift'). "
            "Energy and CO2 are per image (one inference), from the job's energy window."))
        section.add(self._table(["end_to_end", *key, scenario],
                                f"End-to-end inference time, {scenario}, {group_label(key)}",
                                e2e, formats))
        if notes:
            section.add(Bullets(notes))
        section.add(self._figure(figures.latency_bars, ["end_to_end", *key, scenario],
                                 f"End-to-end latency, {scenario} on {group_label(key)}",
                                 e2e, f"{scenario} — {group_label(key)}"))

    def _per_layer(self, section, key, scenario, runs) -> list[str]:
        matrix = tables.layer_latency_matrix(runs, self.layers)
        if matrix.empty:
            return []
        shapes = tables.layer_shapes(runs, self.layers)
        samples = tables.layer_samples(runs, self.samples)
        noise = tables.layer_noise(matrix, samples) if samples else None
        verdicts = tables.winner_is_significant(matrix, samples) if samples else None
        table = tables.per_layer(matrix, shapes, noise, verdicts)
        formats = {col: FMT_MS for col in table.columns if col.endswith("[ms]")}
        formats.update({col: "{:.0%}" for col in table.columns if col.endswith("IQR/median")})
        formats.update({"MFLOP": "{:.4g}", "fastest vs PyTorch [×]": versus_pytorch_text})
        if noise is not None:
            section.add(Paragraph(
                "Each latency is a median with its spread (IQR/median, from the raw samples). A layer's "
                "fastest is marked a **tie** when the 95% bootstrap interval of the runner-up's median over "
                f"its median includes 1: that winner could flip in a rerun. Cells noisier than "
                f"{tables.NOISY_IQR_REL:.0%} are listed (and marked † in the figure)."))
        section.add(self._table(["layers", *key, scenario],
                                f"Per-layer latency [ms], {scenario}, {group_label(key)}",
                                table, formats))
        section.add(self._figure(figures.layer_heatmap, ["layers", *key, scenario],
                                 f"Per-layer latency relative to the fastest technique on each layer "
                                 f"(† IQR/median > {tables.NOISY_IQR_REL:.0%}; tie: the lead is within the "
                                 f"noise), {scenario} on {group_label(key)}",
                                 matrix, f"{scenario} — {group_label(key)}", noise, verdicts))
        anatomy = tables.layer_anatomy(runs, self.layers)
        if anatomy.shape[1] > 2:
            section.add(Paragraph(
                "Why: each algorithm's GEMM dimensions, workspace and arithmetic intensity per "
                "layer (independent of the GEMM back-end). im2col inflates the input k·k times, "
                "kn2row the output; scalar inflates nothing but reuses nothing."))
            formats = {col: "{:.4g}" for col in anatomy.columns if "[" in col}
            section.add(self._table(["layer_anatomy", *key, scenario],
                                    f"GEMM dimensions, workspace and arithmetic intensity per "
                                    f"layer, {scenario}, {group_label(key)}", anatomy, formats))
        facts = findings.layer_findings(matrix, shapes, tables.fastest_per_layer(matrix), verdicts)
        facts += findings.inflation_findings(tables.inflation(runs, self.layers))
        return facts

    def _tile_sweep(self, section, key, scenario, all_tiles, e2e) -> list[str]:
        sweep = tables.tile_sweep(all_tiles)
        if sweep.empty:
            return []
        formats = {col: FMT_MS for col in tables.tile_sweep_table(sweep).columns if col != "tile"}
        section.add(self._table(["tile_sweep", *key, scenario],
                                f"Median model latency [ms] against the blocked GEMM tile, "
                                f"{scenario}, {group_label(key)}",
                                tables.tile_sweep_table(sweep), formats))
        references = {row[tables.TECHNIQUE]: row[tables.MEDIAN_MS] for _, row in e2e.iterrows()
                      if row[tables.TECHNIQUE] == "pytorch" or row[tables.TECHNIQUE].endswith("+vendor")}
        section.add(self._figure(figures.tile_sweep, ["tile_sweep", *key, scenario],
                                 f"Latency against tile, {scenario} on {group_label(key)}",
                                 sweep, references, f"{scenario} — {group_label(key)}"))
        best = tables.best_tile_per_layer(all_tiles, self.layers)
        if not best.empty:
            formats = {col: FMT_MS for col in best.columns if col.endswith("[ms]")}
            section.add(self._table(["best_tile_per_layer", *key, scenario],
                                    f"Best tile per layer, {scenario}, {group_label(key)}",
                                    best, formats))
        return findings.tile_findings(sweep)

    def _energy(self, section, key, scenario, runs) -> list[str]:
        if runs[[c.ENERGY_PER_INFERENCE_J, c.ENERGY_KWH, c.EMISSIONS_KG]].isna().all().all():
            section.add(Paragraph(f"No energy metrics (`{c.ENERGY_PER_INFERENCE_J}`, "
                                  f"`{c.ENERGY_KWH}`, `{c.EMISSIONS_KG}`) were logged for these "
                                  f"runs: section left out."))
            return []
        table, notes = tables.energy(runs)
        mode_text = energy_mode_text(runs["energy_mode"])
        section.add(Paragraph(f"Energy {mode_text}. Per inference = the job's energy window (at least "
                              f"bench.energy_s of back-to-back inferences and at least {tables.MIN_ENERGY_IMAGES} "
                              f"images) divided by the images it ran; the window totals are shown beside them."))
        formats = {col: "{:.3g}" for col in table.columns if "[" in col}
        section.add(self._table(["energy", *key, scenario],
                                f"Energy and CO2 per technique, {scenario}, {group_label(key)}",
                                table, formats))
        if notes:
            section.add(Bullets(notes))
        table = table[table[tables.ENERGY_WINDOW] != tables.THIN_WINDOW]   # ranked and drawn: readable windows only
        if tables.ENERGY_PER_INFERENCE in table and table[tables.ENERGY_PER_INFERENCE].notna().any():
            modes = sorted({m for m in runs["energy_mode"] if m})
            how = ", ".join(ENERGY_MODE_SHORT.get(m, m) for m in modes) or "mode unknown"
            section.add(self._figure(figures.energy_bars, ["energy", *key, scenario],
                                     f"Energy and CO2 per inference ({how}), {scenario} on "
                                     f"{group_label(key)}",
                                     table, f"{scenario} — {group_label(key)}\nenergy: {how}"))
        return findings.energy_findings(table, mode_text)

    def _auto(self, section, key, scenario, runs) -> list[str]:
        # every algo=auto run of this scenario, also those a later run of the same configuration replaced
        # in the comparisons: the first run's tuning time and the next one's reuse belong side by side
        replaced = self.source.get("replaced")
        earlier = pd.DataFrame() if replaced is None or replaced.empty else replaced[
            (replaced["algo"] == tables.AUTO)
            & (replaced[GROUP_KEYS + SCENARIO_KEYS] == runs[GROUP_KEYS + SCENARIO_KEYS].iloc[0]).all(axis=1)]
        summary = tables.auto_summary(pd.concat([earlier, runs]).sort_values("start_time"))
        if summary.empty:
            return []
        section.add(Paragraph(
            "algo=auto picks the fastest candidate per layer (algorithm × GEMM back-end × tile) by successive "
            "halving and stores the choice in the tuning database; a second run reuses it. The tuned model "
            "and the best single candidate (lowest summed tuning medians) are timed in the same job."))
        section.add(self._table(["auto", *key, scenario], f"algo=auto against the best single candidate, "
                                f"{scenario}, {group_label(key)}", summary,
                                {"tuned [ms]": FMT_MS, "best single [ms]": FMT_MS, "tuning [s]": "{:.3g}",
                                 "tuned vs best single [×]": FMT_X, tables.SPEEDUP: FMT_X,
                                 "layers measured": "{:.0f}", "layers reused": "{:.0f}"}))
        facts = []
        for _, run in runs[runs["algo"] == tables.AUTO].iterrows():
            per_layer = tables.auto_layers(run["run_id"], self.layers)
            if per_layer.empty:
                continue
            section.add(self._table(["auto_layers", *key, scenario, run["run_name"]],
                                    f"Choice and runner-up per layer, run {run['run_name']} "
                                    f"({run['run_id'][:8]})", per_layer,
                                    {"choice tuned [ms]": FMT_MS, "runner-up tuned [ms]": FMT_MS,
                                     "layer in model [ms]": FMT_MS, "runner-up ÷ choice [×]": "{:.3g}×"}))
            facts += findings.auto_findings(run, per_layer)
        return facts

    def _roofline(self, section, key, points) -> list[str]:
        points = [p for p in points if not p.empty]
        if not points:
            return []
        points = pd.concat(points, ignore_index=True)
        intensity, achieved = points["arithmetic intensity [FLOP/B]"], points["achieved [GFLOP/s]"]
        envelope = observed_envelope(key[0], intensity, achieved)
        ceilings = ceilings_for(key[0], self.measured_ceilings) or envelope
        how = {"measured": "a measurement on the device", "datasheet": "the vendor's datasheet",
               "observed": "the points themselves (no measurement or datasheet known)"}[ceilings.source]
        section.add(Paragraph(f"Roof of {key[0]} from {how}: {ceilings.describe()}."
                              + ("" if ceilings.source == "measured" else
                                 " Run `make ceilings` on that machine for a measured roof.")))
        roofs = [ceilings]
        above = (achieved > ceilings.peak_gflops * 1.001) | (achieved > intensity * ceilings.bandwidth_gbs * 1.001)
        if ceilings.source != "observed" and above.any():
            roofs.append(envelope)
            section.add(Paragraph(
                f"{int(above.sum())} point(s) lie above that roof, so it underestimates the device (a measurement "
                f"on a busy machine, or a kernel beating the BLAS used to measure it): the dashed roof is the "
                f"envelope of the points, {envelope.describe()}. Measure again on an idle machine "
                f"(`make ceilings`)."))
        section.add(self._figure(figures.roofline, ["roofline", *key],
                                 f"Roofline of {group_label(key)}: each point is one conv layer of one "
                                 f"technique; roof: {' and '.join(roof.source for roof in roofs)}", points, roofs,
                                 f"Roofline — {group_label(key)}"))
        section.add(self._table(["device_peaks", *key], "Device peaks (FP32 without tensor or matrix cores) "
                                "and where they come from", device_peaks(self.measured_ceilings),
                                {"peak [GFLOP/s]": "{:,.0f}", "bandwidth [GB/s]": "{:,.0f}",
                                 "ridge [FLOP/B]": "{:.3g}"}))
        return findings.roofline_findings(points, ceilings)

    def _pruning(self, section, found, key, runs):
        table = tables.pruning(runs)
        if table.empty:
            return
        section.add(Paragraph(COMPRESSION_NOTE))
        self._compression(section, found, key, table, "pruning", "Pruned runs", "speedup vs dense [×]",
                          {"density": "{:.2f}"}, "density", "weight density", "weight density (1 − pruned fraction)",
                          tables.pruning_curves)

    def _quantization(self, section, found, key, runs):
        table = tables.quantization(runs)
        if table.empty:
            return
        if tables.pruning(runs).empty:
            section.add(Paragraph(COMPRESSION_NOTE))
        self._compression(section, found, key, table, "quantization", "Quantized runs", "speedup vs fp32 [×]", {},
                          "precision", "bit width", "bit width of weights and activations", x="bits")

    def _compression(self, section, found, key, table, kind: str, title: str, speedup: str, formats: dict,
                     variable: str, against: str, axis_label: str, curves=lambda own: own, x: str | None = None):
        """A compression study's table, its speedup and fidelity figures per model, and its findings:
        ``variable`` (density, precision) is what the study varies, plotted on ``x`` (default ``variable``)."""
        where = group_label(key)
        formats = {tables.MEDIAN_MS: FMT_MS, tables.SPEEDUP: FMT_X, speedup: FMT_X, **formats,
                   "max rel err": "{:.2g}", **COMPRESSION_FORMATS}
        section.add(self._table([kind, *key], f"{title}, {where}", table, formats))
        for model, own in table.groupby("model"):
            own = curves(own)
            section.add(self._figure(figures.speedup_lines, [kind, *key, model],
                                     f"Speedup against {against}, {model} on {where}",
                                     own, x or variable, axis_label, f"{model} — {where}", True))
            section.add(self._figure(figures.fidelity_scatter, [f"{kind}_fidelity", *key, model],
                                     f"Fidelity against speedup, {model} on {where}", own, variable,
                                     f"{model} — {where}"))
        facts = findings.variant_findings(table, variable, speedup)
        if facts:
            found.child(kind.capitalize()).add(Bullets(facts))

    # --- runs that are not compared ---------------------------------------------------

    def _emulated(self, emulated: pd.DataFrame) -> Section:
        section = Section("Emulated runs (correctness only, not performance)")
        if emulated.empty:
            return section
        section.add(Paragraph("These runs executed the kernels on the CPU emulator. They show "
                              "that each technique computes the right result; their timings are "
                              "deliberately not shown."))
        section.add(self._table(["emulated"], "Emulated runs", tables.emulated_runs(emulated),
                                {"max rel err": "{:.2g}", tables.TILE: _tile_format}))
        return section

    def _failed(self) -> Section:
        section = Section("Failed runs")
        failed = tables.failed_runs(self.jobs)
        if failed.empty:
            return section
        section.add(Paragraph(f"{len(failed)} job(s) failed; they are in no comparison."))
        section.add(self._table(["failed_runs"], "Failed runs and their errors", failed,
                                {"error": _error_format, tables.TILE: _tile_format}))
        return section

    def _data_notes(self) -> Section:
        section = Section("Notes on the data")
        if self.data_notes:
            section.add(Bullets(self.data_notes))
        return section
