"""A user's own environment: `jaxppo.envs.register`, the check it runs (`jaxppo.envs.checker`)
and packages' ``jaxppo.envs`` entry points. Every test unregisters what it registers (`make`
caches per id)."""

import contextlib
import importlib.metadata
import re
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import jaxppo
from jaxppo import cli, envs
from jaxppo.envs import checker, core

LIMIT = 20  # Drift's time limit (steps)
STEP = 0.1  # how far one action moves the walker
# test_cli's tiny run: 2 envs x 8 steps = 16 env steps per update, 7 updates.
TINY_FLAGS = ["--num-envs", "2", "--num-steps", "8", "--total-timesteps", "112",
              "--update-epochs", "1", "--num-minibatches", "2", "--hidden-sizes", "8",
              "--chunk-updates", "3", "--no-progress"]


# ---------------------------------------------------------------------------------------------
# A user's gymnax-style env, and broken variants of it.


@struct.dataclass
class DriftState(environment.EnvState):
    x: jax.Array


@struct.dataclass
class DriftParams(environment.EnvParams):
    max_steps_in_episode: int = LIMIT


class Drift(environment.Environment):
    """A walker on a line, starting in [-0.1, 0.1]: action 1 steps right, 0 left; reward
    1 - |x|. Past |x| = 0.5 the episode terminates; after LIMIT steps gymnax cuts it
    (truncated). Observation [x, t / LIMIT]: a fresh episode's is [x0, 0]."""

    @property
    def default_params(self) -> DriftParams:
        return DriftParams()

    def reset_env(self, key, params):
        state = DriftState(time=0, x=jax.random.uniform(key, (), minval=-0.1, maxval=0.1))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.stack([state.x, state.time / LIMIT]).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        state = DriftState(time=state.time + 1, x=state.x + jnp.where(action == 1, STEP, -STEP))
        reward = (1.0 - jnp.abs(state.x)).astype(jnp.float32)
        return self.get_obs(state), state, reward, jnp.abs(state.x) >= 0.5, {}

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)


class BadShapes(Drift):
    """Observes 3 values (its observation_space says 2), terminated as a float, truncated
    as an array [1]."""

    def get_obs(self, state, params=None, key=None):
        return jnp.stack([state.x, state.time / LIMIT, 0.0]).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = super().step_env(key, state, action, params)
        return obs, state, reward, terminated.astype(jnp.float32), info

    def is_truncated(self, state, params):
        return jnp.reshape(state.time >= params.max_steps_in_episode, (1,))


class Raises(Drift):
    def step_env(self, key, state, action, params):
        raise RuntimeError("the walker fell off\nsecond line, not shown")


class DropsFinal(Drift):
    """Its own step without auto-reset of the observation: after an episode ends, obs is
    still the last one (the state is reset)."""

    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        obs, new_state, reward, terminated, _ = self.step_env(key, state, action, params)
        truncated = self.is_truncated(new_state, params)
        _, fresh = self.reset_env(key, params)
        done = terminated | truncated
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, new_state)
        return obs, state, reward, terminated, truncated, {"final_observation": obs}


# ---------------------------------------------------------------------------------------------
# Drift as a `SuiteEnv` subclass and as an adapter-shaped env written from scratch.


class DriftSuite(envs.SuiteEnv):
    env_id = "DriftSuite-v0"
    action_space = envs.ActionSpace(discrete=True, num_actions=2)
    time_limit = LIMIT

    def _reset(self, key):
        x = jax.random.uniform(key, (), minval=-0.1, maxval=0.1)
        return jnp.stack([x, 0.0]), (x, jnp.zeros((), jnp.int32))

    def _step(self, key, state, action):
        x, t = state
        x, t = x + jnp.where(action == 1, STEP, -STEP), t + 1
        obs = jnp.stack([x, t / LIMIT])
        return obs, (x, t), 1.0 - jnp.abs(x), jnp.abs(x) >= 0.5, jnp.zeros((), jnp.bool_)


