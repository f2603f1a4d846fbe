"""Plots: smoothing against a loop, the IQM band, PNGs written without touching pyplot."""

import sys

import numpy as np

from jaxppo import plots, stats


def test_smoothed_matches_loop():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(3, 25))
    r[rng.random(r.shape) < 0.3] = np.nan
    r[1, :4] = np.nan
    got = plots.smoothed(r, window=4)
    for i in range(3):
        for u in range(25):
            chunk = r[i, max(0, u - 3) : u + 1]
            chunk = chunk[~np.isnan(chunk)]
            if chunk.size:
                np.testing.assert_allclose(got[i, u], chunk.mean(), rtol=1e-12)
            else:
                assert np.isnan(got[i, u])


def test_iqm_band():
    values = np.tile(np.array([[1.0], [2.0], [3.0], [4.0]]), (1, 3))
    values[:, 1] = 5.0  # identical runs: a zero-width band
    values[:, 2] = np.nan  # no data: NaN
    center, low, high = plots.iqm_band(values, reps=200)
    assert center[0] == stats.iqm([1, 2, 3, 4]) == 2.5
    assert low[0] <= 2.5 <= high[0] and low[0] < high[0]
    assert center[1] == low[1] == high[1] == 5.0
    assert np.isnan(center[2]) and np.isnan(low[2])


def test_pngs_written_without_pyplot(tmp_path):
    sys.modules.pop("matplotlib.pyplot", None)
    rng = np.random.default_rng(0)
    paths = [
        plots.learning_curves(np.arange(1, 31) * 512, rng.normal(size=(2, 4, 30)), ["a", "b"],
                              "curves", tmp_path / "lc.png"),
        plots.sweep_plot({"learning_rate": [1e-3, 1e-3, 3e-4, 3e-4],
                          "clip_eps": [0.1, 0.2, 0.1, 0.2]}, rng.normal(size=(4, 5)), "heat",
                         tmp_path / "heat.png"),
        plots.sweep_plot({"learning_rate": [1e-3, 3e-4, 1e-4]}, rng.normal(size=(3, 5)),
                         "bars", tmp_path / "bars.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A notebook's inline backend survives: the figures never went through pyplot.
    assert "matplotlib.pyplot" not in sys.modules
