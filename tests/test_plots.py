"""Plots: smoothing against a loop, the IQM band, PNGs written without touching pyplot."""

import sys

import numpy as np

from jaxppo import experiment, plots, rundir, stats
from jaxppo import spec as spec_lib


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


def test_iqm_band_has_the_confidence_asked_for():
    # 400 normal runs at one point: the bootstrap IQMs are close to normal, so a central
    # band's width is 2 z sigma, z = 1.96 at 95% and 1.00 at 68.27%: a width ratio of 1.96
    # (a band at 1 - confidence per side would give 1.645 / 0.475 = 3.46).
    values = np.random.default_rng(0).normal(size=(400, 1))
    widths = {}
    for confidence in (0.95, 0.6827):
        _, low, high = plots.iqm_band(values, reps=4000, confidence=confidence)
        widths[confidence] = high[0] - low[0]
    assert 1.7 < widths[0.95] / widths[0.6827] < 2.2


def _captured_axes(monkeypatch):
    """Swap plots._figure for one that keeps the axes it hands out."""
    made = []
    real = plots._figure

    def keep(width, height):
        fig, ax = real(width, height)
        made.append(ax)
        return fig, ax

    monkeypatch.setattr(plots, "_figure", keep)
    return made


def test_heat_map_rows_are_the_first_field_ascending(monkeypatch, tmp_path):
    made = _captured_axes(monkeypatch)
    settings = {"learning_rate": [1e-3, 1e-3, 3e-4, 3e-4], "clip_eps": [0.1, 0.2, 0.1, 0.2]}
    # One seed per setting: its IQM is its return, 1, 2, 3, 4 for settings h = 0..3.
    plots.sweep_plot(settings, [[1.0], [2.0], [3.0], [4.0]], "heat", tmp_path / "heat.png")
    (ax,) = made
    # Rows: learning_rate sorted (3e-4, 1e-3); columns: clip_eps sorted (0.1, 0.2).
    # (3e-4, 0.1) is h = 2 -> 3, (3e-4, 0.2) h = 3 -> 4, (1e-3, 0.1) h = 0 -> 1, (1e-3, 0.2) 2.
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), [[3, 4], [1, 2]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.0003", "0.001"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "0.2"]
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("learning_rate", "clip_eps")


def test_bar_chart_ranks_settings_best_first(monkeypatch, tmp_path):
    made = _captured_axes(monkeypatch)
    settings = {"learning_rate": [1e-3, 3e-4, 1e-4, 3e-5]}
    # One seed each: IQMs 2, 5, 1, NaN (no finished episode) -> best first: 3e-4, 1e-3, 1e-4,
    # and the setting without a value last.
    final = [[2.0], [5.0], [1.0], [np.nan]]
    plots.sweep_plot(settings, final, "bars", tmp_path / "bars.png")
    (ax,) = made
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "learning_rate=0.0003", "learning_rate=0.001", "learning_rate=0.0001",
        "learning_rate=3e-05"]
    np.testing.assert_array_equal([bar.get_width() for bar in ax.patches], [5, 2, 1, np.nan])
    # Row 0 at the top: the y axis runs downward.
    assert ax.yaxis_inverted()


def test_plot_run_writes_under_the_run_directory(tmp_path):
    """A sweep's Result (hand-made returns, nothing trained): the learning curve and the
    sweep plot, at the names `jaxppo.rundir` gives."""
    import conftest

    spec = spec_lib.make_spec(conftest.RUNNER_CONFIG, {"learning_rate": [1e-3, 1e-2]}, seeds=3)
    returns = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
    result = experiment.Result(run_dir=tmp_path, spec=spec, state=None,
                               metrics={"episode_return": returns}, updates_done=5)
    paths = plots.plot_run(result)
    assert paths == {"learning curve": tmp_path / rundir.PLOTS / rundir.LEARNING_CURVE,
                     "sweep plot": tmp_path / rundir.PLOTS / rundir.SWEEP_PLOT}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
