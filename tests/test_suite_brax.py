"""The brax adapter: the time limit a truncation with the final observation kept, brax's done a
termination, spaces, eager and jit, vmap and loop, a tiny training run.

Brax physics compiles slowly on CPU: every test uses inverted_pendulum, the batched episode is
one compiled program, and the eager steps run the adapter's jitted raw reset and step (one
compilation each, shared with the by-hand reference, which jits the same raw methods)."""

import pytest

pytest.importorskip("brax")

import chex  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from brax import envs as brax_envs  # noqa: E402
from conftest import (  # noqa: E402
    assert_eager_equals_batched,
    assert_episode_shapes,
    episode,
    rank_promoted_jit,
    tiny_training_metrics,
)

from jaxppo import envs  # noqa: E402
from jaxppo.envs import brax as brax_adapter  # noqa: E402

NAME = "inverted_pendulum"
LIMIT = 5  # a short episode, so that the time limit is reached in a few steps
# 3 envs x 6 small cart forces (a tenth of the range: the pole tilts by at most 0.08 rad in 6
# steps, within brax's 0.2, so its own done stays 0); step 6 (index 5) starts a new episode.
ACTIONS = 0.1 * jnp.asarray([[0.5, -1.0, 0.25, 1.0, -0.5, 0.0],
                             [-0.3, 0.8, -1.0, 0.1, 0.6, 1.0],
                             [1.0, 1.0, -0.2, -0.7, 0.0, 0.4]], jnp.float32)[..., None]


@pytest.fixture(scope="module")
def env():
    return brax_adapter.make(NAME, episode_length=LIMIT)


@pytest.fixture(scope="module")
def keys():
    return jax.random.split(jax.random.key(11), 3)


@pytest.fixture(scope="module")
def batched(env, keys):
    """`episode` of 3 envs under jit(vmap): the one compiled program of the batched tests."""
    return jax.jit(jax.vmap(episode, in_axes=(None, 0, 0)), static_argnums=0)(env, keys,
                                                                               ACTIONS)


