"""The jaxppo command line: train, eval, resume, sweep, envs; every mistake exits 2 with one
clear line and no traceback. Commands run in-process (sharing compiled programs)."""

import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import RUNNER_CHUNK, RUNNER_SEEDS

import jaxppo
from jaxppo import cli, devices, experiment, rundir
from jaxppo import spec as spec_lib

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
    # The table's rows against metrics.csv: "episodes" is the seed's episode_count summed
    # over its 7 updates; "final return" the mean of its non-empty episode_return entries
    # (window 10 >= 7 updates: all of them).
    lines = text.splitlines()
    start = lines.index("seed  final return  episodes") + 1
    table = [line.split() for line in lines[start:start + RUNNER_SEEDS]]
    rows = rundir.read_metrics(out)
    for s in range(RUNNER_SEEDS):
        mine = [r for r in rows if r["seed"] == str(s)]
        assert len(mine) == 7
        counts = [int(r["episode_count"]) for r in mine]
        returns = [float(r["episode_return"]) for r in mine if r["episode_return"]]
        assert sum(counts) > max(counts)  # so a max in place of the sum shows
        assert table[s] == [str(s), f"{np.mean(returns):.1f}", str(sum(counts))]


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


def test_envs_lists_ids(capsys, monkeypatch):
    from jaxppo import presets

    # A preset the zoo has not measured yet (every one has a row today).
    monkeypatch.delitem(presets.MEASURED, "Seaquest-MinAtar")
    code, text, _ = run_cli(capsys, "envs")
    assert code == 0 and "CartPole-v1" in text and "ProbeValue-v0" in text
    # The one env that needs a network on first use says so.
    assert ("  MNISTBandit-bsuite  (downloads the MNIST data set (to /tmp/mnist) on first use)"
            in text.splitlines())
    # bench/results/zoo: CartPole-v1's preset reached an IQM of 500 at 499,712 steps.
    assert "  CartPole-v1  (preset; IQM 500 at 499,712 steps)" in text.splitlines()
    assert "  Breakout-MinAtar  (preset; IQM 36.3 at 5,996,544 steps)" in text.splitlines()
    assert "  Seaquest-MinAtar  (preset)" in text.splitlines()  # not in the zoo
    assert ("  SimpleBandit-bsuite  (IQM 0.5 at 499,712 steps; PPO is known to fail here: "
            "`jaxppo.presets.KNOWN_FAILURES`)" in text.splitlines())
    assert "  ProbeValue-v0" in text.splitlines()  # no preset, not measured
    # Every suite is listed: its ids under its name, or the extra that installs it.
    from jaxppo import envs

    lines = text.splitlines()
    for suite, entry in envs.SUITES.items():
        assert (f"{suite}:" in lines) != (
            f'{suite}: not installed; pip install "jaxppo[{entry.extra}]" brings it' in lines)


def test_an_env_whose_download_fails_exits_2_with_one_line(monkeypatch, capsys):
    import urllib.error

    from jaxppo import envs

    envs.make("CartPole-v1")  # imports gymnax the way jaxppo does, before load_mnist below
    from gymnax.utils import load_mnist

    def no_network(*args, **kwargs):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(load_mnist, "load_mnist", no_network)
    # A fresh cache: an env made earlier, online, would come from it.
    monkeypatch.setattr(envs, "make", functools.cache(envs.make.__wrapped__))
    code, out, err = run_cli(capsys, "train", "--env", "MNISTBandit-bsuite")
    assert code == 2 and "compiling" not in out
    assert err == ("jaxppo train: error: env_id 'MNISTBandit-bsuite' could not be created: it "
                   "downloads the MNIST data set (to /tmp/mnist) on first use, which failed "
                   "([Errno -2] Name or service not known); run it once with network access "
                   "or choose another env\n")


