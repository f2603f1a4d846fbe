"""Aggregates across seeds (jaxppo.stats)."""

import warnings

import numpy as np
import pytest

from jaxppo import stats


def test_iqm_known_values():
    # 8 values: drop int(8 / 4) = 2 from each end, mean of 3, 4, 5, 6 = 4.5.
    assert stats.iqm([8, 1, 2, 7, 3, 4, 5, 6]) == 4.5
    # 5 values: drop 1 from each end, mean of 2, 3, 100 = 35.
    assert stats.iqm([1, 2, 3, 100, 1000]) == 35.0
    assert stats.iqm([7.0]) == 7.0


def test_iqm_drops_the_floor_of_a_quarter_from_each_end():
    # 7 values: int(7 / 4) = 1 dropped from each end (rounding 1.75 would drop 2, leaving
    # 3, 4, 5 -> 4): mean of 2, 3, 4, 5, 60 = 74 / 5 = 14.8.
    assert stats.iqm([100, 1, 60, 2, 3, 4, 5]) == pytest.approx(14.8, rel=1e-15)
    # 6 values: int(1.5) = 1 from each end: mean of 2, 3, 4, 50 = 59 / 4.
    assert stats.iqm([1, 2, 3, 4, 50, 600]) == 59 / 4
    # 3 values: int(0.75) = 0, nothing dropped: the plain mean 11 / 3.
    assert stats.iqm([1, 2, 8]) == pytest.approx(11 / 3, rel=1e-15)


def _loop_iqm(values):
    """Plain reference of scipy.stats.trim_mean(values, 0.25): sort, drop n // 4 from each
    end, average the rest by a loop."""
    x = sorted(float(v) for v in values)
    cut = len(x) // 4
    kept = x[cut:len(x) - cut]
    total = 0.0
    for v in kept:
        total += v
    return total / len(kept)


def test_iqm_matches_the_plain_reference_for_every_size():
    rng = np.random.default_rng(9)
    for n in range(1, 21):  # every remainder of n / 4, where int and round part ways
        values = rng.normal(size=n) * 10.0 ** rng.integers(0, 3, size=n)
        assert stats.iqm(values) == pytest.approx(_loop_iqm(values), rel=1e-12, abs=1e-12), n


def test_iqm_refuses_empty_and_nan():
    with pytest.raises(ValueError, match="non-empty"):
        stats.iqm([])
    with pytest.raises(ValueError, match="without NaN"):
        stats.iqm([1.0, np.nan])


def test_final_returns_skip_updates_without_episodes():
    returns = np.array([[1.0, np.nan, 3.0, 5.0], [np.nan, np.nan, np.nan, np.nan]])
    final = stats.final_returns(returns, window=3)
    np.testing.assert_allclose(final[0], 4.0)  # mean of 3 and 5; the NaN update is skipped
    assert np.isnan(final[1])


# --- Aggregates over runs ------------------------------------------------------------------------


def test_median_mean_iqm_pool_runs_and_tasks():
    scores = np.array([[1.0, 2.0], [3.0, 10.0]])  # [runs=2, tasks=2]
    # Pooled values 1, 2, 3, 10: median (2 + 3) / 2 = 2.5, mean 16 / 4 = 4.
    assert stats.median(scores) == 2.5
    assert stats.mean(scores) == 4.0
    # IQM drops int(4 / 4) = 1 from each end: mean of 2 and 3.
    assert stats.iqm(scores) == 2.5
    assert stats.median([4.0, 1.0, 7.0]) == 4.0


def test_optimality_gap_known_values():
    # Gaps below threshold 1: 0.8, 0.1, 0, 0 (1.5 above the threshold counts 0, not -0.5).
    np.testing.assert_allclose(stats.optimality_gap([0.2, 0.9, 1.0, 1.5], 1.0), 0.9 / 4)
    # [runs=2, tasks=2] against 10: gaps 10, 0, 4, 2 -> 16 / 4.
    assert stats.optimality_gap([[0.0, 12.0], [6.0, 8.0]], threshold=10.0) == 4.0


def _loop_resample(scores, reps, seed):
    """Plain-loop stratified resampling with the documented draw."""
    matrix = scores.reshape(scores.shape[0], -1)
    runs, tasks = matrix.shape
    index = np.random.default_rng(seed).integers(0, runs, size=(reps, runs, tasks))
    out = np.empty((reps, runs, tasks))
    for r in range(reps):
        for i in range(runs):
            for t in range(tasks):
                out[r, i, t] = matrix[index[r, i, t], t]
    return out.reshape((reps, *scores.shape))


