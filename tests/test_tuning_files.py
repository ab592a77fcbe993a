"""The tuning database never writes to a file it did not create; the listing changes nothing."""
from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import pytest

from experiments.tuning import TuningDatabase, TuningEntry, TuningKey
from experiments.tuning.database import ForeignDatabaseError

from .servers import REPO


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    db.execute("INSERT INTO invoices VALUES (1, 9.5)")
    db.commit()
    db.close()
    return path


def _other_schema(path):
    """A convbench tuning file of a future schema version."""
    TuningDatabase(path, journal_mode="delete").close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 7")
    db.commit()
    db.close()
    return path


def _corrupt(path):
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    return path


@pytest.mark.parametrize("make,named", [(_foreign, "not a convbench tuning database (tables: invoices)"),
                                        (_corrupt, "not a readable SQLite database"),
                                        (_other_schema, "schema version 7")])
def test_foreign_corrupt_and_other_schema_files_are_refused_untouched(tmp_path, make, named):
    path = make(tmp_path / "t.db")
    before = _digest(path)
    for read_only in (False, True):
        with pytest.raises(ForeignDatabaseError) as error:
            TuningDatabase(path, read_only=read_only)
        assert str(path) in str(error.value) and named in str(error.value)
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.db"]      # no journal, no WAL left beside it


def test_a_new_database_is_ours_and_the_listing_changes_nothing(tmp_path):
    path = tmp_path / "sub" / "t.db"
    key = TuningKey("cpu [1 threads]", "numpy/cpu", "none", "3x8x8", "fp32", 1, "im2col/vendor,scalar")
    with TuningDatabase(path, journal_mode="delete") as db:
        db.put(key, TuningEntry("scalar", 1e-3, "im2col/vendor", 2e-3, {"scalar": {"median_s": 1e-3}}))
    before = _digest(path)
    done = subprocess.run([sys.executable, "-m", "experiments.tuning", "--db", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 entries" in done.stdout and "scalar" in done.stdout, done.stderr
    assert _digest(path) == before
    with TuningDatabase(path, read_only=True) as db:
        assert db.get(key).choice == "scalar"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.put(key, TuningEntry("im2col/vendor", 1e-3, None, None, {}))
    assert _digest(path) == before


def test_the_listing_of_a_foreign_file_exits_2_naming_it(tmp_path):
    path = _foreign(tmp_path / "other.db")
    done = subprocess.run([sys.executable, "-m", "experiments.tuning", "--db", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and str(path) in done.stderr and "Traceback" not in done.stderr
