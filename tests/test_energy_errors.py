"""A CodeCarbon error fails the energy measurement: the run is tagged and reports no emissions."""
from __future__ import annotations

import pytest

from experiments.measure.energy import EnergyMeter
from experiments.tracking import contract


def test_an_unknown_country_fails_the_measurement_instead_of_a_default_figure():
    meter = EnergyMeter(country_iso_code="XYZ", measure_power_secs=1)   # what validation refuses up front
    with pytest.raises(RuntimeError, match="^CodeCarbon: .*XYZ"):
        meter.measure(lambda: None, 0.2, batch_size=1)


def test_a_job_whose_energy_failed_is_tagged_and_reports_no_emissions(tmp_path, convbench, monkeypatch, capsys):
    """CodeCarbon fails at run time (here: a country validation would refuse, let through): the job's
    timings stand, its run says energy_mode=failed with the error, and no energy metric is logged."""
    from experiments.harness import validate
    monkeypatch.setattr(validate, "check_energy_location", lambda country, region: None)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    code = convbench("model=digits_cnn", "bench=smoke", "energy=codecarbon", "energy.country_iso_code=XYZ",
                     "bench.energy_s=0.2", f"tracking.uri={uri}", f"hydra.run.dir={tmp_path / 'run'}")
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    assert "energy failed: RuntimeError: CodeCarbon:" in out.out
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("convbench").experiment_id])
    assert run.data.tags[contract.T_ENERGY_MODE] == "failed"
    assert "XYZ" in run.data.tags[contract.T_ENERGY_ERROR]
    assert contract.LATENCY_MS in run.data.metrics
    assert not {contract.ENERGY_KWH, contract.EMISSIONS_KG, contract.ENERGY_PER_INFERENCE_J} & set(run.data.metrics)