def test_a_network_too_large_for_memory_exits_2_with_one_line_before_compiling(capsys,
                                                                             tmp_path):
    out_dir = tmp_path / "huge"
    code, out, err = run_cli(capsys, "train", "--hidden-sizes", "99999999999",
                             "--out", str(out_dir))
    assert code == 2 and "compiling" not in out and not out_dir.exists()
    assert err.count("\n") == 1
    assert err.startswith("jaxppo train: error: one run of this config needs an estimated ")
    assert "hidden_sizes=(99999999999,)" in err


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_shows_the_presets_values_for_the_chosen_env(capsys):
    # Pendulum-v1's preset trains 16 envs at lr 1e-3 where Config's defaults are 4 and 2.5e-4.
    for argv in (["train", "--env", "Pendulum-v1", "--help"],
                 ["sweep", "--env=Pendulum-v1", "--help"]):
        text = _help(capsys, *argv)
        assert "default: jaxppo.preset('Pendulum-v1')" in text
        assert "one rollout. (default: 16)" in text and "(default: 0.001)" in text
    text = _help(capsys, "train", "--help")
    assert "one rollout. (default: 4)" in text and "`--env ID --help` shows that env's" in text


def test_version(capsys):
    """``jaxppo --version`` prints the package's version, in-process and as
    ``python -m jaxppo``."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"jaxppo {jaxppo.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", jaxppo.__version__)
    proc = subprocess.run([sys.executable, "-m", "jaxppo", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == f"jaxppo {jaxppo.__version__}\n"


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
    # A description over three lines comes back as one.
    assert docs["action_dist"] == ('"auto" picks from the env\'s action space; "categorical" '
                                   '(discrete actions), "multi_discrete" (several discrete '
                                   'choices at once) or "gaussian" (continuous actions) '
                                   'asserts it.')


@pytest.mark.parametrize("argv, message", [
    (["train", "--learning-rat", "1e-3"], "did you mean --learning-rate"),
    (["train", "--num-envs", "four"], "--num-envs 'four': expected int"),
    (["train", "--env", "CartPol-v1"], "--env 'CartPol-v1': unknown environment; did you mean"),
    (["train", "--learning-rate", "1e-3,3e-4"], "use `jaxppo sweep`"),
    (["train", "--clip-eps", "-1"], "--clip-eps -1.0 is invalid: must be > 0"),
    # Negative numbers in scientific notation are values, not flags.
    (["train", "--learning-rate", "-1e-3"], "--learning-rate -0.001 is invalid: must be > 0"),
    (["train", "--init-log-std", "-inf"], "--init-log-std -inf is invalid: must be finite"),
    # Not "must be > 0": the reason is that it is not finite.
    (["train", "--learning-rate", "inf"], "--learning-rate inf is invalid: must be finite"),
    (["train", "--gamma", "nan"], "--gamma nan is invalid: must be finite"),
    (["train", "--hidden-sizes", "64,,64"], "--hidden-sizes '64,,64': expected a "
     "comma-separated list of integers, e.g. 64,64 (an empty item)"),
    (["train", "--hidden-sizes", ""], "--hidden-sizes '': expected a comma-separated list"),
    (["train", "--env", ""], "--env '': unknown environment"),  # not CartPole-v1's preset
    (["train", "--activation", "gelu"], "--activation 'gelu' is invalid: must be one of"),
    (["train", "--action-dist", "gaussian"], "--action-dist 'gaussian' is invalid: "
     "CartPole-v1 has a discrete action space"),
    (["train", "--seeds", "0"], "--seeds 0: expected an integer >= 1"),
    (["sweep", "--chunk-updates", "-2"], "--chunk-updates -2: expected an integer >= 1"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every 0: expected an integer >= 1"),
    (["sweep", "--clip-eps", "0.1,-2e-1"], "--clip-eps -0.2 is invalid: must be > 0"),
    # argparse's own mistakes: one line and a pointer to the help, not 27 lines of usage.
    (["train", "--learning-rate"], "jaxppo train: error: argument --learning-rate: expected "
     "one argument; see `jaxppo train --help`"),
    (["train", "--seeds", "many"], "argument --seeds: invalid int value: 'many'"),
    # Python 3.11's argparse turned this into an empty list, a TypeError later on.
    (["train", "--num-envs=--"], "argument --num-envs: expected one argument, got '--'"),
    (["train", "--normalize-obs=yes"], "--no-normalize-obs: ignored explicit argument 'yes'"),
    (["eval"], "jaxppo eval: error: the following arguments are required: run_dir"),
    (["fly"], "jaxppo: error: argument COMMAND: invalid choice: 'fly'"),
    (["train", "two\nlines"], "unrecognized arguments: two\\nlines; see"),
    (["sweep", "--num-envs", "2,4"], "cannot sweep --num-envs: num_envs is a static field"),
    (["sweep", "--clip-eps", "0.1,,0.2"], "malformed list"),
    (["eval", "/nonexistent/run"], "run directory /nonexistent/run does not exist"),
    (["resume", "/nonexistent/run"], "does not exist"),
    (["eval", "/tmp", "--episodes", "0"], "--episodes 0"),
    (["train", "--cpu-devices", "0"], "--cpu-devices 0: expected an integer >= 1"),
    # This process's JAX has started: its CPU device count can no longer change.
    (["train", "--cpu-devices", "1000"], "cannot change to 1000"),
    # Sweep and resume apply --cpu-devices too (a bad --num-envs or the missing directory
    # would be the error otherwise, so nothing trains if they did not).
    (["sweep", "--cpu-devices", "1000", "--num-envs", "four"], "cannot change to 1000"),
    (["resume", "/nonexistent/run", "--cpu-devices", "1000"], "cannot change to 1000"),
])
def test_mistakes_exit_2_with_one_line(capsys, argv, message):
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.endswith("\n"), err  # one line
    assert "Traceback" not in err


@pytest.mark.parametrize("text, value", [
    ("-1e-3", -1e-3), ("-1E+2", -100.0), ("-.5", -0.5), ("-2.", -2.0), ("-3", -3.0),
    ("-inf", -np.inf), ("-1_000.5", -1000.5),
])
def test_negative_numbers_are_values_not_flags(text, value):
    config, _ = config_of("--init-log-std", text)
    assert config.init_log_std == value
    config, _ = config_of(f"--init-log-std={text}")  # the form that always worked
    assert config.init_log_std == value


def test_a_hidden_size_list_parses_to_a_tuple():
    config, _ = config_of("--hidden-sizes", "32, 16")
    assert config.hidden_sizes == (32, 16)


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

    # `trained` ran the command in this process: JAX's cache setting is still the suite's.
    assert jax.config.jax_compilation_cache_dir == os.environ["JAX_COMPILATION_CACHE_DIR"]
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


# ---------------------------------------------------------------------------------------------
# In-process units: the parsed flags, the arguments the commands pass on, the printed ranking
# and eval.json's layout, with spies in place of training and evaluation (nothing compiles).


def config_of(*argv, sweep=False):
    args = cli.build_parser().parse_args(["sweep" if sweep else "train", *argv])
    return cli._config_from_args(args, sweep)


def test_a_run_starts_from_the_env_preset():
    preset = jaxppo.preset("Pendulum-v1")
    # The preset differs from Config's defaults (else this test could not tell them apart).
    assert preset != jaxppo.Config(env_id="Pendulum-v1")
    assert config_of("--env", "Pendulum-v1") == (preset, {})
    # A flag changes its field only: 1e-3 (the preset's) -> 3e-4.
    config, _ = config_of("--env", "Pendulum-v1", "--learning-rate", "3e-4")
    assert config == preset.replace(learning_rate=3e-4)
    # No --env: CartPole-v1's preset.
    assert config_of() == (jaxppo.preset("CartPole-v1"), {})


@pytest.mark.parametrize("env, flag, field, value", [
    ("CartPole-v1", "--normalize-obs", "normalize_obs", True),  # default False
    ("CartPole-v1", "--no-normalize-obs", "normalize_obs", False),  # == default: unchanged
    ("CartPole-v1", "--no-clip-value-loss", "clip_value_loss", False),  # default True
    ("Pendulum-v1", "--clip-value-loss", "clip_value_loss", True),  # preset False
    ("CartPole-v1", "--no-anneal-lr", "anneal_lr", False),  # default True
])
def test_bool_flags_set_either_value(env, flag, field, value):
    preset = jaxppo.preset(env)
    config, _ = config_of("--env", env, flag)
    assert config == preset.replace(**{field: value})


def test_ctrl_c_outside_a_run_exits_130_without_traceback(monkeypatch, capsys):
    def interrupted(args, sweep):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_train", interrupted)
    code, _, err = run_cli(capsys, "train")
    assert code == 130
    assert "jaxppo train: interrupted" in err and "Traceback" not in err


@pytest.fixture
def run_spy(monkeypatch):
    """jaxppo.experiment.run replaced by a spy that records its arguments (the fields of its
    Output record among them) and raises a ValueError (the command then exits 2), so nothing
    trains."""
    calls = []

    def spy(config, seeds, out, *, output=None, **kwargs):
        fields = dataclasses.asdict(output or experiment.Output())
        calls.append(dict(kwargs, **fields, config=config, seeds=seeds, out=out))
        raise ValueError("spy: not training")

    monkeypatch.setattr(jaxppo.experiment, "run", spy)
    return calls


@pytest.mark.parametrize("argv, expected", [
    (["train"], dict(seeds=8, seed=0, overwrite=False, progress=True, tensorboard=False,
                     chunk_updates=None, checkpoint_every=10)),
    (["sweep"], dict(seeds=4, seed=0, overwrite=False, space=None)),
    (["sweep", "--clip-eps", "0.1,0.2"], dict(seeds=4, space={"clip_eps": [0.1, 0.2]})),
    (["train", "--seed", "3", "--seeds", "5"], dict(seeds=5, seed=3)),
    (["sweep", "--seed", "3"], dict(seeds=4, seed=3)),
    (["train", "--overwrite", "--no-progress", "--chunk-updates", "7",
      "--checkpoint-every", "2", "--out", "elsewhere"],
     dict(overwrite=True, progress=False, chunk_updates=7, checkpoint_every=2,
          out="elsewhere")),
])
def test_train_and_sweep_pass_their_flags_to_run(run_spy, capsys, argv, expected):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "spy: not training" in err
    (call,) = run_spy
    assert {k: call[k] for k in expected} == expected
    # The base config (a sweep's values travel in space).
    assert call["config"] == jaxppo.preset("CartPole-v1")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_training_on_a_known_failure_says_so_before_it_starts(run_spy, capsys, command):
    code, out, _ = run_cli(capsys, command, "--env", "SimpleBandit-bsuite")
    assert code == 2 and len(run_spy) == 1
    assert ("note: PPO is known to fail on SimpleBandit-bsuite; "
            "jaxppo.presets.KNOWN_FAILURES['SimpleBandit-bsuite'] says why") in out
    code, out, _ = run_cli(capsys, command, "--env", "CartPole-v1")
    assert code == 2 and "known to fail" not in out


@pytest.mark.parametrize("argv", [
    ["train"], ["sweep"], ["resume", "/nonexistent/run"],
])
def test_a_program_run_uses_the_compile_cache(run_spy, monkeypatch, capsys, argv):
    """As a program (argv None: sys.argv), train, sweep and resume turn on the persistent
    compile cache; not with --no-compile-cache, nor in-process (argv given)."""
    from jaxppo import cache

    calls = []
    monkeypatch.setattr(cache, "use_compile_cache", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(sys, "argv", ["jaxppo", *argv])
    assert cli.main() == 2  # the spy's or the missing directory's error
    assert len(calls) == 1
    monkeypatch.setattr(sys, "argv", ["jaxppo", *argv, "--no-compile-cache"])
    assert cli.main() == 2
    assert cli.main(argv) == 2
    assert len(calls) == 1
    capsys.readouterr()


def test_overwrite_replaces_an_existing_run(trained, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(trained, out)
    (out / "metrics.csv").write_text("stale\n")
    (out / "stale.txt").write_text("stale\n")
    code, _, err = run_cli(capsys, "train", "--seeds", str(RUNNER_SEEDS), *TINY_FLAGS,
                           "--out", str(out), "--overwrite")
    assert code == 0, err
    assert not (out / "stale.txt").exists()
    # The same config, seeds and seed: the same metrics as the original run's.
    assert (out / "metrics.csv").read_bytes() == (trained / "metrics.csv").read_bytes()


def ranking_rows(text):
    """(rank, label, rest) of each row of a printed ranking."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "setting"])
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(tuple(line.split(maxsplit=2)))
    return rows


