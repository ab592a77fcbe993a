"""Energy of a fixed-duration inference loop under CodeCarbon's OfflineEmissionsTracker.

The offline tracker makes no network call (the online one probes a metadata host and falls
back to a wrong country). Nothing is written to disk (output_methods=[]). The mode says how
far to trust the figure:

    rapl       CPU energy counters (Intel/AMD RAPL)
    nvml       GPU power readings (NVIDIA NVML); CPU and RAM as CodeCarbon can
    estimated  no counters: CPU power from load and a TDP constant, RAM from a constant
    off        not measured

CodeCarbon's hardware detection takes about 1.2 s the first time in a process and is cached
after that; ``prewarm()`` runs it in a background thread while the job builds its model.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

JOULES_PER_KWH = 3.6e6
# A window is read per image: it runs at least bench.energy_s AND at least MIN_IMAGES images, stretched up
# to MAX_STRETCH x energy_s for a slow model. One that still holds fewer images is "thin": its per-image
# figure is logged, marked (tag energy_window=thin) and left out of every ranking.
MIN_IMAGES = 20
MAX_STRETCH = 3.0
READABLE, THIN = "readable", "thin"


@dataclass(frozen=True)
class EnergyResult:
    energy_kwh: float
    emissions_kg: float
    calls: int
    images: int
    duration_s: float
    mode: str

    @property
    def per_inference_j(self) -> float:
        """Joules per image (one sample of a batch)."""
        return self.energy_kwh * JOULES_PER_KWH / self.images if self.images else float("nan")

    @property
    def window(self) -> str:
        """readable, or thin: too few images for a per-image figure to be compared."""
        return READABLE if self.images >= MIN_IMAGES else THIN

    @property
    def per_inference_co2_mg(self) -> float:
        """mg CO2-equivalent per image: the window's emissions over the images it processed."""
        return self.emissions_kg * 1e6 / self.images if self.images else float("nan")


class _Errors(logging.Handler):
    """CodeCarbon reports trouble (an unknown country, a failed power reading) as ERROR log lines and
    goes on with a default: collected here, they fail the measurement instead."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _quiet_codecarbon() -> None:
    import codecarbon  # noqa: F401  (its import sets its logger to INFO)
    logging.getLogger("codecarbon").setLevel(logging.ERROR)


def energy_mode(tracker) -> str:
    """rapl, nvml or estimated, from the hardware CodeCarbon set up."""
    kinds = {type(h).__name__: getattr(h, "_mode", None) for h in getattr(tracker, "_hardware", [])}
    if "GPU" in kinds:
        return "nvml"
    if kinds.get("CPU") == "intel_rapl":
        return "rapl"
    return "estimated"


class EnergyMeter:
    """One CodeCarbon offline tracker per measurement window."""

    def __init__(self, country_iso_code: str = "USA", region: str | None = None, measure_power_secs: float = 1):
        self.kwargs = dict(country_iso_code=country_iso_code, measure_power_secs=measure_power_secs,
                           output_methods=[], log_level="error")
        if region:
            self.kwargs["region"] = region
        self._prewarm: threading.Thread | None = None

    def _tracker(self):
        _quiet_codecarbon()
        from codecarbon import OfflineEmissionsTracker
        return OfflineEmissionsTracker(**self.kwargs)

    def prewarm(self) -> None:
        """Detect the hardware in the background (cached by CodeCarbon for the process)."""
        self._prewarm = threading.Thread(target=lambda: self._tracker().get_detected_hardware(),
                                         name="codecarbon-prewarm", daemon=True)
        self._prewarm.start()

    def wait(self) -> None:
        if self._prewarm is not None:
            self._prewarm.join()
            self._prewarm = None

    def measure(self, fn: Callable[[], object], duration_s: float, batch_size: int,
                synchronize: Callable[[], None] = lambda: None) -> EnergyResult:
        """Call ``fn`` back to back under the tracker for ``duration_s`` seconds and at least MIN_IMAGES images
        (at most MAX_STRETCH x ``duration_s``)."""
        self.wait()
        errors = _Errors()
        logger = logging.getLogger("codecarbon")
        logger.addHandler(errors)
        try:
            tracker = self._tracker()
            tracker.start()
            calls, start = 0, time.perf_counter()
            while not _window_done(time.perf_counter() - start, calls * batch_size, duration_s):
                fn()
                calls += 1
            synchronize()
            elapsed = time.perf_counter() - start
            emissions = tracker.stop()
        finally:
            logger.removeHandler(errors)
        data = tracker.final_emissions_data
        if errors.messages:
            raise RuntimeError(f"CodeCarbon: {errors.messages[0].strip()}")
        if emissions is None or data is None:
            raise RuntimeError("CodeCarbon returned no measurement (see its log for why)")
        return EnergyResult(float(data.energy_consumed), float(emissions), calls, calls * batch_size,
                            elapsed, energy_mode(tracker))


def _window_done(elapsed_s: float, images: int, duration_s: float) -> bool:
    if elapsed_s < duration_s:
        return False
    return images >= MIN_IMAGES or elapsed_s >= duration_s * MAX_STRETCH
