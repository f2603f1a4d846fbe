"""The progress display (plain lines off a terminal, per-run env steps) and Ctrl-C handling."""

import io
import re
import signal

import numpy as np
import pytest

from jaxppo import progress


def test_plain_line_per_update_off_a_terminal(monkeypatch):
    """Piped output (a StringIO is no terminal): one plain line per update, counting env
    steps per run (not summed over runs), with the run count, rate, IQM and time left."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):  # rich's overrides
        monkeypatch.delenv(name, raising=False)
    stream = io.StringIO()
    # 976 updates of 512 env steps: 499,712 per run; 8 runs; resumed after 10 updates.
    display = progress.Progress("CartPole-v1", 976, 512, 8, done_updates=10, stream=stream)
    assert display.bar is None
    display.update(20, 65536.0, 23.44)
    display.update(30, 70000.4, float("nan"))
    display.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = re.sub(r"\d+:\d\d left$", "T left", lines[0])
    assert first == ("CartPole-v1: update 20/976, 10,240/499,712 env steps per run x 8 runs, "
                     "65,536 env steps/s over all runs, IQM return 23.4, T left")
    assert lines[1].startswith("CartPole-v1: update 30/976, 15,360/499,712 env steps per run")
    assert "70,000 env steps/s over all runs, IQM return -," in lines[1]


def test_line_text_and_time_left():
    """Time left H:MM:SS (M:SS under an hour); unknown ones are "-"; one run, no plural."""
    line = progress.Line("Acrobot-v1", (1, 4), 16, 1, 100.0, 1.25, 3725.0)
    assert line.text() == ("Acrobot-v1: update 1/4, 16/64 env steps per run x 1 run, "
                           "100 env steps/s, IQM return 1.2, 1:02:05 left")
    assert progress.Line("X", (0, 4), 16, 2, 0.0, float("nan"), float("nan")).text().endswith(
        "IQM return -, - left")
    assert progress.Line("X", (1, 4), 16, 2, 0.0, 0.0, 59.6).text().endswith("1:00 left")


def test_time_left_counts_updates_of_this_process(monkeypatch):
    """10 s for the 5 updates run since the start (5 restored): 20 s for the 10 left."""
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    display = progress.Progress("X", 20, 4, 2, done_updates=5, stream=stream)
    display.update(10, 1.0, 0.0)
    assert stream.getvalue().strip().endswith("0:20 left")


def test_live_bar_shows_steps_per_run():
    """The rich bar (forced live): totals are per run, the run count beside them."""
    stream = io.StringIO()
    display = progress.Progress("CartPole-v1", 976, 512, 8, stream=stream, live=True)
    task = display.bar.tasks[0]
    assert (task.total, task.completed) == (976 * 512, 0)
    display.update(20, 65536.0, 23.4)
    assert task.completed == 20 * 512
    display.close()


def test_iqm_so_far():
    assert np.isnan(progress.iqm_so_far(np.zeros((1, 2, 0))))
    assert np.isnan(progress.iqm_so_far(np.full((1, 2, 3), np.nan)))
    # Final returns (mean of the last 10 updates, NaN skipped) 2 and 4: IQM of 2 runs = 3.
    returns = np.array([[[1.0, 3.0, np.nan], [4.0, np.nan, 4.0]]])
    assert progress.iqm_so_far(returns) == pytest.approx(3.0)


def test_second_ctrl_c_interrupts_at_once():
    """The first SIGINT only sets the flag (the run stops after its chunk); a second raises
    KeyboardInterrupt at once and puts the previous handler back, as does leaving."""
    before = signal.getsignal(signal.SIGINT)
    with progress.interrupt_flag() as flag:
        handler = signal.getsignal(signal.SIGINT)
        assert handler is not before and not flag.requested
        handler(signal.SIGINT, None)
        assert flag.requested
        assert signal.getsignal(signal.SIGINT) is handler  # still ours after the first
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
        assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGINT) is before
