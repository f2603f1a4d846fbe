"""Divergence caught per run: a run whose update goes non-finite is frozen at its last finite
state, with what went first and when recorded, and the runs beside it are untouched.

The fault is injected by a test-only environment whose reward is NaN at one chosen step of
one run's envs (`FAULT`), set in that run's env state after `init`.
"""

import functools
import importlib
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import jaxppo
from jaxppo import envs, normalize, update
from jaxppo.envs import probes

train_lib = importlib.import_module("jaxppo.train")  # jaxppo.train is the function

FAULT = "ProbeFault-v0"
CONFIG = jaxppo.Config(env_id=FAULT, num_envs=4, num_steps=8, total_timesteps=4 * 8 * 5,
                       update_epochs=2, num_minibatches=2)
FAULTY_RUN, FAULTY_UPDATE = 1, 2


@struct.dataclass
class FaultState(environment.EnvState):
    sign: jax.Array
    fault_at: jax.Array


class ProbeFault(environment.Environment):
    """ProbeValue's observation and reward (+-1, the sign), in an episode that never ends,
    except that the reward is NaN at the step whose time equals the state's ``fault_at``."""

    @property
    def default_params(self):
        return probes.ProbeParams(max_steps_in_episode=10**6)

    def reset_env(self, key, params):
        sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        state = FaultState(time=0, sign=sign, fault_at=jnp.int32(-1))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.reshape(state.sign, (1,)).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        reward = jnp.where(state.time == state.fault_at, jnp.nan, state.sign)
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, reward.astype(jnp.float32), jnp.array(False), {}

    def is_terminated(self, state, params):
        return jnp.array(False)

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params=None):
        return spaces.Discrete(1)

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


@pytest.fixture(scope="module", autouse=True)
def fault_env():
    patch = pytest.MonkeyPatch()
    patch.setitem(probes.PROBES, FAULT, ProbeFault)
    envs.make.cache_clear()
    yield
    patch.undo()
    envs.make.cache_clear()


def _initial_states(fault_at_step: int | None):
    """Three runs' initial states; with ``fault_at_step``, run FAULTY_RUN's envs give a NaN
    reward at that env step."""
    keys = jax.random.split(jax.random.key(0), 3)
    states = jax.vmap(jaxppo.init, in_axes=(None, 0))(CONFIG, keys)
    if fault_at_step is None:
        return states
    fault_at = states.env_state.env_state.fault_at.at[FAULTY_RUN].set(fault_at_step)
    env_state = states.env_state.replace(
        env_state=states.env_state.env_state.replace(fault_at=fault_at))
    return states.replace(env_state=env_state)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _run(config, states, num_updates):
    return jax.vmap(train_lib.run_updates, in_axes=(None, 0, None))(config, states, num_updates)


@pytest.fixture(scope="module")
def runs():
    # The NaN reward falls at the 4th step of the faulty update's rollout.
    faulty = _run(CONFIG, _initial_states(FAULTY_UPDATE * 8 + 3), 5)
    healthy = _run(CONFIG, _initial_states(None), 5)
    return faulty, healthy


def test_a_nan_reward_freezes_its_run_and_records_where(runs):
    (state, metrics), _ = runs
    # NaN reward -> NaN advantages -> NaN loss: the loss is the first non-finite quantity.
    np.testing.assert_array_equal(state.divergence, [0, 1, 0])
    assert train_lib.DIVERGENCE[1] == "non-finite loss"
    np.testing.assert_array_equal(state.diverged_at, [-1, FAULTY_UPDATE, -1])
    np.testing.assert_array_equal(metrics.divergence[FAULTY_RUN], [0, 0, 1, 1, 1])
    assert not np.isfinite(metrics.total_loss[FAULTY_RUN, FAULTY_UPDATE])
    for leaf in jax.tree.leaves((state.params, state.normalizers)):
        assert np.isfinite(np.asarray(leaf)).all()


