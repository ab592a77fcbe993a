"""Scripted clocks for the tuner's tests: each candidate's call tells the clock whose time to answer."""
from experiments.tuning import autotune


def clock_follows_candidates(monkeypatch, clock) -> None:
    """Before each call of a tuning candidate, ``clock.current`` becomes the candidate's label."""
    real_module = autotune.candidate_module

    def module(self, conv, name, runtime):
        inner = real_module(self, conv, name, runtime)

        def call(x, label=self.label):
            clock.current = label
            return inner(x)
        return call
    monkeypatch.setattr(autotune, "candidate_module", module)