class Walker:
    """Drift as an adapter-shaped env (reset and step giving a `core.Step`, with masks), and
    switches that break it: ``obs_size`` observed values, terminated as ``flag_dtype``,
    truncated of ``truncated_shape``, ``drops_final``: no auto-reset of the observation."""

    action_space = envs.ActionSpace(discrete=True, num_actions=2)
    observation_shape = (2,)
    observation_size = 2
    has_action_mask = True
    max_episode_steps = LIMIT

    def __init__(self, obs_size=2, flag_dtype=jnp.bool_, truncated_shape=(), drops_final=False,
                 mask_size=2):
        self.obs_size, self.flag_dtype, self.truncated_shape = obs_size, flag_dtype, \
            truncated_shape
        self.drops_final, self.mask_size = drops_final, mask_size

    def _observe(self, x, t):
        return jnp.concatenate([jnp.stack([x, t / LIMIT]), jnp.zeros(self.obs_size - 2)])

    def reset(self, key):
        x = jax.random.uniform(key, (), minval=-0.1, maxval=0.1)
        zero = jnp.zeros((), jnp.int32)
        return self._observe(x, 0), core.EpisodeState((x, zero), jnp.zeros(()), zero)

    def action_mask(self, state):
        return jnp.ones((self.mask_size,), jnp.bool_)

    def step(self, key, state, action):
        x, t = state.env_state
        x, t = x + jnp.where(action == 1, STEP, -STEP), t + 1
        terminated = jnp.abs(x) >= 0.5
        truncated = (t >= LIMIT) & ~terminated
        done = terminated | truncated
        reward = 1.0 - jnp.abs(x)
        final_obs = self._observe(x, t)
        reset_obs, reset_state = self.reset(jax.random.split(key)[1])
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        new_state = core.EpisodeState(
            jax.tree.map(lambda a, b: jnp.where(done, a, b), reset_state.env_state, (x, t)),
            jnp.where(done, 0.0, episode_return), jnp.where(done, 0, episode_length))
        obs = final_obs if self.drops_final else jnp.where(done, reset_obs, final_obs)
        return new_state, core.Step(
            obs=obs, reward=reward, terminated=terminated.astype(self.flag_dtype),
            truncated=jnp.reshape(truncated, self.truncated_shape), final_obs=final_obs,
            episode_return=episode_return, episode_length=episode_length)


# ---------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope="module")
def drift():
    """Drift registered (and checked) as "Drift-v0" for the module's training tests."""
    envs.register("Drift-v0", Drift)
    yield "Drift-v0"
    envs.unregister("Drift-v0")


@pytest.fixture
def registered_ids():
    """Ids a test registers, unregistered after it (whether it passed or not)."""
    ids = []
    yield ids
    for env_id in ids:
        with contextlib.suppress(KeyError):  # not registered, or unregistered by the test
            envs.unregister(env_id)


def register(ids, env_id, factory, **kwargs):
    ids.append(env_id)
    return envs.register(env_id, factory, **kwargs)


def check_lines(env_id, factory):
    """The problem lines of registering ``factory`` (the header line checked and dropped)."""
    with pytest.raises(ValueError) as error:
        envs.register(env_id, factory)
    assert not envs.is_known(env_id)
    header, *lines = str(error.value).splitlines()
    assert header == f"env_id {env_id!r} failed the environment check:"
    assert all(line.startswith("  - ") for line in lines)
    return [line[4:] for line in lines]


# ---------------------------------------------------------------------------------------------
# A registered env trains by id.


