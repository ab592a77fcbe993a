"""`make report`: turn the runs of an MLflow store into reports/ (Markdown, HTML, CSV, LaTeX, PNG).

    python -m analysis.report [--tracking-uri URI] [--experiment NAME] [--out reports]
                              [--ceilings reports/ceilings.json]

Exit codes: 0 report written, 2 tracking store unreachable, 3 no runs (or no such experiment).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from analysis.ceilings import load_measured, measure, save
from analysis.load import STATUS_OK, STATUS_RUNNING, jobs_frame, layers_frame
from analysis.render import FIGURES_DIR, TABLES_DIR, write_report
from analysis.sections import ReportBuilder
from analysis.samples import read_samples
from analysis.selection import best_per_configuration, dense_fp32
from analysis.store import MAKE_RUNS_HINT, NoRunsError, ReportError, Store
from experiments.runtime.host import cpu_name
from experiments.tracking import contract
from experiments.tracking.credentials import mask
from experiments.tracking.stale import close_dead_local_runs

TITLE = "convbench report: convolution algorithms in CNN inference"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n")[0])
    parser.add_argument("--tracking-uri", default=contract.DEFAULT_TRACKING_URI,
                        help=f"MLflow tracking URI (default {contract.DEFAULT_TRACKING_URI})")
    parser.add_argument("--experiment", default=None,
                        help="experiment name (default: every experiment in the store)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    parser.add_argument("--ceilings", type=Path, default=None,
                        help="measured roofline ceilings (default <out>/ceilings.json, "
                             "written by `python -m analysis.ceilings`)")
    return parser.parse_args(argv)


def collect(store: Store, experiment: str | None, artifacts_dir: Path):
    """Jobs to report on, their layers and raw timing samples, and notes about what was left out and why."""
    experiments = store.experiments(experiment)
    names = {e.experiment_id: e.name for e in experiments}
    jobs = jobs_frame(store.runs(list(names)), names)
    if jobs.empty:
        where = f"experiment {experiment!r}" if experiment else "any experiment"
        raise NoRunsError(f"No runs in {where} of {mask(store.tracking_uri)}. {MAKE_RUNS_HINT}")
    notes = []
    # the Setup header counts every run found, as the notes do: the filtering below leaves some out
    found = {"runs": len(jobs), "status_counts": jobs["status"].value_counts().to_dict()}
    running = jobs[jobs["status"] == STATUS_RUNNING]
    if len(running):
        notes.append(f"{len(running)} unfinished run(s) were skipped (still running or crashed "
                     f"without a status).")
    ok, superseded = best_per_configuration(jobs[jobs["status"] == STATUS_OK])
    if len(superseded):
        notes.append(f"{len(superseded)} run(s) measured a configuration that another run measured with a "
                     f"more precise protocol (paper > default > smoke) or, with the same protocol, later: "
                     f"each configuration is reported from one run (table 'Runs used'); replaced: "
                     f"{', '.join(sorted(superseded['run_id'].str[:8]))}.")
    jobs = pd.concat([ok, jobs[~jobs["status"].isin([STATUS_OK, STATUS_RUNNING])]])
    # Only measured dense fp32 runs appear in per-layer sections: fetch only their artifacts.
    wanted = dense_fp32(ok[~ok["emulated"]])["run_id"]
    paths = {run_id: store.download_layers(run_id, artifacts_dir / run_id) for run_id in wanted}
    missing = [run_id for run_id, path in paths.items() if path is None]
    if missing:
        notes.append(f"{len(missing)} run(s) have no {contract.A_LAYERS} artifact: they appear "
                     f"end-to-end but not per layer.")
    layers = layers_frame({run_id: path for run_id, path in paths.items() if path is not None})
    folders = {run_id: store.download_samples(run_id, artifacts_dir / run_id) for run_id in wanted}
    samples = {run_id: read_samples(folder) for run_id, folder in folders.items() if folder is not None}
    if len(samples) < len(folders):
        notes.append(f"{len(folders) - len(samples)} run(s) have no raw timing samples "
                     f"({contract.A_SAMPLES_DIR}/): their speedups have no confidence interval.")
    source = {"tracking_uri": store.tracking_uri, "experiments": sorted(set(jobs["experiment"])),
              "replaced": superseded, **found}
    return jobs, layers, samples, notes, source


def generate(tracking_uri: str, experiment: str | None, out_dir: Path,
             ceilings_path: Path | None = None) -> dict[str, Path]:
    store = Store(tracking_uri)
    # runs left RUNNING by dead processes of this host can never finish: closed (KILLED) before reading
    try:
        closed = close_dead_local_runs(tracking_uri, [experiment] if experiment else None)
    except Exception as exc:   # a read-only store: report it as it is
        closed = []
        print(f"report: could not close runs left RUNNING by dead processes: {type(exc).__name__}: "
              f"{mask(str(exc))}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="convbench-artifacts-") as tmp:
        jobs, layers, samples, notes, source = collect(store, experiment, Path(tmp))
    if closed:
        notes.insert(0, f"{len(closed)} run(s) left RUNNING by processes of this host that are gone were closed "
                        f"as KILLED before this report (they count as failed).")
        print(f"report: closed {len(closed)} run(s) left RUNNING by processes that are gone, as KILLED")
    # The report owns figures/ and tables/: clear them so no stale file from an older report
    # (another model, another device) survives. ceilings.json and anything else stays.
    for owned in (FIGURES_DIR, TABLES_DIR):
        shutil.rmtree(out_dir / owned, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    ceilings_path = ceilings_path or out_dir / "ceilings.json"
    measured = load_measured(ceilings_path)
    measure_this_cpu(jobs, measured, ceilings_path)
    sections = ReportBuilder(jobs, layers, out_dir, measured, source, notes, samples).build()
    return write_report(sections, out_dir, TITLE)


def measure_this_cpu(jobs: pd.DataFrame, measured: dict, path: Path) -> None:
    """Runs timed on this very CPU get a measured roof (BLAS sgemm, memory copy) when `make ceilings`
    has not been run: a few seconds, saved beside the report for the next time."""
    here = cpu_name()
    timed_here = ((jobs["status"] == STATUS_OK) & ~jobs["emulated"] & (jobs["backend"] != "gpu")
                  & (jobs["device"] == here))
    if not timed_here.any() or here in measured:
        return
    entry = measure("cpu")
    entry.method += "; measured by `make report` on this machine"
    save(entry, path)
    measured[here] = entry
    print(f"report: measured this CPU's roofline ceilings ({entry.describe()}) -> {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        written = generate(args.tracking_uri, args.experiment, args.out, args.ceilings)
    except ReportError as error:
        print(f"report: {error}", file=sys.stderr)
        return error.exit_code
    figures = len(list((args.out / FIGURES_DIR).glob("*.png")))
    tables = len(list((args.out / TABLES_DIR).glob("*.csv")))
    print(f"report: wrote {written['markdown']} and {written['html']} "
          f"({tables} tables as CSV and LaTeX, {figures} figures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