@pytest.mark.parametrize("shape", [(5, 3), (7,), (4, 1)])
def test_stratified_resample_matches_loop_reference(shape):
    scores = np.random.default_rng(1).normal(size=shape)
    resamples = stats.stratified_resample(scores, reps=40, seed=3)
    assert resamples.shape == (40, *shape)
    np.testing.assert_array_equal(resamples, _loop_resample(scores, 40, 3))


def test_stratified_resample_stays_within_task():
    rng = np.random.default_rng(0)
    # Task 0 scores in [0, 1), task 1 in [10, 11): a resample mixing tasks would leave the range.
    scores = np.stack([rng.uniform(0, 1, 6), rng.uniform(10, 11, 6)], axis=1)
    resamples = stats.stratified_resample(scores, reps=500, seed=0)
    task_means = resamples.mean(axis=1)  # [reps, tasks]
    assert np.all((task_means[:, 0] >= 0) & (task_means[:, 0] < 1))
    assert np.all((task_means[:, 1] >= 10) & (task_means[:, 1] < 11))
    for t in range(2):
        assert np.isin(resamples[:, :, t], scores[:, t]).all()
    # Every task keeps its run count, so each pooled mean is the average of the two task means.
    np.testing.assert_allclose(resamples.mean(axis=(1, 2)), task_means.mean(axis=1))


def test_bootstrap_ci_zero_width_for_identical_runs():
    assert stats.bootstrap_ci([3.0, 3.0, 3.0, 3.0], stats.mean, reps=200) == (3.0, 3.0)
    # Task 0 has identical runs, task 1 does not: only task 1's statistic varies.
    scores = np.array([[2.0, 0.0], [2.0, 5.0], [2.0, 9.0]])
    low, high = stats.bootstrap_ci(scores, lambda s: s[:, 0].mean(), reps=200)
    assert (low, high) == (2.0, 2.0)
    low, high = stats.bootstrap_ci(scores, lambda s: s[:, 1].mean(), reps=200)
    assert high - low > 1.0


def test_bootstrap_ci_contains_point_estimate_for_symmetric_sample():
    scores = np.arange(-5.0, 6.0)  # symmetric around 0: mean, median and IQM are 0
    for statistic in (stats.mean, stats.median, stats.iqm):
        low, high = stats.bootstrap_ci(scores, statistic, reps=500)
        assert low < statistic(scores) == 0.0 < high
        # Roughly symmetric too (same order of magnitude on both sides).
        assert 0.5 < -low / high < 2.0


def test_bootstrap_ci_is_the_percentile_interval_and_deterministic():
    scores = np.random.default_rng(2).normal(size=(8, 3))
    values = [stats.iqm(s) for s in stats.stratified_resample(scores, reps=300, seed=7)]
    expected = np.percentile(values, [5.0, 95.0])  # confidence 0.9: 5th and 95th percentiles
    ci = stats.bootstrap_ci(scores, stats.iqm, reps=300, confidence=0.9, seed=7)
    np.testing.assert_allclose(ci, expected)
    assert stats.bootstrap_ci(scores, stats.iqm, reps=300, confidence=0.9, seed=7) == ci
    assert stats.bootstrap_ci(scores, stats.iqm, reps=300, confidence=0.9, seed=8) != ci
    narrow = stats.bootstrap_ci(scores, stats.iqm, reps=300, confidence=0.5, seed=7)
    assert ci[0] < narrow[0] < narrow[1] < ci[1]


def test_aggregate_reports_every_statistic_with_its_interval():
    scores = np.random.default_rng(4).uniform(size=(6, 2))
    report = stats.aggregate(scores, reps=100, seed=5)
    assert set(report) == {"iqm", "median", "mean"}
    report = stats.aggregate(scores, threshold=0.8, reps=100, seed=5)
    assert set(report) == {"iqm", "median", "mean", "optimality_gap"}
    statistics = {
        "iqm": stats.iqm,
        "median": stats.median,
        "mean": stats.mean,
        "optimality_gap": lambda s: stats.optimality_gap(s, 0.8),
    }
    for name, statistic in statistics.items():
        low, high = stats.bootstrap_ci(scores, statistic, reps=100, seed=5)
        assert report[name] == {"value": statistic(scores), "ci_low": low, "ci_high": high}