def test_a_frozen_run_keeps_the_state_before_its_faulty_update(runs):
    (state, _), _ = runs
    before, _ = _run(CONFIG, _initial_states(FAULTY_UPDATE * 8 + 3), FAULTY_UPDATE)
    frozen = jax.tree.map(lambda x: x[FAULTY_RUN], state)
    expected = jax.tree.map(lambda x: x[FAULTY_RUN], before)
    chex.assert_trees_all_equal(frozen.params, expected.params)
    chex.assert_trees_all_equal(frozen.opt_state, expected.opt_state)
    chex.assert_trees_all_equal(frozen.normalizers, expected.normalizers)
    assert int(frozen.update_step) == 5  # the run's clock goes on


def test_the_runs_beside_a_diverged_one_are_bit_for_bit_unchanged(runs):
    (state, metrics), (healthy_state, healthy_metrics) = runs
    for run in (0, 2):
        chex.assert_trees_all_equal(jax.tree.map(lambda x, r=run: x[r], state),
                                    jax.tree.map(lambda x, r=run: x[r], healthy_state))
        chex.assert_trees_all_equal(jax.tree.map(lambda x, r=run: x[r], metrics),
                                    jax.tree.map(lambda x, r=run: x[r], healthy_metrics))
    np.testing.assert_array_equal(healthy_metrics.divergence, np.zeros((3, 5)))


def _info(loss=1.0, grad_norm=1.0):
    zero = jnp.float32(0.0)
    return update.UpdateInfo(total_loss=jnp.float32(loss), policy_loss=zero, value_loss=zero,
                             entropy=zero, approx_kl=zero, clip_fraction=zero,
                             grad_norm=jnp.float32(grad_norm), explained_variance=zero,
                             ent_coef=zero, gradient_steps=jnp.int32(1))


@pytest.mark.parametrize(
    ("loss", "grad_norm", "param", "statistic", "cause"),
    [
        (1.0, 1.0, 1.0, 1.0, 0),
        (np.nan, np.inf, np.nan, np.nan, 1),  # the loss comes first
        (1.0, np.inf, np.nan, 1.0, 2),
        (1.0, 1.0, np.nan, np.nan, 3),
        (1.0, 1.0, 1.0, np.inf, 4),
    ],
)
def test_divergence_cause_names_the_first_non_finite_quantity(loss, grad_norm, param,
                                                               statistic, cause):
    params = {"w": jnp.array([0.5, param], jnp.float32), "steps": jnp.int32(3)}
    normalizers = normalize.Normalizers.create((2,), 4)
    normalizers = normalizers.replace(obs=normalizers.obs.replace(
        mean=jnp.array([0.0, statistic], jnp.float32)))
    got = train_lib.divergence_cause(_info(loss, grad_norm), params, normalizers)
    assert int(got) == cause, train_lib.DIVERGENCE[int(got)]


def test_the_runner_reports_a_diverged_setting_and_leaves_it_out(tmp_path, capsys):
    """A learning rate of 1e30 throws the params far out within update 0: that setting's
    runs are reported by name, their final return is None, and the aggregate is the others'."""
    from jaxppo import cli, experiment

    config = jaxppo.Config(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 6,
                           update_epochs=2, num_minibatches=2)
    result = experiment.run(config, seeds=2, out=tmp_path / "run", progress=False,
                            plots=False, space={"learning_rate": [2.5e-4, 1e30]})
    assert [(d["setting"], d["seed"], d["update"]) for d in result.divergences()] == [
        (1, 0, 0), (1, 1, 0)]
    final = result.final_returns()
    assert np.isfinite(final[0]).all() and np.isnan(final[1]).all()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["runs_diverged"] == 2
    cause = result.divergences()[0]["cause"]
    assert cause in train_lib.DIVERGENCE[1:]
    assert summary["diverged"][0] == (
        f"setting 1 (learning_rate=1e+30), seed 0: diverged at update 0 ({cause})")
    healthy, lost = summary["settings"]
    assert healthy["runs_diverged"] == 0 and "aggregate" in healthy
    assert lost["runs_diverged"] == 2 and lost["final_returns"] == [None, None]
    assert "aggregate" not in lost
    cli._print_run_table(result)
    printed = capsys.readouterr().out
    assert "2 of 4 runs diverged" in printed
    assert "every run diverged" in printed
