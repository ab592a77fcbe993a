"""bench-ladder (experiments/bench/ladder.py) on the emulator: correctness only, tiny sizes."""
from experiments.bench import ladder as bench_ladder
from experiments.conv import ladder
from experiments.conv.geometry import ConvGeometry


def test_every_rung_and_tile_checked_on_a_gemm():
    bench = bench_ladder.LadderBench("emulator")
    row = bench.gemm_row("tiny", 9, 10, 11, 2)
    cells = {k: v for k, v in row.items() if k not in ("gemm", "M", "N", "K", "batch")}
    assert set(cells) == {f"{r.name}-t{t}" for r in ladder.RUNGS for t in ladder.TILES}
    assert all(str(v).startswith("ok") for v in cells.values()), cells


def test_memory_bound_kernels_run_on_a_layer():
    bench = bench_ladder.LadderBench("emulator")
    g = ConvGeometry.from_shapes((1, 3, 9, 7), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert bench.memory_row("tiny", g, None) == {"layer": "tiny", "im2col": "ran", "shift-add": "ran",
                                                  "depthwise": "ran"}


def test_command_writes_the_tables(tmp_path, capsys):
    out = tmp_path / "ladder.md"
    assert bench_ladder.main(["--backend", "emulator", "--size", "20", "--models", "--out", str(out)]) == 0
    text = out.read_text()
    assert "square 20" in text and "fold-t32" in text and "FAILED" not in text


def test_timed_path_reports_fractions(monkeypatch):
    """The GPU path's arithmetic, run on the emulator with its clock (the numbers mean nothing here):
    every rung a positive fraction of the vendor GEMM, every kernel a positive fraction of the copy."""
    monkeypatch.setattr(bench_ladder, "COPY_BYTES", 1 << 20)
    bench = bench_ladder.LadderBench("emulator", bench_ladder.QUICK)
    bench.timed = True
    row = bench.gemm_row("tiny", 9, 10, 11, 1)
    assert row["cuBLAS ms"] > 0
    assert all(isinstance(row[f"{r.name}-t{t}"], float) and row[f"{r.name}-t{t}"] > 0
               for r in ladder.RUNGS for t in ladder.TILES)
    copy_gbs = bench.copy_bandwidth()
    g = ConvGeometry.from_shapes((1, 3, 9, 7), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    fractions = bench.memory_row("tiny", g, copy_gbs)
    assert copy_gbs > 0 and all(fractions[k] > 0 for k in ("im2col", "shift-add", "depthwise"))