def test_format_ci():
    entry = {"value": 412.34, "ci_low": 348.66, "ci_high": 435.51}
    assert stats.format_ci(entry) == "412.3 [348.7, 435.5]"
    assert stats.format_ci(entry, digits=0) == "412 [349, 436]"


# --- Reliability ---------------------------------------------------------------------------------


def test_dispersion_across_runs_known_values():
    curves = np.array([[1.0, 3.0, 5.0], [2.0, 2.0, 2.0], [4.0, 0.0, 6.0]])
    # IQR of 3 sorted values a <= b <= c (linear interpolation): P25 = (a + b) / 2,
    # P75 = (b + c) / 2, so IQR = (c - a) / 2.
    # No smoothing: point 0 {1, 2, 4} -> 1.5; point 1 {0, 2, 3} -> 1.5; point 2 {2, 5, 6} -> 2.
    result = stats.dispersion_across_runs(curves, smoothing_window=1)
    np.testing.assert_allclose(result.per_point, [1.5, 1.5, 2.0])
    np.testing.assert_allclose(result.mean, 5.0 / 3.0)
    # Trailing mean of 2: run 0 -> 1, 2, 4; run 1 -> 2, 2, 2; run 2 -> 4, 2, 3.
    # Point 0 {1, 2, 4} -> 1.5; point 1 {2, 2, 2} -> 0; point 2 {2, 3, 4} -> 1.
    result = stats.dispersion_across_runs(curves, smoothing_window=2)
    np.testing.assert_allclose(result.per_point, [1.5, 0.0, 1.0])
    np.testing.assert_allclose(result.mean, 2.5 / 3.0)


def test_dispersion_across_runs_nan_handling():
    # Forward-filled: run 0 -> NaN, 1, 1, 3. IQR of two values {a, b} is |b - a| / 2.
    # Point 0: run 1 alone -> 0; point 1 {1, 4} -> 1.5; point 2 {1, 6} -> 2.5;
    # point 3 {3, 8} -> 2.5.
    curves = np.array([[np.nan, 1.0, np.nan, 3.0], [2.0, 4.0, 6.0, 8.0]])
    result = stats.dispersion_across_runs(curves, smoothing_window=1)
    np.testing.assert_allclose(result.per_point, [0.0, 1.5, 2.5, 2.5])
    # No run has data at point 0: NaN there (without an all-NaN warning), and the mean is over
    # point 1 alone ({1, 2} -> 0.5).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = stats.dispersion_across_runs([[np.nan, 1.0], [np.nan, 2.0]], smoothing_window=3)
    assert np.isnan(result.per_point[0])
    assert result.mean == 0.5


def test_dispersion_within_runs_known_values():
    curves = np.array([[0.0, 1.0, 3.0, 6.0, 10.0, 9.0], [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]])
    # Run 0 differences 1, 2, 3, 4, -1; windows of 3: {1, 2, 3} -> IQR 1, {2, 3, 4} -> 1,
    # {-1, 3, 4} -> (3 + 4) / 2 - (-1 + 3) / 2 = 2.5; mean 4.5 / 3 = 1.5.
    # Run 1 is a straight line: constant differences, IQR 0 (the trend is removed).
    np.testing.assert_allclose(stats.dispersion_within_runs(curves, window=3), [1.5, 0.0])
    # Window longer than the 2 differences {1, 2}: one window -> 0.5.
    # Forward fill 1, NaN, 4 -> 1, 1, 4: differences {0, 3} -> 1.5.
    # One observed point: no differences -> NaN.
    curves = np.array([[0.0, 1.0, 3.0], [1.0, np.nan, 4.0], [np.nan, np.nan, 5.0]])
    np.testing.assert_allclose(stats.dispersion_within_runs(curves, window=5), [0.5, 1.5, np.nan])


def test_risk_across_runs_known_values():
    scores = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert stats.risk_across_runs(scores, alpha=0.4) == 1.5  # ceil(0.4 * 5) = 2: mean of 1, 2
    assert stats.risk_across_runs(scores, alpha=0.3) == 1.5  # ceil(1.5) = 2
    assert stats.risk_across_runs(scores, alpha=0.05) == 1.0  # ceil(0.25) = 1: the worst run
    assert stats.risk_across_runs(scores, alpha=1.0) == 3.0  # all runs: the mean
    assert stats.risk_across_runs(scores, alpha=1e-12) == 1.0  # at least 1 run
    # 0.28 * 25 = 7.000000000000001 in floats; the tail is still 7 runs: mean of 0 .. 6 = 3.
    assert stats.risk_across_runs(np.arange(25.0), alpha=0.28) == 3.0


