"""The MuJoCo Playground adapter: its episode_length a truncation with the final observation
kept, its NaN guard a termination, spaces, eager and jit, vmap and loop, a tiny training run.

MJX physics compiles slowly on CPU: every test uses CartpoleBalance, the batched episode is
one compiled program, and the eager steps run the adapter's jitted raw reset and step (one
compilation each, shared with the by-hand reference, which jits the same raw methods)."""

import pytest

pytest.importorskip("mujoco_playground")

import chex  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from conftest import (  # noqa: E402
    assert_eager_equals_batched,
    assert_episode_shapes,
    episode,
    rank_promoted_jit,
    tiny_training_metrics,
)
from mujoco_playground import registry  # noqa: E402

from jaxppo import envs  # noqa: E402
from jaxppo.envs import playground as playground_adapter  # noqa: E402

NAME = "CartpoleBalance"
LIMIT = 5  # a short episode_length, so that the time limit is reached in a few steps
# 3 envs x 6 steps of one cart force each, so that step 6 (index 5) starts a new episode.
ACTIONS = jnp.asarray([[0.5, -1.0, 0.25, 1.0, -0.5, 0.0],
                       [-0.3, 0.8, -1.0, 0.1, 0.6, 1.0],
                       [1.0, 1.0, -0.2, -0.7, 0.0, 0.4]], jnp.float32)[..., None]


@pytest.fixture(scope="module")
def env():
    return playground_adapter.make(NAME, episode_length=LIMIT)


@pytest.fixture(scope="module")
def keys():
    return jax.random.split(jax.random.key(11), 3)


@pytest.fixture(scope="module")
def batched(env, keys):
    """`episode` of 3 envs under jit(vmap): the one compiled program of the batched tests."""
    return jax.jit(jax.vmap(episode, in_axes=(None, 0, 0)), static_argnums=0)(env, keys,
                                                                               ACTIONS)


def test_ids_are_the_dm_control_suite_registry():
    assert playground_adapter.ids() == tuple(registry.dm_control_suite.ALL_ENVS)
    assert len(playground_adapter.ids()) == 25  # playground 0.2.0's DM Control Suite
    env = envs.make(f"playground/{NAME}")
    assert env.env_id == f"playground/{NAME}"
    assert env.max_episode_steps == 1000  # cartpole.default_config's episode_length
    assert env.observation_shape == (5,)  # cart position, pole cos and sin, 2 velocities
    space = env.action_space
    assert not space.discrete and space.shape == (1,)
    np.testing.assert_array_equal(space.low, [-1.0])
    np.testing.assert_array_equal(space.high, [1.0])


