"""The experiment runner: chunked == one call, exact resume, Ctrl-C, files on disk, errors."""

import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RUNNER_CHUNK, RUNNER_CONFIG, RUNNER_SEEDS

import jaxppo
from jaxppo import experiment, rundir, stats
from jaxppo import spec as spec_lib

# One jitted vmap(train) over seeds for every reference below: configs that differ only in
# dynamic fields, and keys of one shape, reuse its compiled program.
_train_seeds = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))


def _bits(tree):
    """Host arrays, PRNG keys as their raw bits, for exact comparison."""
    return jax.tree.map(lambda x: np.asarray(
        jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x), tree)


def assert_same_run(a, b):
    """Bit-for-bit equal final states and metrics (NaN where no episode ended in both)."""
    for x, y in zip(jax.tree.leaves(_bits(a.state)), jax.tree.leaves(_bits(b.state)),
                    strict=True):
        np.testing.assert_array_equal(x, y)
    assert set(a.metrics) == set(b.metrics)
    for name in a.metrics:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)


def test_finished_run_shapes_and_files(finished_run):
    r = finished_run
    assert r.finished and not r.interrupted and r.updates_done == 7
    assert r.metrics["episode_return"].shape == (1, RUNNER_SEEDS, 7)
    assert jax.tree.leaves(r.state)[0].shape[0] == RUNNER_SEEDS
    # env_steps of update u is (u + 1) x 16.
    np.testing.assert_array_equal(r.metrics["env_steps"][0, 0], 16 * np.arange(1, 8))
    for name in ("config", "metrics", "summary", "checkpoints", "learning curve", "tensorboard"):
        assert r.paths[name].exists(), name
    assert r.paths["learning curve"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Checkpoints are named by updates done; the last two are kept (3, 6, 7 -> 6, 7).
    assert sorted(int(p.name) for p in r.paths["checkpoints"].iterdir() if p.name.isdigit()) \
        == [6, 7]


def test_chunked_run_equals_one_jitted_train(finished_run):
    """The chunks (3 + 3 + 1 updates, the last through the skip branch) compute what one
    jax.jit(vmap(train)) call computes, with the same keys."""
    keys = jax.random.split(jax.random.key(0), RUNNER_SEEDS)
    state, metrics = _train_seeds(RUNNER_CONFIG, keys)
    for name, values in finished_run.metrics.items():
        np.testing.assert_allclose(values[0], np.asarray(getattr(metrics, name)), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    for x, y in zip(jax.tree.leaves(_bits(finished_run.state)), jax.tree.leaves(_bits(state)),
                    strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_metrics_csv_is_tidy_and_matches(finished_run):
    rows = rundir.read_metrics(finished_run.run_dir)
    assert list(rows[0])[:4] == ["setting", "seed", "update", "env_steps"]
    assert len(rows) == 1 * RUNNER_SEEDS * 7
    for row in rows:
        s, u = int(row["seed"]), int(row["update"])
        assert int(row["env_steps"]) == (u + 1) * 16
        for name in ("total_loss", "entropy", "learning_rate"):
            np.testing.assert_allclose(float(row[name]), finished_run.metrics[name][0, s, u],
                                       rtol=1e-6)
        expected = finished_run.metrics["episode_return"][0, s, u]
        assert (row["episode_return"] == "") == bool(np.isnan(expected))


def test_config_json_round_trip(finished_run):
    data = json.loads((finished_run.run_dir / "config.json").read_text())
    spec = spec_lib.Spec.from_json(data)
    assert spec == finished_run.spec
    assert spec.config == RUNNER_CONFIG
    assert data["config"]["hidden_sizes"] == [8]


def test_summary_json(finished_run):
    summary = json.loads((finished_run.run_dir / "summary.json").read_text())
    final = finished_run.final_returns()
    assert summary["finished"] and summary["updates_done"] == 7
    got = np.array(summary["settings"][0]["final_returns"], dtype=float)
    np.testing.assert_allclose(got, final[0])
    reliability = summary["settings"][0]["reliability"]
    if np.isnan(final).any():  # a seed without a finished episode in its last 10 updates
        assert reliability is None
    else:
        assert reliability["risk_across_runs"] == pytest.approx(final[0].min())  # worst of 2


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_is_bit_exact(finished_run, tmp_path, stop_after):
    """Stopped after chunk k (k x 3 updates), resumed: the uninterrupted run, bit for bit,
    and the same metrics.csv byte for byte."""
    out = tmp_path / "stopped"
    quiet = experiment.Output(progress=False, plots=False)
    stopped = experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, out, chunk_updates=RUNNER_CHUNK,
                             output=quiet,
                             execution=experiment.Execution(stop_after_chunks=stop_after))
    assert stopped.interrupted and stopped.updates_done == RUNNER_CHUNK * stop_after
    assert len(rundir.read_metrics(out)) == RUNNER_SEEDS * RUNNER_CHUNK * stop_after
    resumed = experiment.resume(out, output=quiet)
    assert resumed.finished and not resumed.interrupted
    # run_s timed only the updates this call ran (the speed the command prints uses them).
    assert stopped.updates_run == RUNNER_CHUNK * stop_after and finished_run.updates_run == 7
    assert resumed.updates_run == 7 - RUNNER_CHUNK * stop_after
    assert_same_run(resumed, finished_run)
    assert (out / "metrics.csv").read_bytes() == (finished_run.run_dir / "metrics.csv").read_bytes()


def test_ctrl_c_saves_and_resume_finishes(finished_run, tmp_path, monkeypatch):
    """A real SIGINT during the first chunk: the run ends after that chunk with a checkpoint
    and the metrics so far; resume then gives the uninterrupted run."""
    write = rundir.write_metrics
    calls = []

    def write_then_interrupt(*args, **kwargs):
        write(*args, **kwargs)
        calls.append(kwargs.get("fresh", False))
        if calls.count(False) == 1:  # after the first chunk's rows
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(rundir, "write_metrics", write_then_interrupt)
    out = tmp_path / "interrupted"
    # What the process had before (Python's default handler, or SIG_IGN when started in the
    # background by a non-interactive shell): the run must put it back.
    before = signal.getsignal(signal.SIGINT)
    result = experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, out, chunk_updates=RUNNER_CHUNK,
                            progress=False, plots=False)
    assert result.interrupted and result.updates_done == 3
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    monkeypatch.setattr(rundir, "write_metrics", write)
    _, _, history, done = experiment.restore(out)
    assert done == 3 and history["episode_return"].shape == (1, RUNNER_SEEDS, 3)
    assert_same_run(experiment.resume(out, progress=False, plots=False), finished_run)


def test_seed_sets_the_run_keys(finished_run, tmp_path):
    """seed=3: the runs use jax.random.split(jax.random.key(3), S), as one vmapped train with
    those keys does, and differ from the seed-0 run (same compiled chunk as finished_run)."""
    result = experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, tmp_path / "seed3", seed=3,
                            chunk_updates=RUNNER_CHUNK, progress=False, plots=False)
    assert result.spec.seed == 3
    assert json.loads((tmp_path / "seed3" / "config.json").read_text())["seed"] == 3
    keys = jax.random.split(jax.random.key(3), RUNNER_SEEDS)
    _, metrics = _train_seeds(RUNNER_CONFIG, keys)
    for name in ("total_loss", "entropy", "episode_return", "approx_kl"):
        np.testing.assert_allclose(result.metrics[name][0], np.asarray(getattr(metrics, name)),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.allclose(result.metrics[name], finished_run.metrics[name],
                               equal_nan=True), name


def test_existing_directory_is_not_overwritten(finished_run, tmp_path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(experiment.RunError, match="already holds files.*overwrite"):
        experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, out, progress=False)
    assert (out / "precious.txt").read_text() == "keep me"


def test_resume_errors(finished_run, tmp_path):
    with pytest.raises(experiment.RunError, match="does not exist"):
        experiment.resume(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(experiment.RunError, match="no config.json"):
        experiment.resume(tmp_path / "empty")
    bad = tmp_path / "bad_json"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(experiment.RunError, match="not valid JSON"):
        experiment.resume(bad)
    a_file = tmp_path / "README.md"
    a_file.write_text("# not a run")
    with pytest.raises(experiment.RunError, match="README.md is not a run directory: it is a "
                       "file"):
        experiment.resume(a_file)
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    (no_ckpt / "config.json").write_text((finished_run.run_dir / "config.json").read_text())
    with pytest.raises(experiment.RunError, match="holds no checkpoint yet; `resume` trains"):
        experiment.restore(no_ckpt)  # what eval and load read


def _files(run_dir):
    """Every file under ``run_dir`` but the lock (it names the last process to hold it):
    relative path -> (bytes, mtime in ns)."""
    return {str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != rundir.LOCK_FILE}


def test_resume_without_a_checkpoint_starts_from_the_beginning(finished_run, tmp_path):
    """What a kill before the first checkpoint leaves (config.json, rows of metrics.csv, an
    empty checkpoints/ with a temporary folder of an unfinished save): resume trains from
    update 0, ends as the uninterrupted run bit for bit, and metrics.csv holds each row once."""
    run_dir = tmp_path / "killed_early"
    (run_dir / "checkpoints" / "3.orbax-checkpoint-tmp-1").mkdir(parents=True)
    shutil.copy(finished_run.run_dir / "config.json", run_dir / "config.json")
    rows = (finished_run.run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    (run_dir / "metrics.csv").write_text("".join(rows[:4]))  # header, half of chunk 1
    assert rundir.latest_checkpoint(run_dir) is None
    resumed = experiment.resume(run_dir, progress=False, plots=False)
    assert resumed.finished and resumed.updates_run == 7
    assert_same_run(resumed, finished_run)
    assert (run_dir / "metrics.csv").read_bytes() == (
        finished_run.run_dir / "metrics.csv").read_bytes()
    # The writer deleted the unfinished save.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["6", "7"]


def test_ctrl_c_while_compiling_stops_before_the_first_chunk(finished_run, tmp_path,
                                                             monkeypatch, capsys):
    """A real SIGINT while the chunk compiles: it is acknowledged at once on stderr, no chunk
    runs, the run returns interrupted with config.json and an empty metrics.csv (no
    checkpoint: update 0 is config.json's); resume gives the uninterrupted run."""
    compiled = experiment._compiled_chunk

    def interrupt_then_compile(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return compiled(*args, **kwargs)

    monkeypatch.setattr(experiment, "_compiled_chunk", interrupt_then_compile)
    out = tmp_path / "compiling"
    result = experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, out, chunk_updates=RUNNER_CHUNK,
                            checkpoint_every=1, progress=False, plots=False)
    assert result.interrupted and result.updates_done == 0 and result.updates_run == 0
    assert "Ctrl-C: stopping after the chunk (or the compile) running" in capsys.readouterr().err
    assert rundir.latest_checkpoint(out) is None
    assert rundir.read_metrics(out) == []
    monkeypatch.setattr(experiment, "_compiled_chunk", compiled)
    assert_same_run(experiment.resume(out, progress=False, plots=False), finished_run)
    assert (out / "metrics.csv").read_bytes() == (
        finished_run.run_dir / "metrics.csv").read_bytes()


def test_resume_of_a_finished_run_changes_nothing(finished_run, tmp_path):
    run_dir = _copy_run(finished_run.run_dir, tmp_path / "finished")
    before = _files(run_dir)
    result = experiment.resume(run_dir, progress=False)
    assert result.finished and result.updates_done == 7 and result.updates_run == 0
    assert not result.interrupted and result.paths == {}
    assert_same_run(result, finished_run)
    assert _files(run_dir) == before


def test_config_json_edited_in_a_dynamic_field_is_refused(finished_run, tmp_path):
    """learning_rate changed by hand: the checkpoint was written with another, and resuming
    would not be the run that began; refused by name, nothing written."""
    run_dir = _copy_run(finished_run.run_dir, tmp_path / "edited_lr")
    shutil.rmtree(run_dir / "checkpoints" / "7")  # so that resume would train
    data = json.loads((run_dir / "config.json").read_text())
    written = data["config"]["learning_rate"]
    data["config"]["learning_rate"] = 0.01
    (run_dir / "config.json").write_text(json.dumps(data))
    before = _files(run_dir)
    with pytest.raises(experiment.RunError, match=(
            f"config.json of .* says learning_rate=0.01 but checkpoint 6 was written with "
            f"learning_rate={written!r}: a run resumes only with the config it began with")):
        experiment.resume(run_dir, progress=False)
    assert _files(run_dir) == before


def _copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_resume_from_a_periodic_checkpoint_is_bit_exact(finished_run, tmp_path):
    """The newest checkpoint (7, written at the end) deleted: resume starts from checkpoint 6,
    saved every chunk (checkpoint_every=1) after chunk 2, and runs the last update: the
    uninterrupted run, bit for bit, and the same metrics.csv byte for byte."""
    run_dir = _copy_run(finished_run.run_dir, tmp_path / "periodic")
    shutil.rmtree(run_dir / "checkpoints" / "7")
    _, _, history, done = experiment.restore(run_dir)
    assert done == 6 and history["episode_return"].shape == (1, RUNNER_SEEDS, 6)
    for name, values in history.items():
        np.testing.assert_array_equal(values, finished_run.metrics[name][..., :6], err_msg=name)
    resumed = experiment.resume(run_dir, progress=False, plots=False)
    assert resumed.finished and resumed.updates_run == 1
    assert_same_run(resumed, finished_run)
    assert (run_dir / "metrics.csv").read_bytes() == (
        finished_run.run_dir / "metrics.csv").read_bytes()


def test_mismatched_checkpoint_is_refused(finished_run, tmp_path):
    """config.json edited to another static config: the checkpoint is of another program."""
    run_dir = _copy_run(finished_run.run_dir, tmp_path / "edited")
    data = json.loads((run_dir / "config.json").read_text())
    data["config"]["num_envs"] = 4
    (run_dir / "config.json").write_text(json.dumps(data))
    with pytest.raises(experiment.RunError, match="num_envs=2 but config.json says 4"):
        experiment.resume(run_dir, progress=False)
    data["config"]["num_envs"] = 2
    data["seeds"] = 3
    (run_dir / "config.json").write_text(json.dumps(data))
    with pytest.raises(experiment.RunError, match="holds 2 runs but config.json describes 3"):
        experiment.resume(run_dir, progress=False)
    data["seeds"] = 2
    data["config"]["no_such_field"] = 1
    (run_dir / "config.json").write_text(json.dumps(data))
    with pytest.raises(experiment.RunError, match="unknown Config field.*no_such_field"):
        experiment.resume(run_dir, progress=False)



def test_checkpoint_of_another_format_is_refused(finished_run, tmp_path):
    """A checkpoint whose train state has another layout (format 1: Adam's moments per param
    leaf) is refused by name before orbax compares trees."""
    run_dir = _copy_run(finished_run.run_dir, tmp_path / "format1")
    (meta_file,) = [p for p in (run_dir / "checkpoints" / "7" / "meta").iterdir()
                    if p.is_file() and p.name != "commit_success.txt"]
    meta = json.loads(meta_file.read_text())
    assert meta["format"] == rundir.CHECKPOINT_FORMAT == 3
    meta_file.write_text(json.dumps({**meta, "format": 1}))
    with pytest.raises(experiment.RunError, match="has format 1, and this jaxppo reads format 3"):
        experiment.resume(run_dir, progress=False)

def test_corrupt_checkpoint_is_refused(finished_run, tmp_path):
    run_dir = _copy_run(finished_run.run_dir, tmp_path / "corrupt")
    state_dir = run_dir / "checkpoints" / "7" / "state"
    for path in state_dir.rglob("*"):
        if path.is_file() and path.name != "commit_success.txt":
            path.write_bytes(b"garbage")
    with pytest.raises(experiment.RunError, match=(
            "checkpoint 7 of .* is damaged or not a jaxppo checkpoint \\(.*\\); checkpoint 6 "
            "may be intact: move .*checkpoints/7 away to resume from it")):
        experiment.resume(run_dir, progress=False)


def test_bad_arguments_are_refused_before_running(tmp_path):
    with pytest.raises(ValueError, match="seeds=0"):
        experiment.run(RUNNER_CONFIG, 0, tmp_path / "a")
    with pytest.raises(ValueError, match="chunk_updates=0"):
        experiment.run(RUNNER_CONFIG, 2, tmp_path / "a", chunk_updates=0)
    with pytest.raises(ValueError, match="cannot sweep Config.num_envs"):
        experiment.run(RUNNER_CONFIG, 2, tmp_path / "a", space={"num_envs": [2, 4]})
    assert not (tmp_path / "a").exists()


def test_run_arguments_as_records_or_keywords(tmp_path):
    """The flat keywords (progress=, devices=, ...) set the fields of Output and Execution;
    an unknown one is a TypeError, as for any function; resume refuses overwrite."""
    output, execution = experiment._with_keywords(
        experiment.Output(plots=False), experiment.Execution(max_runs_per_call=2),
        {"progress": False, "stop_after_chunks": 1}, "run")
    assert output == experiment.Output(progress=False, plots=False)
    assert execution == experiment.Execution(max_runs_per_call=2, stop_after_chunks=1)
    with pytest.raises(TypeError, match="run\\(\\) got an unexpected keyword argument 'progres'"):
        experiment.run(RUNNER_CONFIG, 2, tmp_path / "a", progres=False)
    with pytest.raises(ValueError, match="overwrite=True does not apply"):
        experiment.resume(tmp_path / "a", overwrite=True)
    assert not (tmp_path / "a").exists()


def test_tensorboard_event_files(finished_run):
    files = list((finished_run.run_dir / "tensorboard" / "setting0").glob("events.out.*"))
    assert len(files) == 1
    data = files[0].read_bytes()
    for tag in (b"episode_return/iqm", b"episode_return/seed0", b"train/entropy"):
        assert tag in data, tag


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    """A 2-setting run (learning_rate 1e-3, 1e-2), 2 seeds each, into tmp_path / "sweep"."""
    tmp_path = tmp_path_factory.mktemp("sweep_runs")
    result = experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, tmp_path / "sweep",
                            space={"learning_rate": [1e-3, 1e-2]},
                            chunk_updates=RUNNER_CHUNK, progress=False)
    return tmp_path, result


def test_sweep_run_layout(sweep_run):
    """A 2-setting run: metrics [H, S, U], rows per setting carry the swept value, and
    setting h seed s equals a plain run of that setting with seed s."""
    tmp_path, result = sweep_run
    assert result.metrics["entropy"].shape == (2, RUNNER_SEEDS, 7)
    assert result.paths["sweep plot"].exists()
    rows = rundir.read_metrics(tmp_path / "sweep")
    assert {(r["setting"], r["config.learning_rate"]) for r in rows} == {("0", "0.001"),
                                                                         ("1", "0.01")}
    keys = jax.random.split(jax.random.key(0), RUNNER_SEEDS)
    _, metrics = _train_seeds(RUNNER_CONFIG.replace(learning_rate=1e-2), keys)
    np.testing.assert_allclose(result.metrics["total_loss"][1], metrics.total_loss, rtol=1e-5)
    np.testing.assert_allclose(result.metrics["learning_rate"][1, :, 0], 1e-2, rtol=1e-6)
    # summary.json: each setting's aggregate is stats.aggregate of that setting's own final
    # returns (2 seeds), not of all settings pooled (4 runs).
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    final = result.final_returns()
    assert np.isfinite(final).all()  # 7 updates of 16 CartPole steps end episodes in each run
    for h, lr in enumerate((1e-3, 1e-2)):
        entry = summary["settings"][h]
        assert entry["setting"] == h and entry["learning_rate"] == lr
        np.testing.assert_array_equal(entry["final_returns"], final[h])
        assert entry["aggregate"] == stats.aggregate(final[h])
        assert entry["aggregate"]["mean"]["value"] == pytest.approx(final[h].mean(), rel=1e-12)
    pooled = stats.aggregate(final.ravel())
    assert all(entry["aggregate"] != pooled for entry in summary["settings"])


def test_runs_beyond_memory_take_turns(finished_run, tmp_path):
    """One run per call (as if memory held only one): the 2 runs take turns in each chunk
    with a ChunkWarning; the numbers are the one-call run's, and resume stays exact."""
    from jaxppo import memory

    with pytest.warns(memory.ChunkWarning, match="2 sequential calls of 1 runs"):
        turns = experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, tmp_path / "turns",
                               chunk_updates=RUNNER_CHUNK, progress=False, plots=False,
                               max_runs_per_call=1)
    for name in ("total_loss", "entropy", "episode_return"):
        np.testing.assert_allclose(turns.metrics[name], finished_run.metrics[name], rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    with pytest.warns(memory.ChunkWarning):
        experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, tmp_path / "stop", chunk_updates=RUNNER_CHUNK,
                       progress=False, plots=False, max_runs_per_call=1, stop_after_chunks=1)
        resumed = experiment.resume(tmp_path / "stop", progress=False, plots=False,
                                    max_runs_per_call=1)
    assert_same_run(resumed, turns)


# --- Files and errors pinned without another compile ---------------------------------------------


def test_config_json_holds_exactly_the_spec(finished_run):
    data = json.loads((finished_run.run_dir / "config.json").read_text())
    assert data == {
        "format": 1,
        "config": spec_lib.config_to_dict(RUNNER_CONFIG),
        "settings": {},
        "seeds": 2,
        "seed": 0,
        "chunk_updates": 3,
        "checkpoint_every": 1,
    }
    assert data["config"]["num_envs"] == 2 and data["config"]["total_timesteps"] == 7 * 16


def test_metrics_csv_columns_and_row_order(finished_run):
    """Header: setting, seed, update, env_steps, the episode columns, then the other Metrics
    fields in their order; rows chunk by chunk (3 + 3 + 1 updates), seed-major inside a chunk;
    each cell is the metric as '%.9g', empty where it is NaN."""
    with (finished_run.run_dir / "metrics.csv").open() as f:
        header = f.readline().strip().split(",")
    assert header == ["setting", "seed", "update", "env_steps", "episode_return",
                      "episode_length", "episode_count", "total_loss", "policy_loss",
                      "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm",
                      "explained_variance", "ent_coef", "gradient_steps", "learning_rate",
                      "divergence"]
    rows = rundir.read_metrics(finished_run.run_dir)
    order = [(r["setting"], r["seed"], r["update"]) for r in rows]
    chunks = [(0, 3), (3, 6), (6, 7)]
    assert order == [("0", str(s), str(u)) for a, b in chunks for s in (0, 1)
                     for u in range(a, b)]
    for row in rows:
        s, u = int(row["seed"]), int(row["update"])
        for name in header[4:]:
            value = float(finished_run.metrics[name][0, s, u])
            assert row[name] == ("" if np.isnan(value) else f"{value:.9g}"), (name, s, u)
        # No episode ended: both episode means are empty, the count is 0, nothing else empty.
        assert (row["episode_return"] == "") == (row["episode_length"] == "") \
            == (row["episode_count"] == "0")
        assert all(row[name] != "" for name in header if not name.startswith("episode_"))


def test_a_file_as_run_dir_is_refused(finished_run, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    with pytest.raises(experiment.RunError, match="a_file exists and is not a directory"):
        experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, a_file, progress=False)
    assert a_file.read_text() == "not a directory"


def test_load_picks_the_setting_and_seed_of_a_sweep(sweep_run):
    """Run h * S + s is setting h, seed s; out-of-range or non-int choices are refused."""
    tmp_path, result = sweep_run
    run_dir = tmp_path / "sweep"
    for setting, seed in ((1, 0), (0, 1), (1, 1)):
        policy = jaxppo.load(run_dir, seed=seed, setting=setting)
        assert (policy.setting, policy.seed) == (setting, seed)
        assert policy.config.learning_rate == pytest.approx((1e-3, 1e-2)[setting], rel=1e-6)
        want = jax.tree.map(lambda x, i=setting * 2 + seed: x[i], result.state.params)
        for x, y in zip(jax.tree.leaves(policy.policy.params), jax.tree.leaves(want),
                        strict=True):
            np.testing.assert_array_equal(x, y)
    for kwargs, message in (({"seed": -1}, "seed=-1: .* has 2 seeds \\(0 to 1\\)"),
                            ({"setting": 2}, "setting=2: .* has 2 settings \\(0 to 1\\)"),
                            ({"setting": -1}, "setting=-1"),
                            ({"seed": True}, "seed=True")):
        with pytest.raises(experiment.RunError, match=message):
            jaxppo.load(run_dir, **kwargs)


def test_summary_json_of_the_finished_run(finished_run):
    """7 updates of 2 envs x 8 steps: 112 env steps per run; the one setting is "config"; its
    aggregate over 2 seeds {a, b}: IQM (int(2 / 4) = 0 dropped) = median = mean = (a + b) / 2,
    and the 2000 resamples hold (a, a) and (b, b), so the 95% interval is [min, max]."""
    summary = json.loads((finished_run.run_dir / "summary.json").read_text())
    assert {k: v for k, v in summary.items() if k != "settings"} == {
        "updates_done": 7, "num_updates": 7, "env_steps_per_run": 112, "finished": True,
        "runs_diverged": 0, "diverged": []}
    (entry,) = summary["settings"]
    assert (entry["setting"], entry["label"]) == (0, "config")
    a, b = finished_run.final_returns()[0]
    assert np.isfinite([a, b]).all()  # every seed ends episodes in its last 10 updates
    for name in ("iqm", "median", "mean"):
        assert entry["aggregate"][name] == {"value": pytest.approx((a + b) / 2, rel=1e-12),
                                            "ci_low": min(a, b), "ci_high": max(a, b)}, name