def test_ids_are_brax_physics_envs():
    assert set(brax_adapter.ids()) == set(brax_envs._envs) - {"fast", "swimmer"}
    assert len(brax_adapter.ids()) == 10  # brax 0.14.2's 12 less its test stub and swimmer
    assert set(brax_adapter.left_out()) == {"fast", "swimmer"}
    with pytest.raises(ValueError, match=r"^env_id 'brax/swimmer' is not offered by jaxppo's "
                                         r"brax adapter: its fluid forces call jnp.clip"):
        envs.make("brax/swimmer")
    env = envs.make(f"brax/{NAME}")
    assert env.env_id == f"brax/{NAME}"
    assert env.max_episode_steps == 1000  # brax.envs.create's episode_length
    assert env.suite_env.backend == "generalized"
    assert env.observation_shape == (4,)  # cart position, pole angle, their 2 velocities
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
            assert float(state.done) == 0.0  # the pole is still up: brax's own flag says so
        chex.assert_trees_all_close(steps.final_obs[i, LIMIT - 1], state.obs, rtol=1e-5,
                                    atol=1e-6)
        reset_key = jax.random.split(step_keys[i, LIMIT - 1])[1]  # the base class's reset key
        chex.assert_trees_all_close(steps.obs[i, LIMIT - 1], suite_reset(reset_key).obs,
                                    rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(steps.reward[:, :LIMIT], 1.0)  # +1 per upright step
    np.testing.assert_array_equal(steps.episode_return[:, LIMIT - 1], LIMIT)  # 5 x 1
    np.testing.assert_array_equal(steps.episode_length[:, LIMIT - 1], LIMIT)
    np.testing.assert_array_equal(steps.episode_length[:, LIMIT], 1)  # a new episode


def test_fallen_pole_is_a_termination_with_the_final_observation(env):
    _, state = env.reset(jax.random.key(0))
    pipeline = state.env_state.pipeline_state
    # Tilt the pole to 0.5 rad: past brax's 0.2 rad (inverted_pendulum.py's done).
    fallen = state.replace(env_state=state.env_state.replace(
        pipeline_state=pipeline.replace(q=pipeline.q.at[1].set(0.5))))
    action = jnp.zeros((1,), jnp.float32)
    by_hand = rank_promoted_jit(env.suite_env.step)(fallen.env_state, action)
    assert float(by_hand.done) == 1.0
    new_state, step = env.step(jax.random.key(1), fallen, action)
    assert bool(step.terminated) and not bool(step.truncated)
    chex.assert_trees_all_close(step.final_obs, by_hand.obs)
    assert abs(float(step.final_obs[1])) > 0.2
    assert abs(float(step.obs[1])) <= 0.01  # a fresh reset: angle within brax's +-0.01 noise
    assert int(new_state.episode_length) == 0


def test_flags_are_bool_scalars_and_obs_keep_their_shape(env, batched):
    assert_episode_shapes(env, batched, num_envs=3, steps=6)


def test_eager_steps_of_each_env_equal_the_jitted_vmap(env, keys, batched):
    # One comparison for both: each env alone, run eagerly (its physics through the adapter's
    # jitted raw reset and step), against the three under jit(vmap).
    assert_eager_equals_batched(env, keys, ACTIONS, batched)


@pytest.mark.slow  # a suite's physics or world compiled into a whole run
def test_tiny_training_run_has_finite_metrics():
    tiny_training_metrics(f"brax/{NAME}")


def test_env_params_are_the_physics_named_with_a_hint(env):
    assert env.tunable_params() == ("damping_scale", "friction_scale", "gravity", "mass_scale")
    assert env.param_error("mass_scal") == (
        "'mass_scal' is not a parameter of brax/inverted_pendulum (did you mean "
        "'mass_scale'?); "
        "its numeric parameters: damping_scale, friction_scale, gravity, mass_scale")
    import jaxppo

    with pytest.raises(ValueError, match=(
            r"^Config.env_params=\{'damping_scale': -1.0\} is invalid: 'damping_scale' "
            r"scales the model's own values and must be > 0")):
        jaxppo.validate(jaxppo.Config(env_id=f"brax/{NAME}",
                                      env_params={"damping_scale": -1.0}))


def test_traced_physics_params_step_as_a_system_built_with_them(env):
    """Gravity -20, bodies twice as heavy and joints three times as damped, traced through
    `with_params`, against the env stepping a System that brax's own loader built from a
    MuJoCo model with those values: brax's pipelines read its copies of them (``gravity``,
    the links' inertia, the dofs' damping), which `physics.with_physics` sets too."""
    import copy

    from brax.io import mjcf

    changed = copy.deepcopy(env.suite_env.sys.mj_model)
    changed.opt.gravity[2] = -20.0
    changed.body_mass[:] *= 2.0
    changed.body_inertia[:] *= 2.0
    changed.dof_damping[:] *= 3.0
    assert changed.dof_damping.any()  # inverted_pendulum's joints are damped
    by_hand = brax_adapter.make(NAME, episode_length=LIMIT)
    by_hand.suite_env.sys = mjcf.load_model(changed)

    def final_obs(one):
        return episode(one, jax.random.key(5), ACTIONS[0])[1].final_obs

    traced = jax.jit(lambda g, m, d: final_obs(env.with_params(
        {"gravity": g, "mass_scale": m, "damping_scale": d})))
    heavy = traced(-20.0, 2.0, 3.0)
    np.testing.assert_allclose(heavy, jax.jit(lambda: final_obs(by_hand))(), rtol=1e-5,
                               atol=1e-6)
    # The same program with the model's own values is the env without params.
    default = traced(-9.81, 1.0, 1.0)
    np.testing.assert_allclose(default, jax.jit(lambda: final_obs(env))(), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(heavy, default, atol=1e-3)