def test_ranking_is_best_first_and_unfinished_last(capsys):
    # IQMs over seeds: a 1, b 3, c 2, d no finite return (all NaN).
    final = np.array([[1.0, 1.0], [3.0, 3.0], [np.nan, np.nan], [2.0, 2.0]])
    cli._print_ranking(["a", "b", "d", "c"], final)
    assert ranking_rows(capsys.readouterr().out) == [
        ("1", "b", "3.0 [3.0, 3.0]"),
        ("2", "c", "2.0 [2.0, 2.0]"),
        ("3", "a", "1.0 [1.0, 1.0]"),
        ("4", "d", "no finished episode"),
    ]


def fake_evaluate(calls):
    """A jaxppo.evaluate spy: records deterministic; returns[r, e] = r for run r."""

    def evaluate(configs, state, key, num_episodes, *, deterministic=True):
        calls.append(deterministic)
        runs = configs.learning_rate.shape[0]
        returns = np.repeat(np.arange(runs, dtype=np.float32)[:, None], num_episodes, axis=1)
        return jaxppo.evaluation.EvalResult(returns, np.ones_like(returns, np.int32),
                                            np.ones_like(returns, bool))

    return evaluate


@pytest.mark.parametrize("flags, deterministic", [([], True), (["--stochastic"], False)])
def test_eval_stochastic_samples_actions(trained, tmp_path, monkeypatch, capsys, flags,
                                        deterministic):
    out = tmp_path / "copy"
    shutil.copytree(trained, out)
    calls = []
    monkeypatch.setattr(jaxppo, "evaluate", fake_evaluate(calls))
    code, text, _ = run_cli(capsys, "eval", str(out), "--episodes", "1", *flags)
    assert code == 0 and calls == [deterministic]
    assert ("sampled actions" in text) is not deterministic
    assert json.loads((out / "eval.json").read_text())["deterministic"] is deterministic


