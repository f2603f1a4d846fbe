"""The jaxppo command line: train, eval, resume, sweep, envs; every mistake exits 2 with one
clear line and no traceback. Commands run in-process (sharing compiled programs)."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import RUNNER_CHUNK, RUNNER_SEEDS

import jaxppo
from jaxppo import cli, devices

TINY_FLAGS = ["--num-envs", "2", "--num-steps", "8", "--total-timesteps", "112",
              "--update-epochs", "1", "--num-minibatches", "2", "--hidden-sizes", "8",
              "--chunk-updates", str(RUNNER_CHUNK), "--no-progress"]


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cartpole"
    code = cli.main(["train", "--env", "CartPole-v1", "--seeds", str(RUNNER_SEEDS), *TINY_FLAGS,
                     "--out", str(out)])
    assert code == 0
    return out


def test_train_prints_table_and_paths(trained, capsys):
    # Run again into a fresh directory to see the output (the program is already compiled).
    out = trained.parent / "again"
    code, text, _ = run_cli(capsys, "train", "--seeds", str(RUNNER_SEEDS), *TINY_FLAGS,
                            "--out", str(out))
    assert code == 0
    assert "PPO on CartPole-v1: 2 seeds x 7 updates x 16 env steps" in text
    assert "seed  final return  episodes" in text
    assert "IQM " in text and "95% stratified bootstrap CI" in text
    assert f"learning curve:  {out}/plots/learning_curve.png" in text
    assert (out / "metrics.csv").exists()


def test_config_flags_reach_the_config(trained):
    config = json.loads((trained / "config.json").read_text())["config"]
    assert config["num_envs"] == 2 and config["hidden_sizes"] == [8]
    assert config["total_timesteps"] == 112


def test_eval_writes_report(trained, capsys):
    code, text, _ = run_cli(capsys, "eval", str(trained), "--episodes", "3")
    assert code == 0
    assert "3 episodes per run, deterministic (mode) actions" in text
    report = json.loads((trained / "eval.json").read_text())
    assert len(report["settings"][0]["returns"]) == RUNNER_SEEDS
    assert len(report["settings"][0]["returns"][0]) == 3


def test_resume_of_finished_run(trained, capsys):
    code, text, _ = run_cli(capsys, "resume", str(trained), "--no-progress")
    assert code == 0 and "resuming" in text and "seed  final return" in text


def test_sweep_ranks_settings(tmp_path, capsys):
    out = tmp_path / "sweep"
    # 4 settings x 1 seed: the 4-run program test_experiment's sweep compiles too.
    code, text, _ = run_cli(capsys, "sweep", "--learning-rate", "1e-3,3e-4", "--clip-eps",
                            "0.1,0.2", "--seeds", "1", *TINY_FLAGS, "--out", str(out))
    assert code == 0
    assert "4 settings x 1 seed " in text
    assert "rank  setting" in text
    ranked = [line for line in text.splitlines() if line.strip()[:1].isdigit() and "=" in line]
    assert len(ranked) == 4
    assert (out / "plots" / "sweep.png").exists()


def test_envs_lists_ids(capsys):
    code, text, _ = run_cli(capsys, "envs")
    assert code == 0 and "CartPole-v1" in text and "ProbeValue-v0" in text


def test_help_is_built_from_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--learning-rate" in text and "Adam step size" in text
    assert "--normalize-obs, --no-normalize-obs" in text


def test_every_config_field_has_its_docstring_line_as_help():
    # Read from Config's docstring, whose indentation Python 3.13 strips and 3.11 keeps.
    docs = cli._field_docs()
    fields = [f.name for f in dataclasses.fields(jaxppo.Config)]
    assert sorted(docs) == sorted(fields)
    assert all(docs[name] and "  " not in docs[name] for name in fields), docs
    # A description over two lines comes back as one.
    assert docs["action_dist"] == ('"auto" picks from the env\'s action space; "categorical" '
                                   '(discrete actions) or "gaussian" (continuous actions) '
                                   'asserts it.')


@pytest.mark.parametrize("argv, message", [
    (["train", "--learning-rat", "1e-3"], "did you mean --learning-rate"),
    (["train", "--num-envs", "four"], "--num-envs 'four': expected int"),
    (["train", "--env", "CartPol-v1"], "unknown environment 'CartPol-v1'; did you mean"),
    (["train", "--learning-rate", "1e-3,3e-4"], "use `jaxppo sweep`"),
    (["train", "--clip-eps", "-1"], "clip_eps"),
    (["sweep", "--num-envs", "2,4"], "cannot sweep --num-envs: num_envs is a static field"),
    (["sweep", "--clip-eps", "0.1,,0.2"], "malformed list"),
    (["eval", "/nonexistent/run"], "run directory /nonexistent/run does not exist"),
    (["resume", "/nonexistent/run"], "does not exist"),
    (["eval", "/tmp", "--episodes", "0"], "--episodes 0"),
    (["train", "--cpu-devices", "0"], "--cpu-devices 0: expected an integer >= 1"),
    # This process's JAX has started: its CPU device count can no longer change.
    (["train", "--cpu-devices", "1000"], "cannot change to 1000"),
])
def test_mistakes_exit_2_with_one_line(capsys, argv, message):
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_existing_run_is_not_overwritten(trained, capsys):
    before = (trained / "metrics.csv").read_bytes()
    code, _, err = run_cli(capsys, "train", *TINY_FLAGS, "--out", str(trained))
    assert code == 2 and "already holds files" in err and "--overwrite" in err
    assert (trained / "metrics.csv").read_bytes() == before


def program_env(tmp_path) -> dict:
    """The environment of a `python -m jaxppo` subprocess: its cache under ``tmp_path``, and
    every compiled program worth caching (JAX skips those compiled in under a second by
    default, which the tests' tiny programs may be on a fast machine)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(tmp_path / "xdg"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def test_no_compile_cache_keeps_nothing_and_in_process_calls_leave_jax_alone(trained, tmp_path):
    import jax

    # `trained` ran the command in this process: JAX's cache setting is untouched.
    assert not jax.config.jax_compilation_cache_dir
    flags = [f if f != "112" else "16" for f in TINY_FLAGS]  # one update
    done = subprocess.run([sys.executable, "-m", "jaxppo", "train", "--seeds", "1", *flags,
                           "--no-compile-cache", "--out", str(tmp_path / "run")],
                          env=program_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "xdg" / "jaxppo").exists()


def test_ctrl_c_in_a_real_process_saves_and_exits_130(tmp_path):
    """SIGINT to `python -m jaxppo train`: exit 130, a checkpoint, the resume hint; then
    `jaxppo resume` finishes the run."""
    out = tmp_path / "interrupted"
    flags = [f if f != "112" else "16000" for f in TINY_FLAGS]  # 1000 updates
    flags[flags.index("--chunk-updates") + 1] = "5"
    env = program_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "jaxppo", "train", "--seeds", "1", *flags,
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    csv = out / "metrics.csv"
    while time.time() < deadline and (not csv.exists() or csv.stat().st_size < 1000):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    assert "checkpoint and metrics saved" in stdout and "jaxppo resume" in stdout
    # A fresh process: the command split the CPU into one device per core (the one run
    # used one of them).
    assert f"(cpu, {devices.usable_cores()} device" in stdout
    # Run as a program, the command kept its compiled programs on disk.
    assert any((tmp_path / "xdg" / "jaxppo" / "xla").iterdir())
    assert "Traceback" not in stderr
    done = json.loads((out / "summary.json").read_text())["updates_done"]
    assert 0 < done < 1000 and done % 5 == 0