def test_a_registered_gymnax_style_env_trains_through_jaxppo_train(drift):
    env = envs.make(drift)
    assert isinstance(env, envs.GymnaxEnv) and env.env_id == drift
    assert envs.is_known(drift) and env.observation_shape == (2,)
    assert env.max_episode_steps == LIMIT
    config = jaxppo.Config(env_id=drift, num_envs=4, num_steps=16, total_timesteps=128,
                           num_minibatches=2, update_epochs=1, hidden_sizes=(16,))
    _, metrics = jax.jit(jaxppo.train)(config, jax.random.key(0))
    assert np.isfinite(np.asarray(metrics.total_loss)).all()
    # 2 updates x 16 steps = 32 steps per env; an episode lasts at most LIMIT = 20 steps,
    # so each of the 4 envs ends at least one.
    assert int(np.sum(metrics.episode_count)) >= 4


def test_a_registered_env_trains_and_sweeps_from_the_command_line(drift, tmp_path, capsys):
    code = cli.main(["train", "--env", drift, *TINY_FLAGS, "--out", str(tmp_path / "run"),
                     "--seeds", "2"])
    text = capsys.readouterr().out
    assert code == 0 and f"PPO on {drift}: 2 seeds x 7 updates" in text
    # 2 settings x 1 seed: the 2-run program the train above compiled.
    code = cli.main(["sweep", "--env", drift, "--learning-rate", "1e-3,3e-4", *TINY_FLAGS,
                     "--out", str(tmp_path / "sweep"), "--seeds", "1"])
    text = capsys.readouterr().out
    assert code == 0 and "2 settings x 1 seed " in text
    ranked = [line for line in text.splitlines() if line.strip()[:1].isdigit() and "=" in line]
    assert len(ranked) == 2 and all("learning_rate=" in line for line in ranked)


