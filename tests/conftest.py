"""Shared test settings: strict rank promotion, one tiny experiment, and helpers that run code
in a fresh Python process."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

# Implicit rank promotion hides shape bugs ([T] + [T, 1] silently becomes [T, T]).
jax.config.update("jax_numpy_rank_promotion", "raise")

# The tests' programs are tiny, so compiling them is most of the suite's time, and XLA's CPU
# backend optimizations and its fused-kernel emitters are half of that. The suite compiles
# without them, in this process
# and in those its tests start, so that results compared across processes are computed alike
# (the level changes the last bits of some float results). The learning checks run their long
# programs optimized: `full_speed_env`.
QUICK_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
# The flags as the suite found them, kept in the environment: pytest-xdist's workers inherit
# the controller's environment, where XLA_FLAGS already holds QUICK_COMPILE.
_XLA_FLAGS = os.environ.setdefault("JAXPPO_TESTS_XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
os.environ["XLA_FLAGS"] = f"{_XLA_FLAGS} {QUICK_COMPILE}".strip()


def full_speed_env(**extra: str) -> dict:
    """This process's environment with XLA_FLAGS as the suite found it (``extra`` added)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if _XLA_FLAGS:
        env["XLA_FLAGS"] = _XLA_FLAGS
    return {**env, **extra}


# Start JAX now, with its default CPU device count: otherwise the first in-process `jaxppo`
# command (test_cli) would split the CPU into one device per core for every later test, and
# what the suite runs on would depend on test order. The sharded paths are tested in
# subprocesses (test_sharding, test_runner_devices, test_devices).
jax.devices()


# The longest tests first, so that pytest-xdist's workers finish together instead of one
# running a notebook alone at the end: notebooks, env suites and multi-device subprocesses.
_LONG_FIRST = ("test_notebooks.py", "test_suite_", "test_runner_devices.py", "test_devices.py",
               "test_sharding.py")


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core this process may run on, not the host's count."""
    from jaxppo import devices

    return devices.usable_cores()


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.path.name.startswith(_LONG_FIRST))  # stable


@pytest.fixture(scope="session", autouse=True)
def shared_compile_cache(tmp_path_factory):
    """One persistent compile cache for the run, shared by pytest-xdist's workers and the
    processes the tests start: many tests build the same small programs, and each process
    would compile them again. Programs compiled in under 0.2 s are not worth the disk. A
    folder and threshold set in the environment (JAX_COMPILATION_CACHE_DIR, ...) are kept."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above every worker's own
    folder = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(root / "xla"))
    seconds = os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(seconds))
    return folder


# ---------------------------------------------------------------------------------------------
# One tiny experiment shared by the experiment, evaluation and CLI tests (its compiled chunk is
# cached per program, so every run of this config in the session reuses one compilation).

import numpy as np  # noqa: E402

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


def scan_steps(env, state, key, actions):
    """A suite env's ``step`` over ``actions`` [T, ...] from ``state``, one key per step,
    under ``lax.scan``: the Steps [T] and the step keys [T]."""
    import jax.numpy as jnp

    keys = jax.random.split(key, len(actions))

    def body(state, inputs):
        step_key, action = inputs
        return env.step(step_key, state, action)

    return jax.lax.scan(body, state, (keys, jnp.asarray(actions, jnp.int32)))[1], keys


def reset_and_steps(env, key, actions):
    """Reset with ``key``, then ``env.step`` with ``key`` over ``actions`` (a Python tuple):
    the reset observation and the Steps, stacked."""
    import jax.numpy as jnp

    obs, state = env.reset(key)
    steps = []
    for action in actions:
        state, step = env.step(key, state, jnp.asarray(action, jnp.int32))
        steps.append(step)
    return obs, jax.tree.map(lambda *xs: jnp.stack(xs), *steps)


def episode(env, key, actions, *, eager: bool = False):
    """``env.reset`` then ``env.step`` over ``actions`` [T, ...], one key per step (both split
    from ``key``): the reset observation, the Steps [T] and the step keys [T]. Under
    ``lax.scan``, or with ``eager`` one call per step (a physics adapter's jitted raw step)."""
    import jax.numpy as jnp

    reset_key, steps_key = jax.random.split(key)
    obs, state = env.reset(reset_key)
    keys = jax.random.split(steps_key, actions.shape[0])
    if eager:
        steps = []
        for step_key, action in zip(keys, actions, strict=True):
            state, step = env.step(step_key, state, action)
            steps.append(step)
        return obs, jax.tree.map(lambda *xs: jnp.stack(xs), *steps), keys

    def body(state, inputs):
        step_key, action = inputs
        return env.step(step_key, state, action)

    return obs, jax.lax.scan(body, state, (keys, actions))[1], keys


def rank_promoted_jit(method):
    """A raw physics env's ``method`` under jit, with NumPy's rank promotion (brax and MJX rely
    on it) as the adapters run it, so that a by-hand reference shares their compilation."""
    jitted = jax.jit(method)

    def call(*args):
        with jax.numpy_rank_promotion("allow"):
            return jitted(*args)

    return call


def assert_episode_shapes(env, batched, *, num_envs: int, steps: int) -> None:
    """``batched``, `episode` under vmap over ``num_envs`` envs of ``steps`` steps: float32
    observations in the env's shape, bool scalar flags, float32 rewards."""
    import jax.numpy as jnp

    obs, out, _ = batched
    assert obs.shape == (num_envs, *env.observation_shape)
    assert out.obs.shape == out.final_obs.shape == (num_envs, steps, *env.observation_shape)
    for flag in (out.terminated, out.truncated):
        assert flag.shape == (num_envs, steps) and flag.dtype == jnp.bool_
    assert out.reward.shape == (num_envs, steps) and out.reward.dtype == jnp.float32
    assert obs.dtype == out.obs.dtype == jnp.float32


def assert_eager_equals_batched(env, keys, actions, batched) -> None:
    """Each env's `episode` run eagerly equals its slice of ``batched`` (`episode` under
    jit(vmap) over ``keys`` and ``actions``), keys and truncations included."""
    import chex
    import numpy as np

    for i in range(len(keys)):
        obs, steps, step_keys = episode(env, keys[i], actions[i], eager=True)
        chex.assert_trees_all_close((obs, steps), jax.tree.map(lambda x, i=i: x[i], batched[:2]),
                                    rtol=1e-5, atol=1e-6)
        assert (jax.random.key_data(step_keys) == jax.random.key_data(batched[2][i])).all()
        np.testing.assert_array_equal(steps.truncated, batched[1].truncated[i])
