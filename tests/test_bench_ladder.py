"""bench-ladder (experiments/bench/ladder.py) on the emulator, tiny sizes: the GPU's code path, timed by
the CPU clock (the numbers check the path, they are not performance)."""
import pytest

from experiments.bench import ladder as bench_ladder
from experiments.bench.layers import distinct_conv_layers
from experiments.conv import ladder
from experiments.conv.geometry import ConvGeometry

TINY_LAYER = ConvGeometry.from_shapes((1, 3, 9, 7), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1)


@pytest.fixture(scope="module")
def bench():
    return bench_ladder.LadderBench("emulator", bench_ladder.QUICK, copy_mb=1)


def test_every_rung_and_tile_checked_then_timed_against_the_vendor_gemm(bench):
    row = bench.gemm_row("tiny", 9, 10, 11, 2)
    assert row["vendor ms"] > 0
    rungs = {k: v for k, v in row.items() if k not in ("gemm", "M", "N", "K", "batch", "vendor ms")}
    assert set(rungs) == {f"{r.name}-t{t}" for r in ladder.RUNGS for t in ladder.TILES}
    assert all(isinstance(v, float) and v > 0 for v in rungs.values()), rungs


def test_a_wrong_rung_is_reported_failed_never_timed(bench, monkeypatch):
    real = ladder.gemm

    def off_by_one(runtime, rung, tile, a, b, splits):
        c = real(runtime, rung, tile, a, b, splits)
        if rung == "vec4" and tile == 16:
            c[0, 0, 0] += 1.0
        return c
    monkeypatch.setattr(ladder, "gemm", off_by_one)
    row = bench.gemm_row("tiny", 9, 10, 11, 1)
    assert str(row["vec4-t16"]).startswith("FAILED err=")
    assert isinstance(row["vec4-t8"], float)


def test_memory_bound_kernels_as_fractions_of_the_copy(bench):
    copy_gbs = bench.copy_bandwidth()
    fractions = bench.memory_row("tiny", TINY_LAYER, copy_gbs)
    assert copy_gbs > 0 and fractions["layer"] == "tiny"
    assert all(fractions[k] > 0 for k in ("im2col", "shift-add", "depthwise"))


def test_gemm_shapes_of_a_model_are_its_dense_layers_im2col_gemms():
    """mobilenet_v2's depthwise layers run no single GEMM: left out; every shape at every batch."""
    shapes = bench_ladder.gemm_shapes(["mobilenet_v2"], [1, 4], 16, 24, max_layers=3)
    layers = distinct_conv_layers("mobilenet_v2", 1, 16, 3)
    assert [g.groups for _, g, _ in layers] == [1, 32, 1]
    first = layers[0][1]   # 3 -> 32, 3x3, stride 2 on 16x16: M=32, K=27, N=8*8
    assert shapes == [("square 24", 24, 24, 24, 1),
                      ("mobilenet_v2 features.0.0", 32, 64, 27, 1), ("mobilenet_v2 features.1.conv.1", 16, 64, 32, 1),
                      ("mobilenet_v2 features.0.0", 32, 64, 27, 4), ("mobilenet_v2 features.1.conv.1", 16, 64, 32, 4)]
    assert first.out_channels == 32 and first.in_channels * first.taps == 27


def test_command_writes_the_tables(tmp_path):
    out = tmp_path / "ladder.md"
    assert bench_ladder.main(["--backend", "emulator", "--quick", "--size", "20", "--models", "resnet18",
                              "--max-layers", "1", "--input-size", "16", "--batches", "1", "--copy-mb", "1",
                              "--out", str(out)]) == 0
    text = out.read_text()
    assert "square 20" in text and "resnet18 conv1" in text and "fold-t32" in text and "FAILED" not in text
    assert "EMULATED" in text and "resnet18 conv1 b1" in text.split("## Memory-bound")[1]
    assert "in progress" not in text
