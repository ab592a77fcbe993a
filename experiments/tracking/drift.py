"""Did PyTorch's time drift between a sweep's jobs?

Every job times PyTorch beside ours, and its speedup is that same-job ratio, with a 95% bootstrap interval
of the noise inside the job. A machine that gets busy between jobs (another process, thermal limits)
is outside that interval: two jobs of the same latency can then read "2.7× faster" and "9.1× slower".
The PyTorch medians of the jobs that ran the same PyTorch model (one scenario) should agree; when
they spread beyond DRIFT_IQR_REL (IQR of the medians over their median), or one of them is more than
OUTLIER_REL away from the median, the baseline drifted. The sweep's closing summary, its parent run
and the report say so and name the jobs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DRIFT_IQR_REL = 0.10   # the spread the protocol calls noisy within a job (IQR/median), across jobs
OUTLIER_REL = 0.25     # one job's PyTorch median this far from the others' median drifted on its own

WITHIN_JOB_ONLY = ("each speedup's 95% interval covers the noise within its job only, not a machine that "
                   "changed between jobs")


@dataclass(frozen=True)
class Drift:
    scenario: str
    medians_ms: dict[str, float]      # job -> PyTorch's median in that job
    iqr_rel: float
    jobs: tuple[str, ...]             # the jobs off the median

    def text(self) -> str:
        values = list(self.medians_ms.values())
        where = f" ({self.scenario})" if self.scenario else ""
        off = ", ".join(f"{job} {self.medians_ms[job]:.3g} ms" for job in self.jobs)
        return (f"PyTorch's baseline drifted between jobs{where}: its median ranged {min(values):.3g}-"
                f"{max(values):.3g} ms (IQR/median {self.iqr_rel:.0%}, median {np.median(values):.3g} ms); "
                f"off the median: {off}. Compare these jobs' speedups with care: {WITHIN_JOB_ONLY}")


def baseline_drift(medians_ms: dict[str, float], scenario: str = "") -> Drift | None:
    """The drift of one scenario's PyTorch medians (job -> ms), None when they agree or are fewer than two."""
    finite = {job: float(v) for job, v in medians_ms.items() if v == v and v > 0}
    if len(finite) < 2:
        return None
    values = np.array(list(finite.values()))
    median = float(np.median(values))
    q1, q3 = np.percentile(values, [25, 75])
    iqr_rel = float((q3 - q1) / median)
    off = {job: abs(v / median - 1) for job, v in finite.items()}
    outliers = [job for job, rel in off.items() if rel > OUTLIER_REL]
    if iqr_rel <= DRIFT_IQR_REL and not outliers:
        return None
    named = [job for job, rel in off.items() if rel > DRIFT_IQR_REL] or \
        [min(finite, key=finite.get), max(finite, key=finite.get)]
    return Drift(scenario, finite, iqr_rel, tuple(sorted(named, key=lambda job: -off[job])))
