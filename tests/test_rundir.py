"""The run directory: file names, config.json, metrics.csv and summary.json by hand, the
overwrite check. (Checkpoints and TensorBoard files are pinned with a real run in
test_experiment.py.)"""

import json

import numpy as np
import pytest
from conftest import RUNNER_CONFIG

from jaxppo import rundir, stats
from jaxppo import spec as spec_lib


def test_file_names():
    """The names users, scripts and the docs rely on."""
    assert (rundir.CONFIG_FILE, rundir.METRICS_FILE, rundir.SUMMARY_FILE, rundir.EVAL_FILE) == (
        "config.json", "metrics.csv", "summary.json", "eval.json")
    assert (rundir.CHECKPOINTS, rundir.PLOTS, rundir.TENSORBOARD) == (
        "checkpoints", "plots", "tensorboard")
    assert (rundir.LEARNING_CURVE, rundir.SWEEP_PLOT) == ("learning_curve.png", "sweep.png")


def test_config_json_round_trip(tmp_path):
    spec = spec_lib.make_spec(RUNNER_CONFIG, {"clip_eps": [0.1, 0.2]}, seeds=3, seed=5)
    path = rundir.write_spec(tmp_path, spec)
    assert path == tmp_path / "config.json" and path.read_text().endswith("}\n")
    assert rundir.read_spec(tmp_path) == spec


