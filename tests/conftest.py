"""Shared test settings: strict rank promotion, one tiny experiment, and helpers that run code
in a fresh Python process."""

import json
import os
import subprocess
import sys
import textwrap

import jax

# Implicit rank promotion hides shape bugs ([T] + [T, 1] silently becomes [T, T]).
jax.config.update("jax_numpy_rank_promotion", "raise")

# Start JAX now, with its default CPU device count: otherwise the first in-process `jaxppo`
# command (test_cli) would split the CPU into one device per core for every later test, and
# what the suite runs on would depend on test order. The sharded paths are tested in
# subprocesses (test_sharding, test_runner_devices, test_devices).
jax.devices()


# ---------------------------------------------------------------------------------------------
# One tiny experiment shared by the experiment, evaluation and CLI tests (its compiled chunk is
# cached per program, so every run of this config in the session reuses one compilation).

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxppo  # noqa: E402

# 2 envs x 8 steps = 16 env steps per update, 7 updates; chunks of 3 updates: 3 + 3 + 1.
RUNNER_CONFIG = jaxppo.Config(num_envs=2, num_steps=8, total_timesteps=7 * 16, update_epochs=1,
                              num_minibatches=2, hidden_sizes=(8,))
RUNNER_SEEDS = 2
RUNNER_CHUNK = 3


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A whole uninterrupted run (checkpoint after every chunk) and its directory."""
    out = tmp_path_factory.mktemp("runs") / "full"
    return jaxppo.experiment.run(RUNNER_CONFIG, RUNNER_SEEDS, out, chunk_updates=RUNNER_CHUNK,
                                 checkpoint_every=1, progress=False, tensorboard=True)


def run_python(code: str, *args: str, env: dict | None = None, timeout: int = 300):
    """Run ``python -c code args`` in a fresh process (``env``: its environment, default this
    one's); returns the CompletedProcess, its output captured as text."""
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_with_devices(code: str, *args: str, devices: int = 4, timeout: int = 300):
    """Run ``python -c code args`` with ``devices`` emulated CPU devices (fixed when JAX starts,
    hence a subprocess); returns the CompletedProcess."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                        + f" --xla_force_host_platform_device_count={devices}")
    return run_python(code, *args, env=env, timeout=timeout)


def run_clean(code: str, **extra_env: str) -> dict:
    """Run ``python -c code`` (dedented) in an environment without XLA_FLAGS or
    JAX_NUM_CPU_DEVICES (``extra_env`` added), so that the code picks the device count; returns
    the JSON object printed on its last line."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(extra_env)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def tiny_training_metrics(env_id: str, **changes):
    """Metrics of a jitted `jaxppo.train` on ``env_id`` at a tiny budget: 4 envs x 16 steps,
    128 steps = 2 updates. Every metric is checked finite (but the episode statistics, NaN
    where no episode ended) and no run diverged."""
    config = jaxppo.Config(env_id=env_id, num_envs=4, num_steps=16, total_timesteps=128,
                           num_minibatches=2, update_epochs=1, hidden_sizes=(16,), **changes)
    _, metrics = jax.jit(jaxppo.train)(config, jax.random.key(0))
    np.testing.assert_array_equal(metrics.env_steps, [64, 128])  # 4 x 16 per update
    for name, value in vars(metrics).items():
        if name not in ("episode_return", "episode_length"):
            assert np.isfinite(np.asarray(value)).all(), name
    assert (np.asarray(metrics.divergence) == 0).all()
    return metrics
