"""List the entries of a tuning database, or remove those measured with older kernel sources.

    python -m experiments.tuning                     the default database (tuning.db at the repo root)
    python -m experiments.tuning --db /path/t.db     another one
    python -m experiments.tuning --prune-stale       drop entries whose kernel hash is not the current one
"""
from __future__ import annotations

import argparse
import sys

from .autotune import REPO_ROOT, TuningSpec
from .database import ForeignDatabaseError, TuningDatabase


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.tuning", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="tuning.db", help="the database file (relative: to the repository root)")
    parser.add_argument("--prune-stale", action="store_true",
                        help="delete the entries of kernel runtimes whose kernel hash is not the current sources'")
    args = parser.parse_args(argv)
    path = TuningSpec(args.db).db_path
    if not path.is_file():
        print(f"no tuning database at {path}", file=sys.stderr)
        return 1
    try:
        db = TuningDatabase(path, read_only=not args.prune_stale)
    except ForeignDatabaseError as exc:
        print(exc, file=sys.stderr)
        return 2
    with db:
        if args.prune_stale:
            from experiments.runtime.sources import kernel_source_hash
            current = kernel_source_hash()
            runtimes = {key.runtime for key, _ in db.entries() if key.kernel_hash != "none"}
            removed = sum(db.delete_stale(runtime, current) for runtime in runtimes)
            print(f"removed {removed} entries measured with other kernel sources than {current}")
        entries = db.entries()
    print(f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}: {len(entries)} entries")
    for key, entry in entries:
        runner = f", runner-up {entry.runner_up} {entry.runner_up_s * 1e3:.4g} ms" if entry.runner_up else ""
        print(f"  {key.device} | {key.runtime} | kernels {key.kernel_hash} | {key.shape} batch {key.batch} "
              f"{key.dtype}: {entry.choice} {entry.choice_s * 1e3:.4g} ms{runner}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