def test_eval_json_returns_are_settings_by_seeds(tmp_path, monkeypatch, capsys):
    """Run r = h * S + s is setting h, seed s (experiment.Result): with returns[r] = r, a
    2-setting x 3-seed run's eval.json holds returns[h][s] == [3h + s, 3h + s]."""
    import conftest

    spec = spec_lib.make_spec(conftest.RUNNER_CONFIG, {"learning_rate": [1e-3, 3e-4]}, seeds=3)
    monkeypatch.setattr(jaxppo.experiment, "restore", lambda run_dir: (spec, None, None, 7))
    monkeypatch.setattr(jaxppo, "evaluate", fake_evaluate([]))
    code, text, _ = run_cli(capsys, "eval", str(tmp_path), "--episodes", "2")
    assert code == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert [s["label"] for s in report["settings"]] == ["learning_rate=0.001",
                                                        "learning_rate=0.0003"]
    assert [s["returns"] for s in report["settings"]] == [
        [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]],
        [[3.0, 3.0], [4.0, 4.0], [5.0, 5.0]],
    ]
    # Ranked by IQM over seeds of per-run means: setting 1 (4) above setting 0 (1).
    assert [row[:2] for row in ranking_rows(text)] == [("1", "learning_rate=0.0003"),
                                                       ("2", "learning_rate=0.001")]