def test_drawdowns_known_values():
    # Peaks so far 1, 3, 3, 5, 5, 5, 6.
    np.testing.assert_array_equal(
        stats.drawdowns([1.0, 3.0, 2.0, 5.0, 4.0, 4.0, 6.0]), [0, 0, 1, 0, 1, 1, 0]
    )
    # Filled: NaN, 2, 2, 1; the leading NaN stays NaN.
    np.testing.assert_array_equal(stats.drawdowns([np.nan, 2.0, np.nan, 1.0]), [np.nan, 0, 0, 1])


def test_risk_within_runs_known_values():
    curves = np.array([[1.0, 3.0, 2.0, 5.0, 4.0, 4.0, 6.0], [0.0, 4.0, 1.0, 2.0, 3.0, 0.0, 0.0]])
    # Drawdowns: run 0 -> 0, 0, 1, 0, 1, 1, 0; run 1 (peak 4 from point 1) -> 0, 0, 3, 2, 1, 4, 4.
    # alpha 0.3: ceil(0.3 * 7) = 3 largest -> run 0 (1 + 1 + 1) / 3, run 1 (4 + 4 + 3) / 3.
    np.testing.assert_allclose(stats.risk_within_runs(curves, alpha=0.3), [1.0, 11.0 / 3.0])
    # alpha 0.05: ceil(0.35) = 1, the largest drawdown.
    np.testing.assert_allclose(stats.risk_within_runs(curves, alpha=0.05), [1.0, 4.0])
    # Leading NaN are dropped: 3 observed points 2, 0, 1 -> drawdowns 0, 2, 1; alpha 0.5 -> 2 of 3.
    curves = np.array([[np.nan, 2.0, 0.0, 1.0]])
    np.testing.assert_allclose(stats.risk_within_runs(curves, alpha=0.5), [1.5])


def test_reliability_bundles_the_metrics():
    rng = np.random.default_rng(6)
    curves = np.cumsum(rng.normal(size=(5, 20)), axis=1)
    final = curves[:, -3:].mean(axis=1)
    report = stats.reliability(curves, final, smoothing_window=3, window=4, alpha=0.2)
    assert report == {
        "dispersion_across_runs": stats.dispersion_across_runs(curves, 3).mean,
        "dispersion_within_runs": float(stats.dispersion_within_runs(curves, 4).mean()),
        "risk_across_runs": stats.risk_across_runs(final, 0.2),
        "risk_within_runs": float(stats.risk_within_runs(curves, 0.2).mean()),
    }


