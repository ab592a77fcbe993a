"""CodeCarbon's offline tracker around a fixed-duration loop, without touching the network."""
import pytest

from experiments.measure.energy import JOULES_PER_KWH, EnergyMeter, EnergyResult, energy_mode


def test_fixed_duration_window_offline(network_attempts):
    meter = EnergyMeter(country_iso_code="USA", measure_power_secs=1)
    meter.prewarm()
    result = meter.measure(lambda: sum(range(2000)), duration_s=0.3, batch_size=4)
    assert result.duration_s >= 0.3 and result.calls > 0 and result.images == 4 * result.calls
    assert result.energy_kwh > 0 and result.emissions_kg > 0
    assert result.per_inference_j == pytest.approx(result.energy_kwh * JOULES_PER_KWH / result.images)
    assert result.mode in ("rapl", "nvml", "estimated")
    assert network_attempts == []


def test_energy_mode_from_the_hardware_codecarbon_set_up():
    def tracker(*hardware):
        return type("Tracker", (), {"_hardware": list(hardware)})()

    def hw(kind, mode=None):
        return type(kind, (), {"_mode": mode})()
    assert energy_mode(tracker(hw("RAM"), hw("CPU", "intel_rapl"))) == "rapl"
    assert energy_mode(tracker(hw("RAM"), hw("CPU", "cpu_load"), hw("GPU"))) == "nvml"
    assert energy_mode(tracker(hw("RAM"), hw("CPU", "constant"))) == "estimated"


def test_per_inference_is_per_image():
    assert EnergyResult(1e-6, 0, calls=3, images=6, duration_s=1, mode="estimated").per_inference_j == \
        pytest.approx(3.6 / 6)