def test_read_spec_errors(tmp_path):
    spec = spec_lib.make_spec(RUNNER_CONFIG, seeds=2)
    data = spec.to_json()
    del data["seed"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(spec_lib.RunError, match="config.json lacks the entry 'seed'"):
        rundir.read_spec(tmp_path)
    data = {**spec.to_json(), "seeds": 0}
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(spec_lib.RunError, match="describes an invalid run: seeds=0"):
        rundir.read_spec(tmp_path)


def test_prepare_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "run"
    assert rundir.prepare(out, overwrite=False) == out and out.is_dir()
    assert rundir.prepare(out, overwrite=False) == out  # empty: reused
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(spec_lib.RunError, match="already holds files.*overwrite"):
        rundir.prepare(out, overwrite=False)
    assert (out / "precious.txt").exists()
    rundir.prepare(out, overwrite=True)
    assert out.is_dir() and not any(out.iterdir())


def test_metrics_csv_round_trip(tmp_path):
    """Written in two appends (a fresh file, then more rows), read back: one row per
    setting, seed and update in that order; '%.9g' numbers; NaN as an empty cell."""
    spec = spec_lib.make_spec(RUNNER_CONFIG, seeds=2)
    episode_return = np.full((1, 2, 3), np.nan)
    episode_return[0, 1, 2] = 21.5
    metrics = _hand_metrics((1, 2, 3), episode_return)
    rundir.write_metrics(tmp_path, spec, metrics, 0, 2, fresh=True)
    rundir.write_metrics(tmp_path, spec, metrics, 2, 3)
    rows = rundir.read_metrics(tmp_path)
    assert list(rows[0]) == rundir.metrics_header(spec)
    assert [(r["seed"], r["update"]) for r in rows] == [
        ("0", "0"), ("0", "1"), ("1", "0"), ("1", "1"), ("0", "2"), ("1", "2")]
    for row in rows:
        s, u = int(row["seed"]), int(row["update"])
        assert int(row["env_steps"]) == (u + 1) * 16
        assert row["total_loss"] == f"{metrics['total_loss'][0, s, u]:.9g}"
        assert row["episode_return"] == ("21.5" if (s, u) == (1, 2) else "")


def _hand_metrics(shape, episode_return):
    """Every Metrics field [H, S, U]: field i at (h, s, u) holds 1000 i + 100 h + 10 s + u +
    0.25 (exact in float32), episode_return as given."""
    h, s, u = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    metrics = {name: (1000 * i + 100 * h + 10 * s + u + 0.25).astype(np.float32)
               for i, name in enumerate(rundir.METRIC_NAMES)}
    metrics["episode_return"] = np.asarray(episode_return, np.float32)
    return metrics


def test_metrics_rows_of_a_sweep_by_hand(tmp_path):
    """2 settings x 2 seeds, updates [1, 3) of 4: rows setting, config.<field>, seed, update,
    env_steps = (update + 1) x 16, then the metrics; a NaN is an empty cell."""
    spec = spec_lib.make_spec(RUNNER_CONFIG, {"learning_rate": [1e-3, 1e-2]}, seeds=2)
    episode_return = np.full((2, 2, 4), 7.5)
    episode_return[1, 0, 2] = np.nan
    metrics = _hand_metrics((2, 2, 4), episode_return)
    path = rundir.write_metrics(tmp_path, spec, metrics, 1, 3, fresh=True)
    assert path == tmp_path / "metrics.csv"
    lines = path.read_text().splitlines()
    assert lines[0].split(",")[:6] == ["setting", "config.learning_rate", "seed", "update",
                                      "env_steps", "episode_return"]
    # episode_length is field 2 (index 2 in Metrics, after env_steps and episode_return).
    assert lines[1:] == [
        f"{h},{lr},{s},{u},{(u + 1) * 16},{'' if (h, s, u) == (1, 0, 2) else '7.5'},"
        + ",".join(f"{1000 * i + 100 * h + 10 * s + u + 0.25:.9g}"
                   for i in range(2, len(rundir.METRIC_NAMES)))
        for h, lr in enumerate(("0.001", "0.01")) for s in (0, 1) for u in (1, 2)]


def test_summary_of_a_partial_sweep_by_hand(tmp_path):
    """summary.json of hand-made returns, 4 of 7 updates done, 2 settings x 3 seeds; a seed
    without a finished episode is null and left out of the aggregate; reliability needs
    every seed."""
    spec = spec_lib.make_spec(RUNNER_CONFIG, {"learning_rate": [1e-3, 1e-2]}, seeds=3)
    nan = np.nan
    returns = np.array([[[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0], [nan, nan, 6.0, nan]],
                        [[nan, nan, nan, nan], [0.0, 1.0, nan, 3.0], [5.0, 5.0, 5.0, 5.0]]])
    metrics = _hand_metrics((2, 3, 4), returns)
    path = rundir.write_summary(tmp_path, rundir.summary(spec, metrics, 4))
    assert path == tmp_path / "summary.json"
    summary = json.loads(path.read_text())
    assert {k: v for k, v in summary.items() if k != "settings"} == {
        "updates_done": 4, "num_updates": 7, "env_steps_per_run": 4 * 16, "finished": False}
    first, second = summary["settings"]
    assert (first["setting"], first["label"], first["learning_rate"]) == (
        0, "learning_rate=0.001", 0.001)
    assert (second["setting"], second["label"], second["learning_rate"]) == (
        1, "learning_rate=0.01", 0.01)
    # Final returns (window 10 covers all 4 updates, NaN skipped): (1+2+3+4)/4, 2, 6 and
    # no episode, (0+1+3)/3, 5.
    assert first["final_returns"] == [2.5, 2.0, 6.0]
    assert second["final_returns"][0] is None
    np.testing.assert_allclose(second["final_returns"][1:], [4 / 3, 5.0], rtol=1e-15)
    # {2, 2.5, 6}: median 2.5; mean = IQM (int(3 / 4) = 0 dropped) = 10.5 / 3 = 3.5.
    aggregate = first["aggregate"]
    assert aggregate == stats.aggregate([2.5, 2.0, 6.0])
    assert (aggregate["median"]["value"], aggregate["mean"]["value"],
            aggregate["iqm"]["value"]) == (2.5, 3.5, 3.5)
    for entry in aggregate.values():
        assert 2.0 <= entry["ci_low"] <= entry["value"] <= entry["ci_high"] <= 6.0
    # Setting 1 aggregates its 2 finished seeds only: mean (4/3 + 5) / 2 = 19 / 6.
    assert second["aggregate"] == stats.aggregate([4 / 3, 5.0])
    assert second["aggregate"]["mean"]["value"] == pytest.approx(19 / 6, rel=1e-15)
    assert first["reliability"] == stats.reliability(
        returns[0], [2.5, 2.0, 6.0], smoothing_window=10, window=10)
    assert second["reliability"] is None


def test_reliability_needs_every_final_return_and_two_updates():
    curves = np.array([[1.0, 2.0, 4.0], [0.0, 3.0, 3.0]])
    assert rundir.reliability(curves, np.array([4.0, np.nan])) is None
    assert rundir.reliability(curves[:, :1], np.array([1.0, 0.0])) is None
    # Worst of 2 final scores (CVaR 5%, at least one run): 3.
    report = rundir.reliability(curves, np.array([4.0, 3.0]))
    assert report["risk_across_runs"] == 3.0