def test_reliability_skips_runs_without_within_run_dispersion():
    # Run 1 has one observed point (leading NaN dropped): no differences, so its within-run
    # dispersion is NaN, and the report averages over run 0 alone. Run 0: differences 1, 2,
    # one window of 2 -> IQR (1.75 - 1.25) = 0.5.
    curves = np.array([[0.0, 1.0, 3.0], [np.nan, np.nan, 5.0]])
    np.testing.assert_array_equal(stats.dispersion_within_runs(curves, window=2), [0.5, np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" either
        report = stats.reliability(curves, [3.0, 5.0], smoothing_window=1, window=2, alpha=0.5)
    # Across runs (no smoothing): points 0 and 1 hold run 0 alone -> IQR 0; point 2 {3, 5} ->
    # 1: mean 1 / 3. Risk across runs: ceil(0.5 x 2) = 1 worst final score, 3. Drawdowns:
    # run 0 rises (0, 0, 0), run 1 has a single point (0): mean 0.
    assert report == {
        "dispersion_across_runs": pytest.approx(1.0 / 3.0, rel=1e-15),
        "dispersion_within_runs": 0.5,
        "risk_across_runs": 3.0,
        "risk_within_runs": 0.0,
    }


# --- Bad input -----------------------------------------------------------------------------------

_CURVES = np.ones((2, 4))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: stats.mean([]), r"scores must be non-empty, got shape \(0,\)"),
        (lambda: stats.median(np.ones((2, 2, 2))), r"\[runs, tasks\], got shape \(2, 2, 2\)"),
        (lambda: stats.optimality_gap([1.0, np.nan], 1.0), "must not contain NaN"),
        (lambda: stats.bootstrap_ci([1.0], stats.mean, confidence=1.0), r"\(0, 1\), got 1.0"),
        (lambda: stats.bootstrap_ci([1.0], stats.mean, confidence=0), r"\(0, 1\), got 0"),
        (lambda: stats.bootstrap_ci([1.0], stats.mean, reps=0), "reps must be .* got 0"),
        (lambda: stats.aggregate([[]]), r"non-empty, got shape \(1, 0\)"),
        (lambda: stats.format_ci({}, digits=-1), "digits must be .* got -1"),
        (lambda: stats.risk_across_runs([1.0], alpha=0.0), r"alpha must be in \(0, 1\], got 0.0"),
        (lambda: stats.risk_across_runs([1.0], alpha=1.5), r"alpha .* got 1.5"),
        (lambda: stats.risk_across_runs([[1.0]]), r"final_scores must be \[runs\]"),
        (lambda: stats.risk_across_runs([]), "final_scores must be non-empty"),
        (lambda: stats.risk_within_runs(_CURVES, alpha=-0.1), r"alpha .* got -0.1"),
        (lambda: stats.dispersion_within_runs(_CURVES, window=0), "window must be .* got 0"),
        (lambda: stats.dispersion_across_runs(_CURVES, 0), "smoothing_window must be .* got 0"),
        (lambda: stats.dispersion_across_runs(np.ones(4), 1), r"points\], got shape \(4,\)"),
        (lambda: stats.dispersion_within_runs(np.ones((0, 4)), 1), "curves must be non-empty"),
        (lambda: stats.risk_within_runs([[1.0, 2.0], [np.nan, np.nan]]), r"all NaN\): \[1\]"),
        (lambda: stats.drawdowns(_CURVES), r"curve must be \[points\], got shape \(2, 4\)"),
    ],
)
def test_bad_input_is_refused_naming_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_aggregate_passes_confidence_and_a_zero_threshold_on():
    scores = np.random.default_rng(8).normal(size=(7, 2))
    report = stats.aggregate(scores, threshold=0.0, reps=200, confidence=0.5, seed=1)
    # threshold=0.0 is a threshold (not "no threshold"): the gap is mean(max(0 - s, 0)).
    assert set(report) == {"iqm", "median", "mean", "optimality_gap"}
    assert report["optimality_gap"]["value"] == pytest.approx(
        np.maximum(-scores, 0.0).mean(), rel=1e-12)
    for name, statistic in (("iqm", stats.iqm), ("mean", stats.mean)):
        # confidence 0.5: the 25th and 75th percentiles of the same 200 resamples, inside the
        # 2.5th and 97.5th ones of the default 0.95.
        values = [statistic(s) for s in stats.stratified_resample(scores, reps=200, seed=1)]
        low, high = np.percentile(values, [25.0, 75.0])
        assert report[name]["ci_low"] == pytest.approx(low, rel=1e-12)
        assert report[name]["ci_high"] == pytest.approx(high, rel=1e-12)
        wide = stats.aggregate(scores, reps=200, seed=1)[name]
        assert wide["ci_low"] < report[name]["ci_low"] < report[name]["ci_high"] < wide["ci_high"]


def test_aggregate_is_json_safe_and_ordered():
    """summary.json holds the report as it is: plain Python floats, ci_low <= ci_high."""
    import json

    scores = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    report = stats.aggregate(scores, threshold=4.0, reps=300, seed=2)
    assert json.loads(json.dumps(report)) == report
    for name, entry in report.items():
        assert list(entry) == ["value", "ci_low", "ci_high"], name
        assert all(type(v) is float for v in entry.values()), name
        assert entry["ci_low"] <= entry["ci_high"], name
    # Sorted 1, 1, 3, 4, 5, 9: IQM drops int(6 / 4) = 1 each end -> (1 + 3 + 4 + 5) / 4 = 3.25;
    # median (3 + 4) / 2 = 3.5; mean 23 / 6; gap to 4: (3 + 3 + 1 + 0 + 0 + 0) / 6 = 7 / 6.
    assert report["iqm"]["value"] == 3.25 and report["median"]["value"] == 3.5
    assert report["mean"]["value"] == pytest.approx(23 / 6, rel=1e-15)
    assert report["optimality_gap"]["value"] == pytest.approx(7 / 6, rel=1e-15)
