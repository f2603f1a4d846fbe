"""Summaries of training results across seeds (host-side numpy, outside jit).

Aggregation follows rliable (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"): the interquartile mean (IQM) across runs is the headline number, robust to a few
outlier seeds yet less noisy than the median, reported with a stratified-bootstrap confidence
interval. Scores are [runs] (one task) or [runs, tasks] (normalized scores); every aggregate
pools all runs x tasks, as rliable does.

Reliability follows Chan et al. 2020, "Measuring the Reliability of Reinforcement Learning
Algorithms": dispersion (interquartile range, IQR) and risk (conditional value at risk, CVaR)
across runs and within runs, on learning curves [runs, points].

NaN in learning curves marks a point without data (no episode finished yet, say). Each run is
forward-filled: a missing point takes the run's last observed value. Leading NaN (before a run's
first observation) stay NaN and are dropped: within-run metrics start at the first observed
point, and across-run metrics at a point use only the runs that have data there. A run with no
data at all is refused. Scores and final scores must not contain NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt


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


# --- Input checks --------------------------------------------------------------------------------


def _scores(scores: npt.ArrayLike, name: str = "scores") -> np.ndarray:
    """``scores`` as float64 [runs] or [runs, tasks]; refuses empty, other ranks and NaN."""
    x = np.asarray(scores, np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must be [runs] or [runs, tasks], got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} must be non-empty, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"{name} must not contain NaN, got {x!r}")
    return x


def _alpha(alpha: float) -> float:
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    return float(alpha)


def _window(window: int, name: str) -> int:
    if int(window) != window or window < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {window!r}")
    return int(window)


def _confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def _tail_count(n: int, alpha: float) -> int:
    """Size of the alpha tail of n values: ceil(alpha * n), at least 1.

    alpha * n is rounded to 9 decimals first, so float error cannot push an exact product up
    (0.28 * 25 = 7.000000000000001 counts 7 values, not 8).
    """
    return max(1, math.ceil(round(alpha * n, 9)))


# --- Aggregates over runs (rliable) --------------------------------------------------------------


def median(scores: npt.ArrayLike) -> float:
    """Median of all scores [runs] or [runs, tasks], pooled over runs x tasks.

    Raises:
        ValueError: for an empty input, a rank other than 1 or 2, or NaN.
    """
    return float(np.median(_scores(scores)))


def mean(scores: npt.ArrayLike) -> float:
    """Mean of all scores [runs] or [runs, tasks], pooled over runs x tasks.

    Raises:
        ValueError: for an empty input, a rank other than 1 or 2, or NaN.
    """
    return float(np.mean(_scores(scores)))


def optimality_gap(scores: npt.ArrayLike, threshold: float) -> float:
    """Optimality gap: how far scores fall short of ``threshold``, on average.

    gap = mean over runs x tasks of max(threshold - score, 0). Scores above the threshold count
    as 0, so exceeding it on one task cannot make up for a shortfall on another. Lower is better;
    rliable uses threshold 1 for normalized scores.

    Args:
        scores: [runs] or [runs, tasks].
        threshold: the score that counts as solved.

    Raises:
        ValueError: for an empty input, a rank other than 1 or 2, or NaN.
    """
    x = _scores(scores)
    return float(np.mean(np.maximum(threshold - x, 0.0)))


def stratified_resample(scores: npt.ArrayLike, reps: int, seed: int = 0) -> np.ndarray:
    """Stratified bootstrap resamples: each task's runs are resampled with replacement, alone.

    The run indices are drawn as ``np.random.default_rng(seed).integers(0, runs,
    size=(reps, runs, tasks))`` and resample[r, i, t] = scores[index[r, i, t], t]: a resample
    never moves a score from one task to another.

    Args:
        scores: [runs] (one task) or [runs, tasks].
        reps: number of resamples, >= 1.
        seed: seed of the numpy Generator; the same seed gives the same resamples.

    Returns:
        An array [reps, *scores.shape].

    Raises:
        ValueError: for bad scores (see ``median``) or reps < 1.
    """
    x = _scores(scores)
    reps = _window(reps, "reps")
    matrix = x.reshape(x.shape[0], -1)
    runs, tasks = matrix.shape
    index = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))
    resampled = matrix[index, np.arange(tasks)]
    return resampled.reshape((reps, *x.shape))


def bootstrap_ci(
    scores: npt.ArrayLike,
    statistic: Callable[[np.ndarray], float],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified-bootstrap percentile confidence interval of ``statistic(scores)``.

    The statistic is applied to each of ``reps`` resamples from ``stratified_resample`` (same
    shape as ``scores``); the interval is the (1 - confidence) / 2 and (1 + confidence) / 2
    percentiles of those values (numpy's linear interpolation).

    Args:
        scores: [runs] (one task) or [runs, tasks].
        statistic: maps an array shaped like ``scores`` to a float (``iqm``, ``mean``, ...).
        reps: number of bootstrap resamples, >= 1.
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the numpy Generator; the same seed gives the same interval.

    Returns:
        (low, high).

    Raises:
        ValueError: for bad scores, reps < 1 or confidence outside (0, 1).
    """
    confidence = _confidence(confidence)
    resamples = stratified_resample(scores, reps, seed)
    values = np.array([statistic(sample) for sample in resamples], np.float64)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def aggregate(
    scores: npt.ArrayLike,
    threshold: float | None = None,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """The rliable report: IQM, median and mean (and optimality gap) with bootstrap intervals.

    Args:
        scores: [runs] (one task) or [runs, tasks].
        threshold: if given, the optimality gap against it is reported too.
        reps, confidence, seed: as in ``bootstrap_ci`` (one seed, so every aggregate's
            interval uses the same resamples).

    Returns:
        {"iqm" | "median" | "mean" [| "optimality_gap"]: {"value", "ci_low", "ci_high"}}.

    Raises:
        ValueError: for bad scores, reps < 1 or confidence outside (0, 1).
    """
    x = _scores(scores)
    statistics: dict[str, Callable[[np.ndarray], float]] = {
        "iqm": iqm,
        "median": median,
        "mean": mean,
    }
    if threshold is not None:
        statistics["optimality_gap"] = lambda s: optimality_gap(s, threshold)
    report = {}
    for name, statistic in statistics.items():
        low, high = bootstrap_ci(x, statistic, reps, confidence, seed)
        report[name] = {"value": statistic(x), "ci_low": low, "ci_high": high}
    return report


def format_ci(entry: dict[str, float], digits: int = 1) -> str:
    """One ``aggregate`` entry as text: "412.3 [348.7, 435.5]" (value [ci_low, ci_high])."""
    if int(digits) != digits or digits < 0:
        raise ValueError(f"digits must be an integer >= 0, got {digits!r}")
    value, low, high = entry["value"], entry["ci_low"], entry["ci_high"]
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


# --- Reliability of learning curves (Chan et al. 2020) -------------------------------------------


def _curves(curves: npt.ArrayLike) -> np.ndarray:
    """``curves`` [runs, points] as float64, forward-filled within each run (leading NaN kept).

    Raises:
        ValueError: for a rank other than 2, no runs or points, or a run without any data.
    """
    x = np.asarray(curves, np.float64)
    if x.ndim != 2:
        raise ValueError(f"curves must be [runs, points], got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"curves must be non-empty, got shape {x.shape}")
    empty = np.isnan(x).all(axis=1)
    if empty.any():
        raise ValueError(f"curves has runs without any data (all NaN): {np.flatnonzero(empty)}")
    # Index of the last observed point so far; before the first observation it is 0, which is
    # itself NaN there, so leading NaN stay NaN.
    last_seen = np.where(np.isnan(x), 0, np.arange(x.shape[1]))
    last_seen = np.maximum.accumulate(last_seen, axis=1)
    return np.take_along_axis(x, last_seen, axis=1)


def _observed(run: np.ndarray) -> np.ndarray:
    """A forward-filled run [points] without its leading NaN."""
    return run[np.argmax(~np.isnan(run)) :]


def _iqr(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile range P75 - P25 (numpy's linear interpolation, as ``scipy.stats.iqr``)."""
    q25, q75 = np.percentile(x, [25.0, 75.0], axis=axis)
    return q75 - q25


def _iqr_ignoring_nan(x: np.ndarray) -> np.ndarray:
    """IQR along axis 0 of x [runs, points], each point over its non-NaN runs."""
    q25, q75 = np.nanpercentile(x, [25.0, 75.0], axis=0)
    return q75 - q25


def _nanmean(x: np.ndarray) -> float:
    """Mean of the non-NaN values of x; NaN (without a warning) if there are none."""
    kept = x[~np.isnan(x)]
    return float(kept.mean()) if kept.size else float("nan")


def _trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values up to each point of x [n] (fewer at the start)."""
    total = np.concatenate([[0.0], np.cumsum(x)])
    end = np.arange(1, x.size + 1)
    start = np.maximum(end - window, 0)
    return (total[end] - total[start]) / (end - start)


@dataclasses.dataclass(frozen=True)
class DispersionAcrossRuns:
    """Result of ``dispersion_across_runs``.

    Attributes:
        per_point: [points] IQR across runs per point; NaN where no run has data yet.
        mean: mean of ``per_point`` over the points with data, the single number compared.
    """

    per_point: np.ndarray
    mean: float


def dispersion_across_runs(curves: npt.ArrayLike, smoothing_window: int) -> DispersionAcrossRuns:
    """Dispersion across runs: per point, the IQR across runs of the low-pass-filtered curves.

    Each run is smoothed by a trailing mean, smooth[t] = mean(curve[t - w + 1 .. t]) with
    w = ``smoothing_window`` (over the run's observed points, so fewer than w at its start);
    then IQR_t = P75 - P25 across the runs with data at point t. Higher means less reliable.

    Args:
        curves: [runs, points]; NaN as in the module docstring.
        smoothing_window: w >= 1 (1: no smoothing).

    Returns:
        ``per_point`` [points] (NaN where no run has data yet) and ``mean``, the mean over the
        points with data: the single number Chan et al. compare.

    Raises:
        ValueError: for bad curves (see ``_curves``) or smoothing_window < 1.
    """
    x = _curves(curves)
    w = _window(smoothing_window, "smoothing_window")
    smooth = np.full_like(x, np.nan)
    for i, run in enumerate(x):
        observed = _observed(run)
        smooth[i, run.size - observed.size :] = _trailing_mean(observed, w)
    per_point = np.full(x.shape[1], np.nan)
    has_data = ~np.isnan(smooth).all(axis=0)
    per_point[has_data] = _iqr_ignoring_nan(smooth[:, has_data])
    return DispersionAcrossRuns(per_point=per_point, mean=_nanmean(per_point))


def dispersion_within_runs(curves: npt.ArrayLike, window: int) -> np.ndarray:
    """Dispersion within runs: per run, the mean IQR of its detrended curve in sliding windows.

    The curve is detrended by first differences, d[t] = curve[t + 1] - curve[t] (over the run's
    observed points). The IQR is taken in every window of ``window`` consecutive differences
    (stride 1), and the run's value is the mean of these IQRs. A run with fewer than ``window``
    differences uses one window holding all of them; a run with a single observed point has no
    differences and gets NaN. Higher means a noisier run.

    Args:
        curves: [runs, points]; NaN as in the module docstring.
        window: number of differences per window, >= 1 (1 gives IQR 0 everywhere).

    Returns:
        An array [runs].

    Raises:
        ValueError: for bad curves (see ``_curves``) or window < 1.
    """
    x = _curves(curves)
    w = _window(window, "window")
    result = np.full(x.shape[0], np.nan)
    for i, run in enumerate(x):
        diffs = np.diff(_observed(run))
        if diffs.size == 0:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(diffs, min(w, diffs.size))
        result[i] = _iqr(windows, axis=-1).mean()
    return result


def risk_across_runs(final_scores: npt.ArrayLike, alpha: float = 0.05) -> float:
    """Risk across runs: CVaR of the final scores, the mean of the worst alpha tail.

    With n runs, the k = max(1, ceil(alpha * n)) lowest final scores are averaged (alpha * n is
    rounded to 9 decimals before the ceiling, so 0.28 * 25 gives k = 7). Higher is better: it is
    the expected score of a bad run.

    Args:
        final_scores: [runs], without NaN.
        alpha: tail fraction in (0, 1]; alpha = 1 gives the mean.

    Raises:
        ValueError: for an empty input, a rank other than 1, NaN, or alpha outside (0, 1].
    """
    x = np.asarray(final_scores, np.float64)
    if x.ndim != 1:
        raise ValueError(f"final_scores must be [runs], got shape {x.shape}")
    x = _scores(x, "final_scores")
    k = _tail_count(x.size, _alpha(alpha))
    return float(np.sort(x)[:k].mean())


def drawdowns(curve: npt.ArrayLike) -> np.ndarray:
    """Drawdown per point of one learning curve [points]: peak so far minus the current value.

    drawdown[t] = max(curve[0 .. t]) - curve[t] >= 0, zero at every new peak. NaN points are
    forward-filled first; leading NaN give NaN.

    Raises:
        ValueError: for a rank other than 1, no points, or no data at all.
    """
    x = np.asarray(curve, np.float64)
    if x.ndim != 1:
        raise ValueError(f"curve must be [points], got shape {x.shape}")
    filled = _curves(x[None])[0]
    # fmax skips the leading NaN, so the peak starts at the first observed value.
    return np.fmax.accumulate(filled) - filled


def risk_within_runs(curves: npt.ArrayLike, alpha: float = 0.05) -> np.ndarray:
    """Risk within runs: per run, CVaR of its drawdowns, the mean of the worst alpha tail.

    With n observed points in a run, the k = max(1, ceil(alpha * n)) largest drawdowns are
    averaged (rounding as in ``risk_across_runs``). Lower is better: the expected loss from the
    best value so far in a bad stretch of training.

    Args:
        curves: [runs, points]; NaN as in the module docstring.
        alpha: tail fraction in (0, 1].

    Returns:
        An array [runs].

    Raises:
        ValueError: for bad curves (see ``_curves``) or alpha outside (0, 1].
    """
    x = _curves(curves)
    alpha = _alpha(alpha)
    result = np.empty(x.shape[0])
    for i, run in enumerate(x):
        down = drawdowns(_observed(run))
        k = _tail_count(down.size, alpha)
        result[i] = np.sort(down)[-k:].mean()
    return result


def reliability(
    curves: npt.ArrayLike,
    final_scores: npt.ArrayLike,
    *,
    smoothing_window: int,
    window: int,
    alpha: float = 0.05,
) -> dict[str, float]:
    """The four reliability metrics of Chan et al. 2020, one number each.

    Args:
        curves: learning curves [runs, points]; NaN as in the module docstring.
        final_scores: [runs], e.g. from ``final_returns``.
        smoothing_window: for ``dispersion_across_runs``.
        window: for ``dispersion_within_runs``.
        alpha: tail fraction for both risks.

    Returns:
        {"dispersion_across_runs": mean over points of the per-point IQR (lower is better),
         "dispersion_within_runs": mean over runs (NaN runs skipped; lower is better),
         "risk_across_runs": CVaR of final scores (higher is better),
         "risk_within_runs": mean over runs of the drawdown CVaR (lower is better)}.

    Raises:
        ValueError: as the individual metrics.
    """
    within = dispersion_within_runs(curves, window)
    return {
        "dispersion_across_runs": dispersion_across_runs(curves, smoothing_window).mean,
        "dispersion_within_runs": _nanmean(within),
        "risk_across_runs": risk_across_runs(final_scores, alpha),
        "risk_within_runs": float(risk_within_runs(curves, alpha).mean()),
    }