def test_registered_ids_are_listed(drift, monkeypatch, capsys):
    monkeypatch.setattr(envs, "SUITES", {})  # the suites' rows are test_envs' and test_cli's
    assert envs.registered()[-1] == drift and envs.is_known(drift)
    assert envs.catalog()[-1] == ("registered", (drift,), None)
    assert cli.main(["envs"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["registered:", f"  {drift}"]


# ---------------------------------------------------------------------------------------------
# What a factory may give, and the ids it may take.


def test_a_suite_env_and_an_adapter_shaped_env_pass_the_check(registered_ids):
    suite = register(registered_ids, "DriftSuite-v0", DriftSuite)
    walker = register(registered_ids, "Walker-v0", Walker)
    assert envs.make("DriftSuite-v0") is suite and envs.make("Walker-v0") is walker


def test_a_pair_of_env_and_params_keeps_the_params(registered_ids):
    env = register(registered_ids, "Drift7-v0", lambda: (Drift(), DriftParams(7)), check=False)
    assert envs.make("Drift7-v0") is env and env.max_episode_steps == 7


@pytest.mark.parametrize("factory, message", [
    (Drift(), "factory for env_id 'Odd-v0': expected a callable of no arguments, got Drift"),
    (lambda: 3, "the factory for env_id 'Odd-v0' returned int: expected a gymnax-style "
                "environment"),
])
def test_a_factory_that_gives_no_env_is_refused(registered_ids, factory, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        register(registered_ids, "Odd-v0", factory)
    assert not envs.is_known("Odd-v0")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "navix/x", "ProbeValue-v0"])
def test_jaxppos_own_ids_are_taken(registered_ids, env_id):
    def factory():
        raise AssertionError("a taken id must be refused before the factory runs")

    with pytest.raises(ValueError, match=re.escape(
            f"env_id {env_id!r} is taken by jaxppo's own environments; choose another id")):
        register(registered_ids, env_id, factory)


def test_registering_again_needs_overwrite_and_unregister_forgets(registered_ids, monkeypatch):
    monkeypatch.setattr(envs, "SUITES", {})  # registered() without the suites' ids
    before = envs.registered()
    register(registered_ids, "Again-v0", lambda: (Drift(), DriftParams(5)), check=False)
    with pytest.raises(ValueError, match=re.escape(
            "env_id 'Again-v0' is already registered; pass overwrite=True to replace it")):
        envs.register("Again-v0", Drift, check=False)
    assert envs.make("Again-v0").max_episode_steps == 5
    envs.register("Again-v0", lambda: (Drift(), DriftParams(7)), overwrite=True, check=False)
    assert envs.make("Again-v0").max_episode_steps == 7
    envs.unregister("Again-v0")
    assert envs.registered() == before and not envs.is_known("Again-v0")
    with pytest.raises(ValueError, match="unknown env_id 'Again-v0'"):
        envs.make("Again-v0")
    with pytest.raises(KeyError):
        envs.unregister("Again-v0")


def test_overwrite_reaches_a_program_jitted_before(registered_ids):
    # jit keys its trace by the config (its env_id), not by the env behind the id.
    def limit(config, x):
        return x + envs.make(config.env_id).max_episode_steps

    config = jaxppo.Config(env_id="Limit-v0")
    register(registered_ids, "Limit-v0", lambda: (Drift(), DriftParams(5)), check=False)
    assert int(jax.jit(limit)(config, 0)) == 5
    envs.register("Limit-v0", lambda: (Drift(), DriftParams(7)), overwrite=True, check=False)
    assert int(jax.jit(limit)(config, 0)) == 7


# ---------------------------------------------------------------------------------------------
# The check's messages: one line per problem.


def test_a_gymnax_env_of_wrong_shapes_and_flags_is_one_error_a_line_each():
    assert check_lines("BadShapes-v0", BadShapes) == [
        "BadShapes.reset's observation and BadShapes.step_env's observation have shape (3,); "
        "expected (2,), the shape of observation_space(params)",
        "BadShapes.step_env returns terminated as a float32 scalar; expected a bool scalar",
        "BadShapes.is_truncated returns truncated as bool of shape (1,); expected a bool "
        "scalar",
    ]


def test_a_step_that_raises_is_its_type_and_first_line():
    assert check_lines("Raises-v0", Raises) == [
        "Raises.step_env(key, state, action, params) raised RuntimeError: the walker fell off"]


def test_a_step_without_auto_reset_is_found():
    # Stepping 0.1 from x0 in [-0.1, 0.1], an episode ends at |x| >= 0.5 or t = 20: then
    # Drift observes t / 20 > 0, where a reset's observation has 0.
    [line] = check_lines("DropsFinal-v0", DropsFinal)
    assert re.fullmatch(
        r"Step\.obs \[\S+, \S+\] after the episode of env \d ended at step \d+ is not a "
        r"reset's observation \(resets give \[\S+, 0\] to \[\S+, 0\]\); expected the first "
        r"observation of a fresh episode \(auto-reset\), the last one going to "
        r"Step\.final_obs", line), line


def test_an_adapter_shaped_env_is_checked_at_its_step():
    lines = check_lines("Walker-v0", lambda: Walker(
        obs_size=3, flag_dtype=jnp.float32, truncated_shape=(1,), drops_final=True,
        mask_size=3))
    assert lines[:4] == [
        "reset(key)'s observation, Step.obs and Step.final_obs have shape (3,); expected "
        "observation_shape (2,)",
        "Step.terminated is a float32 scalar; expected a bool scalar",
        "Step.truncated is bool of shape (1,); expected a bool scalar",
        "action_mask(state) is bool of shape (3,); expected bool of shape (2,), one flag per "
        "action",
    ]
    assert len(lines) == 5 and lines[4].startswith("Step.obs [") and "ended at step" in lines[4]


class Impure(Walker):
    """Starts at x = 0.01 x the number of resets run so far: a side effect, which jit runs
    once, when it traces."""

    def __init__(self):
        super().__init__()
        self.resets = 0

    def reset(self, key):
        self.resets += 1
        x = jnp.float32(0.01 * self.resets)
        obs, state = super().reset(key)
        return self._observe(x, 0), state.replace(env_state=(x, state.env_state[1]))


def test_a_reset_that_jit_changes_is_found():
    [line] = check_lines("Impure-v0", Impure)
    assert re.fullmatch(r"reset under jax\.jit gives observation \[\S+, 0\] for env 0, eagerly "
                        r"\[\S+, 0\]; expected the same results \(allclose\)", line), line


@pytest.mark.parametrize("space, line", [
    (envs.ActionSpace(discrete=True, num_actions=3, shape=(2,), nvec=(2, 2)),
     "action_space.num_actions is 3; expected 4, the sum of nvec (2, 2) (the size of a flat "
     "mask)"),
    (envs.ActionSpace(discrete=True, num_actions=0),
     "action_space.num_actions is 0; expected an int >= 1 for a discrete space"),
    (envs.ActionSpace(discrete=False, shape=(2,), low=np.zeros(2, np.float32),
                      high=np.ones(3, np.float32)),
     "action_space.high is float32 of shape (3,); expected a float32 numpy array of the "
     "action's shape (2,)"),
    (envs.ActionSpace(discrete=False, shape=(1,), low=np.ones(1, np.float32),
                      high=np.zeros(1, np.float32)),
     "action_space bounds low=[1], high=[0]; expected low <= high, without nan"),
    ("discrete", "action_space is a str; expected a jaxppo.envs.ActionSpace"),
])
def test_an_inconsistent_action_space_is_named(space, line):
    env = Walker()
    env.action_space = space
    with pytest.raises(ValueError) as error:
        checker.check_env(env, "Walker-v0")
    # The space is unusable, so nothing runs: the one line is the space's.
    assert str(error.value).splitlines()[1:] == [f"  - {line}"]


# ---------------------------------------------------------------------------------------------
# Entry points.


ENTRY_ID = "PluginCartPole-v0"


@pytest.fixture
def entry_point(tmp_path, monkeypatch):
    """A package on sys.path whose ``jaxppo.envs`` entry point ENTRY_ID names a factory of
    gymnax's CartPole (a pair (env, params)), as an installed package would declare it."""
    package = tmp_path / "jaxppo_plugin_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "envs.py").write_text(textwrap.dedent("""
        import gymnax

        def make_cartpole():
            return gymnax.make("CartPole-v1")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint(ENTRY_ID, "jaxppo_plugin_test.envs:make_cartpole",
                                          envs.ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points

    def entry_points(**params):
        if params.get("group") == envs.ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints([point])
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    envs._entry_points.cache_clear()
    envs.make.cache_clear()
    yield ENTRY_ID
    monkeypatch.undo()
    envs._entry_points.cache_clear()
    envs.make.cache_clear()
    for name in ("jaxppo_plugin_test.envs", "jaxppo_plugin_test"):
        sys.modules.pop(name, None)


def test_an_entry_point_env_is_made_listed_and_trained(entry_point, monkeypatch, tmp_path,
                                                       capsys):
    env = envs.make(entry_point)
    assert isinstance(env, envs.GymnaxEnv) and env.env_id == entry_point
    assert env.observation_shape == (4,) and env.max_episode_steps == 500  # CartPole's
    assert envs.is_known(entry_point)
    with pytest.raises(ValueError, match="already registered; pass overwrite=True"):
        envs.register(entry_point, Drift)
    with monkeypatch.context() as patch:
        patch.setattr(envs, "SUITES", {})  # the suites' rows are test_envs' and test_cli's
        # After the ids registered in this process (the module's Drift-v0).
        assert envs.registered()[-1] == entry_point
        assert envs.catalog()[-1][0] == "registered"
        assert cli.main(["envs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"  {entry_point}" and "registered:" in lines
    code = cli.main(["train", "--env", entry_point, *TINY_FLAGS, "--out",
                     str(tmp_path / "run"), "--seeds", "2"])
    assert code == 0 and f"PPO on {entry_point}: 2 seeds" in capsys.readouterr().out
