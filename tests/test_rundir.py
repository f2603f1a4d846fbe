"""The run directory: file names, config.json, metrics.csv and summary.json by hand, the
overwrite check, the lock, writes that fail. (Checkpoints and TensorBoard files are pinned with
a real run in test_experiment.py, faults in real processes in test_faults.py.)"""

import errno
import json
import os
import pathlib
import subprocess
import sys

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


def test_summary_names_a_diverged_run_and_leaves_it_out():
    """Setting 1, seed 2 goes non-finite at update 2 (cause 2, the gradient): its final
    return is null, its setting aggregates the other two seeds, its curve ends at update 2."""
    spec = spec_lib.make_spec(RUNNER_CONFIG, {"learning_rate": [1e-3, 1e-2]}, seeds=3)
    metrics = _hand_metrics((2, 3, 4), np.full((2, 3, 4), 3.0))
    metrics["divergence"] = np.zeros((2, 3, 4), np.int32)
    metrics["divergence"][1, 2, 2:] = 2
    content = rundir.summary(spec, metrics, 4)
    assert content["runs_diverged"] == 1
    assert content["diverged"] == [
        "setting 1 (learning_rate=0.01), seed 2: diverged at update 2 (non-finite gradient)"]
    first, second = content["settings"]
    assert first["runs_diverged"] == 0 and first["final_returns"] == [3.0, 3.0, 3.0]
    assert second["final_returns"] == [3.0, 3.0, None]
    assert second["diverged"] == [{"seed": 2, "update": 2, "cause": "non-finite gradient"}]
    assert second["aggregate"] == stats.aggregate([3.0, 3.0])
    curves = rundir.healthy_returns(metrics)
    np.testing.assert_array_equal(np.isnan(curves[1, 2]), [False, False, True, True])
    assert not np.isnan(curves[0]).any()


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
    metrics = {**_hand_metrics((2, 3, 4), returns), "divergence": np.zeros((2, 3, 4), np.int32)}
    path = rundir.write_summary(tmp_path, rundir.summary(spec, metrics, 4))
    assert path == tmp_path / "summary.json"
    summary = json.loads(path.read_text())
    assert {k: v for k, v in summary.items() if k != "settings"} == {
        "updates_done": 4, "num_updates": 7, "env_steps_per_run": 4 * 16, "finished": False,
        "runs_diverged": 0, "diverged": []}
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


def test_a_file_or_a_mistyped_config_json_is_refused_by_name(tmp_path):
    (tmp_path / "README.md").write_text("# notes")
    with pytest.raises(spec_lib.RunError, match="README.md is not a run directory: it is a "
                       "file"):
        rundir.read_spec(tmp_path / "README.md")
    data = spec_lib.make_spec(RUNNER_CONFIG, seeds=2).to_json()
    for edit, message in (([1, 2], "holds a JSON list, not an object"),
                          ({**data, "config": [1]}, "config=\\[1\\] is invalid: must be an "
                           "object"),
                          ({**data, "seeds": "x"}, "seeds='x' is invalid: must be an integer"),
                          ({**data, "seed": 1.5}, "seed=1.5 is invalid: must be an integer")):
        (tmp_path / "config.json").write_text(json.dumps(edit))
        with pytest.raises(spec_lib.RunError, match=message):
            rundir.read_spec(tmp_path)


def test_lock_refuses_a_second_holder_and_outlives_no_process(tmp_path):
    """While one holder has the lock, another (here a second open of the file, as another
    process does) is refused naming the holder's pid, and `check_new` refuses the directory
    even with overwrite; released, it is free again. A lock file left by a dead process
    (its pid in the file, no kernel lock) is taken over."""
    run_dir = tmp_path / "run"
    with rundir.locked(run_dir):
        assert (run_dir / ".lock").read_text() == f"{os.getpid()}\n"
        assert rundir.lock_holder(run_dir) == f"process {os.getpid()}"
        with pytest.raises(spec_lib.RunError, match=f"run is in use by process {os.getpid()} "
                           "\\(its lock .*\\.lock\\); wait for it to end or stop it"), \
                rundir.locked(run_dir):
            pass
        with pytest.raises(spec_lib.RunError, match="in use by process"):
            rundir.check_new(run_dir, overwrite=True)
    assert rundir.lock_holder(run_dir) is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (run_dir / ".lock").write_text(f"{dead}\n")
    assert rundir.lock_holder(run_dir) is None
    rundir.check_new(run_dir, overwrite=False)  # the lock file alone is not "files"
    with rundir.locked(run_dir):
        assert (run_dir / ".lock").read_text() == f"{os.getpid()}\n"


def test_prepare_keeps_the_lock_file(tmp_path):
    out = tmp_path / "run"
    with rundir.locked(out):
        (out / "old.csv").write_text("x")
        rundir.prepare(out, overwrite=True)
        assert [p.name for p in out.iterdir()] == [".lock"]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_replace_keeps_the_previous_file(tmp_path, monkeypatch):
    """summary.json (config.json, eval.json and a rewritten metrics.csv alike) is replaced
    whole: a disk that fills while writing it leaves the previous file and no temporary
    one, and the error is one line naming the file."""
    path = rundir.write_summary(tmp_path, {"updates_done": 3})
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(rundir.WriteError, match=(
            "^cannot write .*summary.json: OSError: \\[Errno 28\\] No space left on device$")):
        rundir.write_summary(tmp_path, {"updates_done": 6})
    assert json.loads(path.read_text()) == {"updates_done": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_failed_append_leaves_whole_rows(tmp_path, monkeypatch):
    """An append to metrics.csv that fails after writing part of its rows (a full disk) is
    cut back: the file holds the rows it held, whole."""
    spec = spec_lib.make_spec(RUNNER_CONFIG, seeds=2)
    metrics = _hand_metrics((1, 2, 4), np.full((1, 2, 4), 7.5))
    rundir.write_metrics(tmp_path, spec, metrics, 0, 2, fresh=True)
    before = (tmp_path / "metrics.csv").read_bytes()
    real_open = pathlib.Path.open

    class HalfFull:
        """A file that takes 10 bytes and then reports a full disk."""

        def __init__(self, f):
            self.f = f

        def write(self, text):
            self.f.write(text[:10])
            self.f.flush()
            _disk_full()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(pathlib.Path, "open", lambda self, mode="r", **kw: HalfFull(
        real_open(self, mode, **kw)) if "a" in mode else real_open(self, mode, **kw))
    with pytest.raises(rundir.WriteError, match="cannot write .*metrics.csv: OSError: "
                       "\\[Errno 28\\]"):
        rundir.write_metrics(tmp_path, spec, metrics, 2, 4)
    assert (tmp_path / "metrics.csv").read_bytes() == before
