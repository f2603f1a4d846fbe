"""Summaries of training results across seeds (host-side numpy, outside jit).

Aggregation follows rliable (Agarwal et al. 2021): the interquartile mean (IQM) across runs is
the headline number, robust to a few outlier seeds yet less noisy than the median.
"""

from __future__ import annotations

import numpy as np


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% of the values.

    With n sorted values, int(n / 4) are dropped from each end, as
    ``scipy.stats.trim_mean(values, 0.25)`` does (rliable's IQM).

    Raises:
        ValueError: for an empty input or one with NaN.
    """
    x = np.sort(np.asarray(values, np.float64).ravel())
    if x.size == 0 or np.isnan(x).any():
        raise ValueError(f"iqm needs a non-empty array without NaN, got {x!r}")
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def final_returns(episode_return, window: int = 10) -> np.ndarray:
    """Per-run final training return: the mean over the last ``window`` updates of
    ``Metrics.episode_return`` [..., num_updates], skipping updates where no episode ended.

    Returns:
        An array [...] (one value per run); NaN for a run with no finished episode in the window.
    """
    r = np.asarray(episode_return, np.float64)
    tail = r[..., -window:]
    finished = ~np.isnan(tail)
    total = np.where(finished, tail, 0.0).sum(axis=-1)
    count = finished.sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
