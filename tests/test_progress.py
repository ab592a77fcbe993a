"""A job's progress in a log file: a line now and then with the count and the time left."""
import io

from experiments.harness import console
from experiments.harness.console import LOG_EVERY_S, LogProgress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_log_gets_a_line_at_most_every_interval_with_count_and_time_left():
    clock, out = Clock(), io.StringIO()
    bar = LogProgress(20, "checking layers", now=clock, out=out)
    for _ in range(3):                      # 3 steps of 1 s: under the interval, nothing printed
        clock.t += 1
        bar.update()
    assert out.getvalue() == ""
    clock.t += LOG_EVERY_S                  # step 4 ends 13 s in: mean 3.25 s a step, 16 steps left
    bar.update()
    assert out.getvalue() == "[convbench] checking layers: 4/20, 13 s, about 52 s left\n"
    clock.t += 1                            # 1 s after the last line: nothing new
    bar.update()
    assert out.getvalue().count("\n") == 1
    bar.close()


def test_steps_past_the_total_say_so_rather_than_give_a_negative_time():
    clock, out = Clock(), io.StringIO()
    bar = LogProgress(2, "im2col/model", now=clock, out=out)   # measure() may time past its minimum count
    for _ in range(3):
        clock.t += LOG_EVERY_S
        bar.update()
    assert out.getvalue().splitlines()[-1] == "[convbench] im2col/model: 3/2, 30 s, its count reached"


def test_a_job_writing_to_a_log_gets_the_log_progress(capsys):
    bar = console.progress_bar(total=5, desc="layers")   # pytest's captured stderr is no terminal
    assert isinstance(bar, LogProgress) and (bar.total, bar.desc) == (5, "layers")
