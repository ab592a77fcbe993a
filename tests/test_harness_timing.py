"""The measurement protocol and the statistics a Measurement carries."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.measure.timing import NOISY_IQR_REL, CpuClock, Measurement, Protocol, expected_seconds, measure


def test_statistics_of_known_samples():
    m = Measurement("t", tuple(float(v) for v in range(1, 11)))      # 1..10 s
    assert m.n == 10
    assert m.median == 5.5
    assert m.p10 == pytest.approx(1.9) and m.p90 == pytest.approx(9.1)   # linear interpolation
    assert m.mean == 5.5
    assert m.std == pytest.approx(np.std(np.arange(1, 11), ddof=1))
    assert m.iqr == pytest.approx(7.75 - 3.25)
    assert m.iqr_rel == pytest.approx(4.5 / 5.5)
    assert m.noisy


def test_single_sample_and_quiet_samples():
    one = Measurement("one", (0.002,))
    assert (one.median, one.p10, one.p90, one.std, one.iqr_rel, one.noisy) == (0.002, 0.002, 0.002, 0.0, 0.0, False)
    quiet = Measurement("quiet", (1.0, 1.01, 0.99, 1.0, 1.02))
    assert not quiet.noisy and quiet.iqr_rel < NOISY_IQR_REL


def test_samples_are_kept_in_call_order_and_stats_row_in_ms():
    m = Measurement("impl/target", (0.003, 0.001, 0.002), first_call_s=0.5, warmup=10)
    assert m.samples_s == (0.003, 0.001, 0.002)
    row = m.stats()
    assert row["median_ms"] == pytest.approx(2.0) and row["first_call_ms"] == pytest.approx(500)
    assert row["n"] == 3 and row["warmup"] == 10 and row["target"] == "impl/target"
    assert "median 2 ms" in repr(m)


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        Measurement("empty", ())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-7, max_value=10.0, allow_nan=False), min_size=1, max_size=60))
def test_order_statistics_are_consistent(samples):
    m = Measurement("h", tuple(samples))
    lo, hi = min(samples), max(samples)
    tol = 1e-12 * hi
    assert lo - tol <= m.p10 <= m.median + tol <= m.p90 + 2 * tol <= hi + 3 * tol
    assert lo - tol <= m.mean <= hi + tol
    assert m.iqr >= -tol and m.std >= 0
    assert m.median == pytest.approx(float(np.median(samples)))


class FakeClock:
    """Each timed call 'takes' `step` seconds of a fake wall clock."""

    name = "fake"

    def __init__(self, step):
        self.step, self.now, self.events = step, 0.0, []

    def synchronize(self):
        self.events.append("sync")

    def time(self, fn):
        fn()
        self.now += self.step
        return self.step


def _run(protocol, step, flush=None):
    clock, calls = FakeClock(step), []
    m = measure(lambda: calls.append(clock.now), protocol, clock, "x", flush=flush, now=lambda: clock.now)
    return m, calls, clock


def test_warmup_then_min_samples_when_min_time_is_already_met():
    m, calls, clock = _run(Protocol(warmup=10, min_samples=5, min_time_s=0.0, max_time_s=100), 1.0)
    assert m.n == 5 and len(calls) == 15 and not m.capped
    assert clock.events == ["sync"]      # once, between the untimed warm-up and the timed calls


def test_min_time_keeps_sampling_past_min_samples():
    m, _, _ = _run(Protocol(warmup=0, min_samples=3, min_time_s=10.0, max_time_s=100), 1.0)
    assert m.n == 10 and not m.capped


def test_max_time_caps_the_loop_even_before_min_samples():
    m, _, _ = _run(Protocol(warmup=2, min_samples=100, min_time_s=0.0, max_time_s=4.5), 1.0)
    assert m.n == 5 and m.capped


def test_flush_runs_before_every_timed_call_only():
    log = []
    clock = FakeClock(1.0)
    measure(lambda: log.append("call"), Protocol(warmup=2, min_samples=3, min_time_s=0, max_time_s=10), clock, "x",
            flush=lambda: log.append("flush"), now=lambda: clock.now)
    assert log == ["call", "call", "flush", "call", "flush", "call", "flush", "call"]


def test_progress_bar_counts_every_call():
    class Bar:
        def __init__(self, total, desc):
            self.total, self.desc, self.n, self.closed = total, desc, 0, False

        def update(self):
            self.n += 1

        def close(self):
            self.closed = True
    bars = []
    clock = FakeClock(1.0)
    measure(lambda: None, Protocol(warmup=3, min_samples=4, min_time_s=0, max_time_s=10), clock, "label",
            progress=lambda **kw: bars.append(Bar(**kw)) or bars[-1], now=lambda: clock.now)
    (bar,) = bars
    assert (bar.total, bar.n, bar.desc, bar.closed) == (7, 7, "label", True)


def test_cpu_clock_measures_wall_time_and_synchronizes_inside():
    import time
    synced = []
    clock = CpuClock(lambda: synced.append(True))
    elapsed = clock.time(lambda: time.sleep(0.01))
    assert 0.009 < elapsed < 0.5 and synced == [True]


def test_expected_seconds():
    p = Protocol(warmup=10, min_samples=20, min_time_s=1.0, max_time_s=5.0)
    assert expected_seconds(p, 0.01) == pytest.approx(0.1 + 1.0)    # min_time dominates
    assert expected_seconds(p, 1.0) == pytest.approx(10 + 5.0)      # capped by max_time


@pytest.mark.parametrize("bad", [dict(warmup=-1), dict(min_samples=0), dict(min_time_s=-1), dict(max_time_s=0)])
def test_protocol_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        Protocol(**bad)


def test_cold_cache_flush_writes_the_whole_buffer_each_time():
    from experiments.measure.timing import CacheFlusher
    flush = CacheFlusher(1 << 20)
    flush()
    first = int(flush._buffer[-1])
    flush()
    assert flush._buffer.nbytes == 1 << 20 and int(flush._buffer[0]) == int(flush._buffer[-1]) != first
