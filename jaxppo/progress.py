"""What a run shows while it trains, and how Ctrl-C stops it.

`Progress` counts env steps per run (every run takes the same steps, in parallel), with the
run count beside it: on a terminal (or in a notebook) a rich progress bar; elsewhere (output
piped to a file, a batch job's log) one plain line per chunk, which keeps its time left:

    CartPole-v1: update 20/976, 10,240/499,712 env steps per run x 8 runs, 65,536 env
    steps/s over all runs, IQM return 23.4, 4:03 left            (one line)

`interrupt_flag` turns the first Ctrl-C into a request to stop after the chunk running, or
before the first when it comes while compiling (the runner then saves a checkpoint), and says
so on stderr; a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np

from jaxppo import stats


def iqm_so_far(returns: np.ndarray) -> float:
    """IQM over runs of the final returns (`stats.final_returns`) of returns [..., done];
    NaN before any run has a finished episode."""
    if returns.shape[-1] == 0:
        return float("nan")
    final = stats.final_returns(returns).ravel()
    final = final[~np.isnan(final)]
    return stats.iqm(final) if final.size else float("nan")


def _duration(seconds: float) -> str:
    """H:MM:SS, or M:SS under an hour."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclasses.dataclass(frozen=True)
class Line:
    """One chunk's progress, as the plain line shows it.

    Attributes:
        label: what runs (the env id).
        updates: updates done and in total, per run.
        batch_size: env steps per update, per run.
        runs: runs trained in parallel.
        steps_per_s: env steps per second over all runs.
        iqm: IQM return over runs so far (NaN: no finished episode yet).
        left_s: estimated seconds left (NaN: not known yet).
    """

    label: str
    updates: tuple[int, int]
    batch_size: int
    runs: int
    steps_per_s: float
    iqm: float
    left_s: float

    def text(self) -> str:
        done, total = self.updates
        plural = "" if self.runs == 1 else "s"
        iqm = "-" if math.isnan(self.iqm) else f"{self.iqm:.1f}"
        left = "-" if math.isnan(self.left_s) else _duration(self.left_s)
        return (f"{self.label}: update {done}/{total}, {done * self.batch_size:,}/"
                f"{total * self.batch_size:,} env steps per run x {self.runs} run{plural}, "
                f"{_rate(self.steps_per_s, self.runs)}, IQM return {iqm}, {left} left")


def _rate(steps_per_s: float, runs: int) -> str:
    return f"{steps_per_s:,.0f} env steps/s" + (" over all runs" if runs > 1 else "")


def _is_live(stream: TextIO) -> bool:
    """Whether ``stream`` shows a live bar: a terminal, or a notebook's output."""
    from rich.console import Console

    console = Console(file=stream)
    return console.is_terminal or console.is_jupyter


def _rich_bar(label: str, total_steps: int, done_steps: int, runs: int, stream: TextIO):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    plural = "" if runs == 1 else "s"
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        TextColumn(f"{{task.completed:,.0f}}/{{task.total:,.0f}} env steps per run x {runs} "
                   f"run{plural}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("IQM return {task.fields[iqm]}"),
        TimeRemainingColumn(),
        TextColumn("left"),
        console=Console(file=stream),
    )
    task = bar.add_task(label, total=total_steps, completed=done_steps, rate="", iqm="-")
    bar.start()
    return bar, task


class Progress:
    """A run's progress: env steps per run done / total, the run count, steps/s, IQM return
    and time left; a rich bar on a live stream, else a plain line per `update`.

    Args:
        label: what runs (the env id).
        num_updates: updates per run in total.
        batch_size: env steps per update, per run.
        runs: runs trained in parallel.
        done_updates: updates already done (a resumed run).
        stream: where to show it (default: stdout).
        live: a live bar (True) or plain lines (False); default: whether ``stream`` is a
            terminal or a notebook.
    """

    def __init__(self, label: str, num_updates: int, batch_size: int, runs: int,
                 done_updates: int = 0, *, stream: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.label, self.total, self.batch, self.runs = label, num_updates, batch_size, runs
        self.first, self.start = done_updates, time.perf_counter()
        self.bar: Any = None
        if _is_live(self.stream) if live is None else live:
            self.bar, self.task = _rich_bar(label, num_updates * batch_size,
                                            done_updates * batch_size, runs, self.stream)

    def update(self, done_updates: int, steps_per_s: float, iqm: float) -> None:
        """Show ``done_updates`` done, at ``steps_per_s`` env steps/s over all runs."""
        iqm_text = "-" if math.isnan(iqm) else f"{iqm:.1f}"
        if self.bar is not None:
            self.bar.update(self.task, completed=done_updates * self.batch,
                            rate=_rate(steps_per_s, self.runs), iqm=iqm_text)
            return
        ran = done_updates - self.first
        # From the wall clock since the first chunk began: host work between chunks counts.
        left = (time.perf_counter() - self.start) / ran * (self.total - done_updates) if (
            ran > 0) else float("nan")
        line = Line(self.label, (done_updates, self.total), self.batch, self.runs, steps_per_s,
                    iqm, left)
        print(line.text(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@dataclasses.dataclass
class InterruptFlag:
    """Set by the first Ctrl-C inside `interrupt_flag`; the runner checks it after each chunk."""

    requested: bool = False


@contextlib.contextmanager
def interrupt_flag() -> Iterator[InterruptFlag]:
    """Ctrl-C sets the flag (checked after each chunk); a second Ctrl-C interrupts at once.

    Outside the main thread Ctrl-C keeps its default behaviour. The previous handler is put
    back on leaving, and by the second Ctrl-C.
    """
    flag = InterruptFlag()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag.requested:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag.requested = True
        # A compile can take minutes before the flag is read: say that it was heard.
        with contextlib.suppress(Exception):  # stderr may be mid-write in the main thread
            print("\nCtrl-C: stopping after the chunk (or the compile) running, with a "
                  "checkpoint; press it again to stop at once", file=sys.stderr, flush=True)

    try:
        signal.signal(signal.SIGINT, handler)
        installed = True
    except ValueError:  # not in the main thread
        installed = False
    try:
        yield flag
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)