def test_time_limit_is_a_truncation_with_the_suites_final_observation(env, keys, batched):
    _, steps, step_keys = batched
    suite_reset = rank_promoted_jit(env.suite_env.reset)
    suite_step = rank_promoted_jit(env.suite_env.step)
    assert not steps.done[:, :LIMIT - 1].any()
    assert steps.truncated[:, LIMIT - 1].all() and not steps.terminated[:, LIMIT - 1].any()
    for i in range(3):
        state = suite_reset(jax.random.split(keys[i])[0])  # `episode`'s reset key
        for action in ACTIONS[i, :LIMIT]:
            state = suite_step(state, action)
            assert float(state.done) == 0.0  # playground has no time limit of its own
        chex.assert_trees_all_close(steps.final_obs[i, LIMIT - 1], state.obs, rtol=1e-5,
                                    atol=1e-6)
        reset_key = jax.random.split(step_keys[i, LIMIT - 1])[1]  # the base class's reset key
        chex.assert_trees_all_close(steps.obs[i, LIMIT - 1], suite_reset(reset_key).obs,
                                    rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(steps.episode_length[:, LIMIT - 1], LIMIT)
    np.testing.assert_array_equal(steps.episode_length[:, LIMIT], 1)  # a new episode


def test_nan_physics_is_a_termination_with_finite_values(env):
    _, state = env.reset(jax.random.key(0))
    data = state.env_state.data
    broken = state.replace(env_state=state.env_state.replace(
        data=data.replace(qvel=jnp.full_like(data.qvel, jnp.nan))))
    action = jnp.zeros((1,), jnp.float32)
    assert float(rank_promoted_jit(env.suite_env.step)(broken.env_state, action).done) == 1.0
    new_state, step = env.step(jax.random.key(1), broken, action)
    assert bool(step.terminated) and not bool(step.truncated)
    # The NaN observation and reward of that step are zeroed, not passed on.
    assert np.isfinite(np.asarray(step.final_obs)).all() and float(step.reward) == 0.0
    assert np.isfinite(np.asarray(step.obs)).all()
    assert int(new_state.episode_length) == 0
    assert not np.isnan(np.asarray(new_state.env_state.data.qvel)).any()  # reset


def test_flags_are_bool_scalars_and_obs_keep_their_shape(env, batched):
    assert_episode_shapes(env, batched, num_envs=3, steps=6)


def test_eager_steps_of_each_env_equal_the_jitted_vmap(env, keys, batched):
    # One comparison for both: each env alone, run eagerly (its physics through the adapter's
    # jitted raw reset and step), against the three under jit(vmap).
    assert_eager_equals_batched(env, keys, ACTIONS, batched)


@pytest.mark.slow  # a suite's physics or world compiled into a whole run
def test_tiny_training_run_has_finite_metrics():
    tiny_training_metrics(f"playground/{NAME}")


def test_env_params_are_the_physics_named_with_a_hint(env):
    assert env.tunable_params() == ("damping_scale", "friction_scale", "gravity", "mass_scale")
    assert env.param_error("gravity") is None
    assert env.param_error("gravty") == (
        "'gravty' is not a parameter of playground/CartpoleBalance (did you mean 'gravity'?); "
        "its numeric parameters: damping_scale, friction_scale, gravity, mass_scale")
    with pytest.raises(ValueError, match="env_params: 'gravty' is not a parameter"):
        env.with_params({"gravty": 1.0})


def test_a_scale_that_is_not_positive_is_refused_in_one_line():
    import jaxppo

    config = jaxppo.Config(env_id=f"playground/{NAME}", env_params={"mass_scale": 0.0})
    with pytest.raises(ValueError, match=(
            r"^Config.env_params=\{'mass_scale': 0.0\} is invalid: 'mass_scale' scales the "
            r"model's own values and must be > 0")):
        jaxppo.validate(config)
    jaxppo.validate(config.replace(env_params={"mass_scale": 0.5, "gravity": 0.0}))


def test_traced_physics_params_step_as_a_model_built_with_them(env):
    """Gravity -20 and bodies twice as heavy, traced through `with_params`, against the same
    env stepping a MuJoCo model built with those values (playground's own way)."""
    import copy

    from mujoco import mjx

    changed = copy.deepcopy(env.suite_env.mj_model)
    changed.opt.gravity[2] = -20.0
    changed.body_mass[:] *= 2.0
    changed.body_inertia[:] *= 2.0
    by_hand = playground_adapter.make(NAME, episode_length=LIMIT)
    by_hand.suite_env._mjx_model = mjx.put_model(changed, impl="jax")

    def final_obs(one):
        return episode(one, jax.random.key(5), ACTIONS[0])[1].final_obs

    traced = jax.jit(lambda g, m: final_obs(env.with_params({"gravity": g, "mass_scale": m})))
    heavy = traced(-20.0, 2.0)
    np.testing.assert_allclose(heavy, jax.jit(lambda: final_obs(by_hand))(), rtol=1e-5,
                               atol=1e-6)
    # The same program with the model's own values is the env without params.
    default = traced(-9.81, 1.0)
    np.testing.assert_allclose(default, jax.jit(lambda: final_obs(env))(), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(heavy, default, atol=1e-3)


@pytest.mark.slow  # a suite's physics compiled into a whole run
def test_a_sweep_over_gravity_trains_in_one_call():
    import jaxppo

    config = jaxppo.Config(env_id=f"playground/{NAME}", num_envs=4, num_steps=16,
                           total_timesteps=128, num_minibatches=2, update_epochs=1,
                           hidden_sizes=(16,))
    result = jaxppo.sweep(config, {"env_params.gravity": [-9.81, -30.0]}, seeds=1)
    losses = np.asarray(result.metrics.total_loss)
    assert np.isfinite(losses).all()
    assert not np.allclose(losses[0], losses[1])
