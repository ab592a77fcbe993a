"""bench-layers (experiments/bench/layers.py): its GEMM table covers the dense layers only, it runs on
the emulator (the GPU's branches, emulated times), and a run stopped midway keeps the rows it measured."""
import pytest

from experiments.bench import document, layers


def test_gemm_shapes_leave_out_depthwise_layers():
    """mobilenet_v2's depthwise layers would give a 0 x 0 x 0 GEMM, whose error check raises."""
    shapes = layers.gemm_shapes(["mobilenet_v2"], 1, 16, 24, max_layers=3)
    assert [s[0] for s in shapes] == ["square", "mobilenet_v2 features.0.0 im2col", "mobilenet_v2 features.1.conv.1 im2col"]
    assert all(min(s[1:]) > 0 for s in shapes)


def test_on_the_emulator_every_variant_and_the_gemm_table(tmp_path):
    out = tmp_path / "layers.md"
    assert layers.main(["--backend", "emulator", "--quick", "--models", "mobilenet_v2", "--max-layers", "2",
                        "--input-size", "16", "--gemm-size", "24", "--out", str(out)]) == 0
    text = out.read_text()
    conv, gemm = text.split("## Blocked GEMM vs vendor GEMM")
    assert "EMULATED" in text and document.IN_PROGRESS not in text
    assert "| mobilenet_v2 | features.0.0 " in conv and "kn2row/blocked-t32/fp32" in conv and "FAILED" not in conv
    assert "features.1.conv.0.0" not in text   # the depthwise layer: in neither table
    assert "mobilenet_v2 features.0.0 im2col" in gemm and "blocked-t32" in gemm


def test_a_run_stopped_midway_keeps_its_rows(tmp_path, monkeypatch):
    out = tmp_path / "layers.md"
    real = layers.Bench.layer
    calls = []

    def dies_on_the_second_layer(self, g):
        calls.append(g)
        if len(calls) == 2:
            raise KeyboardInterrupt   # as a time limit's signal would
        return real(self, g)
    monkeypatch.setattr(layers.Bench, "layer", dies_on_the_second_layer)
    with pytest.raises(KeyboardInterrupt):
        layers.main(["--backend", "numpy", "--quick", "--models", "resnet18", "--max-layers", "3",
                     "--input-size", "16", "--out", str(out)])
    text = out.read_text()
    assert document.IN_PROGRESS in text and "| resnet18 | conv1 " in text and "layer1.0.conv1" not in text
