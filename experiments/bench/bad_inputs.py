"""bench-bad-inputs: every bad input we know of, given to run.py as a user would, single run and sweep.

    python -m experiments.bench.bad_inputs [--jobs 2] [--only seed] [--out results/DATE-bench-bad-inputs.md]

Each case runs ``python run.py [-m] <base> <bad override>`` in a fresh process (base: digits_cnn,
bench=smoke, energy off, a throwaway sqlite store and output folders) and is counted as refused
when it exits 2 with a "convbench:" message, no traceback, nothing logged to the store, within
REFUSE_WITHIN_S seconds and without printing the case's password. The table lists every case with
its exit code, its seconds and the message's first line. Refusals of the memory
estimate depend on the machine's free memory (the numbers are in the messages).
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from experiments.runtime import resolve

from .document import emit, header

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
REFUSE_WITHIN_S = 60     # a refusal comes before any work: seconds, not minutes
PASSWORD = "hunter2"

# (label, overrides); {tmp} is the case's scratch folder
CASES = [
    # Hydra's own errors: unknown choices and keys, malformed overrides
    ("unknown algorithm", ["algo=im2coll"]),
    ("unknown model preset", ["model=resnet19"]),
    ("unknown quantization", ["quant=int4"]),
    ("unknown pruning", ["prune=magnitude"]),
    ("unknown backend", ["backend=cuda"]),
    ("unknown bench preset", ["bench=fast"]),
    ("unknown energy preset", ["energy=rapl"]),
    ("unknown launcher", ["hydra/launcher=rayy"]),
    ("unknown key", ["gemm.tiles=16"]),
    ("unknown key (typo)", ["model.batchsize=4"]),
    ("malformed override", ["algo=[im2col"]),
    # types and ranges
    ("seed not an int", ["seed=abc"]),
    ("seed a float", ["seed=1.5"]),
    ("broken interpolation", ["seed=${oops}"]),
    ("batch a bool", ["model.batch_size=true"]),
    ("batch zero", ["model.batch_size=0"]),
    ("batch negative", ["model.batch_size=-3"]),
    ("batch text", ["model.batch_size=abc"]),
    ("input size zero", ["model.input_size=0"]),
    ("input size one number in a list", ["model.input_size=[224]"]),
    ("unknown torchvision model", ["model.name=resnet19"]),
    ("unknown weights", ["model=resnet18", "model.weights=FOO"]),
    ("tile not supported", ["backend=emulator", "gemm=blocked", "gemm.tile=12"]),
    ("blocked GEMM on numpy", ["backend=numpy", "gemm=blocked"]),
    ("gpu backend without a GPU", ["backend=gpu"]),
    ("prune amount text", ["prune=unstructured", "prune.amount=abc"]),
    ("prune amount above 1", ["prune=unstructured", "prune.amount=1.5"]),
    ("prune amount negative", ["prune=unstructured", "prune.amount=-0.1"]),
    ("prune importance unknown", ["prune=unstructured", "prune.importance=l3"]),
    ("prune scope unknown", ["prune=unstructured", "prune.scope=world"]),
    ("prune steps zero", ["prune=unstructured", "prune.steps=0"]),
    ("int8 on the sparse GEMM", ["quant=int8", "gemm=sparse"]),
    ("eval images zero", ["accuracy.eval_images=0"]),
    ("image folder missing", ["accuracy.image_folder=/nonexistent/images"]),
    ("cache mode unknown", ["bench.cache_mode=warm"]),
    ("energy window negative", ["bench.energy_s=-1"]),
    ("min samples text", ["bench.model.min_samples=abc"]),
    ("max time zero", ["bench.model.max_time_s=0"]),
    ("flush size text", ["bench.flush_mb=abc"]),
    # tracking store
    ("tracking URI a plain path", ["tracking.uri=/nonexistent/mlruns"]),
    ("sqlite directory missing", ["tracking.uri=sqlite:////nonexistent/dir/mlflow.db"]),
    ("tracking URI empty", ["tracking.uri="]),
    ("tracking URI unknown scheme", ["tracking.uri=foo://bar"]),
    ("tracking URI a file store", ["tracking.uri=file:///tmp/mlruns"]),
    ("tracking URI without host", ["tracking.uri=http://"]),
    ("sqlite in memory", ["tracking.uri=sqlite://"]),
    ("experiment name empty", ["tracking.experiment="]),
    # energy
    ("country unknown", ["energy=codecarbon", "energy.country_iso_code=XYZ"]),
    ("country lower case", ["energy=codecarbon", "energy.country_iso_code=usa"]),
    ("region unknown", ["energy=codecarbon", "energy.region=atlantis"]),
    ("power interval zero", ["energy=codecarbon", "energy.measure_power_secs=0"]),
    # algo=auto
    ("tuning budget text", ["algo=auto", "tuning.budget_s=abc"]),
    ("tuning algorithm unknown", ["algo=auto", "tuning.algos=[foo]"]),
    ("tuning db corrupt", ["algo=auto", "tuning.db={tmp}/corrupt.db"]),
    ("tuning db another program's", ["algo=auto", "tuning.db={tmp}/foreign.db"]),
    ("auto with fp16", ["algo=auto", "quant=fp16"]),
    # memory
    ("batch beyond memory", ["model=resnet18", "model.batch_size=100000"]),
    ("kn2row on a ViT patch embedding", ["model=resnet18", "model.name=vit_b_16", "algo=kn2row"]),
    ("flush buffer beyond memory", ["bench.cache_mode=cold", "bench.flush_mb=100000000"]),
    # infinite and NaN numbers, negative where they must be positive (one schema: validate.TYPED)
    ("input size infinite", ["model.input_size=inf"]),
    ("input size NaN in a list", ["model.input_size=[8,nan]"]),
    ("flush size infinite", ["bench.flush_mb=inf"]),
    ("flush size NaN", ["bench.flush_mb=nan"]),
    ("energy window infinite", ["bench.energy_s=inf"]),
    ("max time infinite", ["bench.model.max_time_s=inf"]),
    ("min time NaN", ["bench.layer.min_time_s=nan"]),
    ("retry infinite", ["tracking.retry_s=inf"]),
    ("retry NaN", ["tracking.retry_s=nan"]),
    ("power interval infinite", ["energy=codecarbon", "energy.measure_power_secs=inf"]),
    ("tuning budget infinite", ["algo=auto", "tuning.budget_s=inf"]),
    ("quant max cost infinite", ["quant=int8", "quant.max_cost=inf"]),
    ("seed negative", ["seed=-1"]),
    # lists of the wrong type
    ("quant skip a list of numbers", ["quant=int8", "quant.skip=[1,2]"]),
    ("tuning tiles not ints", ["algo=auto", "tuning.tiles=[16,a]"]),
    ("tuning rungs not names", ["algo=auto", "tuning.rungs=[1.5]"]),
    # input size against the model (a batch-1 forward on the meta device)
    ("input size too small for the model", ["model=resnet18", "model.name=squeezenet1_1", "model.input_size=16"]),
    ("input size not the ViT's", ["model=resnet18", "model.name=vit_b_16", "model.input_size=32"]),
    # URIs: port, driver; names MLflow or the file system refuses; a password where Hydra writes it
    ("port out of range", ["tracking.uri=http://127.0.0.1:99999"]),
    ("port zero", ["tracking.uri=http://127.0.0.1:0"]),
    ("database driver not installed", ["tracking.uri=mysql://u@127.0.0.1/mlflow"]),
    ("postgresql driver not installed", ["tracking.uri=postgresql+psycopg2://u@127.0.0.1/mlflow"]),
    ("experiment name too long for a folder", ["tracking.experiment=" + "e" * 300]),
    ("param name MLflow refuses (over 250)", ["+" + "k" * 251 + "=1"]),
    ("key too long for a file name", ["+" + "k" * 300 + "=1"]),
    ("a password in another override", ["+extra=http://bob:hunter2@elsewhere"]),
]
SWEEP_ONLY = [
    ("joblib n_jobs zero", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"]),
    ("joblib n_jobs text", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=abc"]),
    ("ray: a GPU per job, no GPU here", ["hydra/launcher=ray", "hydra.launcher.ray.remote.num_gpus=1"]),
    ("slurm: warning signal after the time limit", ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=1"]),
    ("joblib timeout infinite", ["hydra/launcher=joblib", "hydra.launcher.timeout=inf"]),
    ("joblib timeout negative", ["hydra/launcher=joblib", "hydra.launcher.timeout=-5"]),
    ("joblib batch size zero", ["hydra/launcher=joblib", "hydra.launcher.batch_size=0"]),
    ("slurm time limit zero", ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=0"]),
    ("slurm array parallelism zero", ["hydra/launcher=submitit_slurm", "hydra.launcher.array_parallelism=0"]),
    ("submitit nodes zero", ["hydra/launcher=submitit_local", "hydra.launcher.nodes=0"]),
    ("one bad value in a sweep", ["algo=im2col,im2coll"]),
    ("one bad batch in a sweep", ["model.batch_size=1,true"]),
]


@dataclass
class Outcome:
    label: str
    mode: str
    overrides: list[str]
    exit_code: int
    traceback: bool
    logged_runs: int
    message: str
    seconds: float
    leaked: bool            # a password of the case (hunter2) in the output

    @property
    def refused(self) -> bool:
        return self.exit_code == 2 and not self.traceback and self.message.startswith("convbench:") \
            and self.logged_runs == 0 and self.seconds < REFUSE_WITHIN_S and not self.leaked


def _scratch(tmp: Path) -> None:
    (tmp / "corrupt.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    foreign = sqlite3.connect(tmp / "foreign.db")
    foreign.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    foreign.commit()
    foreign.close()


def _logged_runs(store: Path) -> int:
    if not store.is_file():
        return 0
    db = sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def run_case(label: str, overrides: list[str], sweep: bool) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="convbench-bad-") as name:
        tmp = Path(name)
        _scratch(tmp)
        store = tmp / "mlflow.db"
        base = ["model=digits_cnn", "bench=smoke", "energy=off", f"tracking.uri=sqlite:///{store}",
                f"hydra.run.dir={tmp}/out", f"hydra.sweep.dir={tmp}/multirun"]
        bad = [o.replace("{tmp}", str(tmp)) for o in overrides]
        command = [sys.executable, "run.py", *(["-m"] if sweep else []), *base, *bad]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S,
                                  env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = -1, str(exc.stdout or ""), f"timed out after {TIMEOUT_S} s"
        lines = [line.strip() for line in err.splitlines() if line.strip()]
        start = next((i for i, line in enumerate(lines) if line.startswith("convbench:")), None)
        message = " / ".join(lines[start:]) if start is not None else (lines[-1] if lines else "")
        return Outcome(label, "sweep" if sweep else "single", overrides, code, "Traceback" in out + err,
                       _logged_runs(store), message, time.perf_counter() - started, PASSWORD in out + err)


def _cell(text: str, limit: int = 300) -> str:
    text = text.replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def table(outcomes: list[Outcome]) -> list[str]:
    rows = ["| case | mode | overrides | exit | traceback | runs logged | seconds | message |",
            "|---|---|---|---|---|---|---|---|"]
    rows += [f"| {o.label} | {o.mode} | `{_cell(' '.join(o.overrides), 120)}` | {o.exit_code} | "
             f"{'yes' if o.traceback else 'no'} | {o.logged_runs} | {o.seconds:.1f} | {_cell(o.message)} |"
             for o in outcomes]
    return rows


def summary(outcomes: list[Outcome]) -> list[str]:
    rows = ["| mode | bad inputs tried | refused with exit 2 | other exit codes | tracebacks | runs logged | "
            "passwords shown | slowest refusal (s) |", "|---|---|---|---|---|---|---|---|"]
    for mode in ("single", "sweep", "all"):
        chosen = [o for o in outcomes if mode in ("all", o.mode)]
        rows.append(f"| {mode} | {len(chosen)} | {sum(o.refused for o in chosen)} | "
                    f"{sum(o.exit_code != 2 for o in chosen)} | {sum(o.traceback for o in chosen)} | "
                    f"{sum(o.logged_runs for o in chosen)} | {sum(o.leaked for o in chosen)} | "
                    f"{max((o.seconds for o in chosen), default=0):.1f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.bad_inputs", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases at once")
    parser.add_argument("--only", default=None, help="only cases whose label contains this")
    parser.add_argument("--out", default=None, help="also write the document here, e.g. results/DATE-....md")
    args = parser.parse_args(argv)
    work = [(label, o, False) for label, o in CASES] + [(label, o, True) for label, o in CASES + SWEEP_ONLY]
    if args.only:
        work = [w for w in work if args.only in w[0]]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda w: run_case(*w), work))
    refused = sum(o.refused for o in outcomes)
    facts = (f"{len(outcomes)} bad inputs ({len(CASES)} cases single and sweep, {len(SWEEP_ONLY)} sweep only), "
             f"each `python run.py [-m] model=digits_cnn bench=smoke energy=off tracking.uri=<tmp store> <case>`")
    emit([header("bad_inputs", resolve("numpy"), argv, facts), "## Summary\n", *summary(outcomes),
          f"\nrefused: exit 2, a `convbench:` message, no traceback, no run in the store, within {REFUSE_WITHIN_S} s, "
          f"no password of the case printed. Seconds: the whole `python run.py` process, start-up included, "
          f"with --jobs cases at once.\n",
          "## Every case\n", *table(outcomes)], args.out)
    return 0 if refused == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
