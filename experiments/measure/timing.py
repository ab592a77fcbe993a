"""Timing by the measurement protocol (docs/design.md), and measurements that carry their statistics.

    measure(fn, protocol, clock)   `warmup` untimed calls, then timed calls until both
                                   `min_samples` and `min_time_s` are met, stopped at
                                   `max_time_s` whatever the count -> Measurement

Every timed call runs fp32 as fp32: TF32 off in PyTorch's convolutions (cuDNN allows it by default,
so on Ampere and later a PyTorch baseline would otherwise race our FP32 kernels in TF32) and matmuls.
fp16 and int8 work is unaffected by the switch.

The first call of a target is timed alone by the caller (``clock.time(fn)``: it is also the
correctness check) and handed in as ``first_call_s``. A clock times one call:

    CpuClock     time.perf_counter_ns around the call, then the runtime's synchronize()
    EventClock   device events recorded before and after the call on the current stream
                 (torch.cuda.Event or cupy.cuda.Event: torch, CuPy and DLPack exchanges all
                 share the legacy default stream), synchronized after each call

A ``Measurement`` (in the spirit of torch.utils.benchmark.Measurement) holds the raw samples in
seconds and derives median, p10, p90, mean, std, IQR/median and the noisy flag from them.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NOISY_IQR_REL = 0.10   # docs/design.md: flag IQR/median above 10%
CACHE_MODES = ("hot", "cold")


@dataclass(frozen=True)
class Protocol:
    """How long to measure one target (one preset of conf/bench/, for the model or for a layer)."""

    warmup: int = 10
    min_samples: int = 10
    min_time_s: float = 1.0
    max_time_s: float = 10.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_samples < 1:
            raise ValueError(f"warmup must be >= 0 and min_samples >= 1, got {self.warmup} and {self.min_samples}")
        if self.min_time_s < 0 or self.max_time_s <= 0:
            raise ValueError(f"min_time_s must be >= 0 and max_time_s > 0, got {self.min_time_s} and {self.max_time_s}")


# An emulated runtime's timings are not performance (the kernels run on the CPU, one fiber per GPU thread):
# after the full correctness check, each target is timed once, to say how long it took, never as a distribution.
ONE_CALL = Protocol(warmup=0, min_samples=1, min_time_s=0.0, max_time_s=math.inf)


@dataclass(frozen=True)
class Measurement:
    """Raw per-call times of one target, in seconds, with the statistics the report uses."""

    label: str
    samples_s: tuple[float, ...]
    first_call_s: float | None = None
    warmup: int = 0
    clock: str = "perf_counter_ns"
    capped: bool = False       # max_time_s stopped the loop before min_samples and min_time_s were met
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.samples_s:
            raise ValueError(f"measurement {self.label!r} has no samples")
        object.__setattr__(self, "samples_s", tuple(float(s) for s in self.samples_s))
        object.__setattr__(self, "_sorted", np.sort(np.asarray(self.samples_s, dtype=np.float64)))

    @property
    def n(self) -> int:
        return len(self.samples_s)

    def percentile(self, q: float) -> float:
        """Linear interpolation between order statistics (numpy's default), in seconds."""
        return float(np.percentile(self._sorted, q))

    @property
    def median(self) -> float:
        return self.percentile(50)

    @property
    def p10(self) -> float:
        return self.percentile(10)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def mean(self) -> float:
        return float(self._sorted.mean())

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0 for a single sample."""
        return float(self._sorted.std(ddof=1)) if self.n > 1 else 0.0

    @property
    def iqr(self) -> float:
        return self.percentile(75) - self.percentile(25)

    @property
    def iqr_rel(self) -> float:
        median = self.median
        return self.iqr / median if median > 0 else math.inf

    @property
    def noisy(self) -> bool:
        return self.iqr_rel > NOISY_IQR_REL

    @property
    def has_spread(self) -> bool:
        """Two samples or more: percentiles, IQR and std say something (one call has no distribution)."""
        return self.n > 1

    def stats(self) -> dict[str, float | int | bool | str | None]:
        """Summary row (times in ms) for samples/summary.csv; the spread is empty for a single call."""
        ms, spread = 1e3, self.has_spread
        return {"target": self.label, "n": self.n, "median_ms": self.median * ms,
                "p10_ms": self.p10 * ms if spread else None, "p90_ms": self.p90 * ms if spread else None,
                "mean_ms": self.mean * ms, "std_ms": self.std * ms if spread else None,
                "iqr_rel": self.iqr_rel if spread else None, "noisy": self.noisy if spread else None,
                "first_call_ms": None if self.first_call_s is None else self.first_call_s * ms,
                "warmup": self.warmup, "clock": self.clock, "capped": self.capped}

    def __repr__(self) -> str:
        if not self.has_spread:
            return f"<Measurement {self.label}: one call, {self.median * 1e3:.4g} ms>"
        flag = "  NOISY" if self.noisy else ""
        cap = "  (capped by max_time_s)" if self.capped else ""
        return (f"<Measurement {self.label}: median {self.median * 1e3:.4g} ms, p10 {self.p10 * 1e3:.4g}, "
                f"p90 {self.p90 * 1e3:.4g}, IQR/median {self.iqr_rel:.1%}, n={self.n}{flag}{cap}>")


def fp32_without_tf32() -> None:
    """Before any timed call (a clock's time() and measure() call it)."""
    import torch
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class CpuClock:
    """Wall time of a call with time.perf_counter_ns; the runtime is synchronized inside the interval."""

    name = "perf_counter_ns"

    def __init__(self, synchronize: Callable[[], None] = lambda: None):
        self.synchronize = synchronize

    def time(self, fn: Callable[[], object]) -> float:
        fp32_without_tf32()
        start = time.perf_counter_ns()
        fn()
        self.synchronize()
        return (time.perf_counter_ns() - start) * 1e-9


class EventClock:
    """Device time of a call between two events on the current stream."""

    def __init__(self, library: str = "torch"):
        self.name = f"{library}.cuda.Event"
        if library == "torch":
            import torch
            self._event = lambda: torch.cuda.Event(enable_timing=True)
            self._elapsed_ms = lambda a, b: a.elapsed_time(b)
            self.synchronize = torch.cuda.synchronize
        else:
            import cupy
            self._event = cupy.cuda.Event
            self._elapsed_ms = cupy.cuda.get_elapsed_time
            self.synchronize = lambda: cupy.cuda.get_current_stream().synchronize()
        self._start, self._end = self._event(), self._event()

    def time(self, fn: Callable[[], object]) -> float:
        fp32_without_tf32()
        self._start.record()
        fn()
        self._end.record()
        self._end.synchronize()
        return self._elapsed_ms(self._start, self._end) * 1e-3


class CacheFlusher:
    """cold cache mode: write a buffer larger than the last-level cache before each timed call."""

    def __init__(self, nbytes: int, device=None):
        if device is not None and getattr(device, "type", str(device)) != "cpu":
            import torch
            self._buffer = torch.empty(nbytes, dtype=torch.uint8, device=device)
        else:
            self._buffer = np.empty(nbytes, dtype=np.uint8)
        self._value = 0

    def __call__(self) -> None:
        self._value = (self._value + 1) % 251
        self._buffer.fill(self._value) if isinstance(self._buffer, np.ndarray) else self._buffer.fill_(self._value)


def measure(fn: Callable[[], object], protocol: Protocol, clock, label: str, *,
            first_call_s: float | None = None, flush: Callable[[], None] | None = None,
            progress: Callable[..., object] | None = None,
            now: Callable[[], float] = time.perf_counter) -> Measurement:
    """Warm up, then time calls of ``fn`` until the protocol is satisfied.

    ``flush`` (cold cache mode) runs before every timed call, outside the timed interval.
    ``progress(total=..., desc=...)`` returns a tqdm-like bar (``update()``, ``close()``) or None.
    """
    fp32_without_tf32()
    bar = progress(total=protocol.warmup + protocol.min_samples, desc=label) if progress else None
    try:
        for _ in range(protocol.warmup):
            fn()
            if bar is not None:
                bar.update()
        clock.synchronize()
        samples: list[float] = []
        capped = False
        start = now()
        while True:
            if flush is not None:
                flush()
            samples.append(clock.time(fn))
            if bar is not None:
                bar.update()
            elapsed = now() - start
            if len(samples) >= protocol.min_samples and elapsed >= protocol.min_time_s:
                break
            if elapsed >= protocol.max_time_s:
                capped = True
                break
    finally:
        if bar is not None:
            bar.close()
    return Measurement(label, tuple(samples), first_call_s, protocol.warmup, clock.name, capped)


def expected_seconds(protocol: Protocol, call_s: float) -> float:
    """How long ``measure`` should take for calls of ``call_s`` seconds (for the progress bar)."""
    timed = min(max(protocol.min_samples * call_s, protocol.min_time_s), protocol.max_time_s)
    return protocol.warmup * call_s + timed
