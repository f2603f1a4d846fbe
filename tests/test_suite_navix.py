"""The navix adapter: navix's truncation and termination kept apart, the final observation kept,
symbolic grids for the CNN, jit and vmap, every registered id, and a tiny training run."""

import pytest

pytest.importorskip("navix")

import functools  # noqa: E402

import chex  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import navix  # noqa: E402
import numpy as np  # noqa: E402
from conftest import reset_and_steps, scan_steps, tiny_training_metrics  # noqa: E402

from jaxppo import envs  # noqa: E402
from jaxppo.envs import navix as navix_adapter  # noqa: E402

EMPTY = "Navix-Empty-5x5-v0"
# Navix's MiniGrid action set (navix/actions.py MINIGRID_ACTION_SET): 0 rotate ccw,
# 1 rotate cw, 2 forward, 3 pickup, 4 drop, 5 toggle, 6 done.
ROTATE_CW, FORWARD = 1, 2


def _navix_by_hand(key, actions):
    """Navix's own env (navix.make, its public step) from ``reset(key)`` over ``actions``:
    the observation [T, H, W, 3] and step_type [T] after each step."""
    env = navix.make(EMPTY)

    def body(timestep, action):
        timestep = env.step(timestep, action)
        return timestep, (timestep.observation, timestep.step_type)

    with jax.numpy_rank_promotion("allow"):  # navix relies on NumPy's rank promotion
        return jax.lax.scan(body, env.reset(key), jnp.asarray(actions, jnp.int32))[1]


def test_ids_are_navix_registry():
    assert navix_adapter.ids() == tuple(navix.registry())
    assert len(navix_adapter.ids()) == 41  # navix 0.7.4 registers 41 envs
    assert envs.make(f"navix/{EMPTY}").env_id == f"navix/{EMPTY}"


def test_spaces_are_symbolic_grids_and_minigrid_actions():
    env = envs.make(f"navix/{EMPTY}")
    assert env.observation_shape == (5, 5, 3)  # 5x5 cells of (tag, colour, state)
    assert env.action_space.discrete and env.action_space.num_actions == 7
    assert not env.has_action_mask
    assert env.max_episode_steps == 100  # navix.make's default max_steps
    obs, _ = env.reset(jax.random.key(0))
    assert obs.dtype == jnp.float32
    # The agent (tag 10) at (1, 1) facing east (state 0), the goal (tag 8) at (3, 3).
    np.testing.assert_array_equal(obs[1, 1], [10, 0, 0])
    np.testing.assert_array_equal(obs[3, 3, 0], 8)


def test_time_limit_is_a_truncation_with_navix_final_observation():
    env = envs.make(f"navix/{EMPTY}")
    # One step east then 99 turns: never at the goal, so step 100 is navix's time cut.
    actions = [FORWARD] + [ROTATE_CW] * 99
    key, step_key = jax.random.split(jax.random.key(3))
    _, state = env.reset(key)
    steps, keys = jax.jit(scan_steps, static_argnums=0)(env, state, step_key, actions)
    observations, step_types = jax.jit(_navix_by_hand)(key, actions)
    assert not steps.done[:99].any()
    assert bool(steps.truncated[99]) and not bool(steps.terminated[99])
    assert int(step_types[99]) == int(navix.StepType.TRUNCATION)
    np.testing.assert_array_equal(steps.final_obs[99], observations[99].astype(np.float32))
    # Facing north after 99 clockwise turns from east: (0 + 99) % 4 = 3, at (1, 2).
    np.testing.assert_array_equal(steps.final_obs[99][1, 2], [10, 0, 3])
    reset_key = jax.random.split(keys[99])[1]  # the base class's reset key of that step
    np.testing.assert_array_equal(steps.obs[99], env.reset(reset_key)[0])
    assert int(steps.episode_length[99]) == 100


def test_goal_is_a_termination_with_the_final_observation():
    env = envs.make(f"navix/{EMPTY}")
    # From (1, 1) facing east: two steps to (1, 3), turn south, two steps to the goal (3, 3).
    actions = [FORWARD, FORWARD, ROTATE_CW, FORWARD, FORWARD]
    reset_obs, state = env.reset(jax.random.key(0))
    steps, _ = jax.jit(scan_steps, static_argnums=0)(env, state, jax.random.key(1), actions)
    observations, step_types = jax.jit(_navix_by_hand)(jax.random.key(0), actions)
    assert steps.terminated.dtype == steps.truncated.dtype == jnp.bool_
    assert steps.reward.dtype == jnp.float32 and steps.terminated.shape == (5,)  # 5 scalars
    assert steps.obs.shape == steps.final_obs.shape == (5, *env.observation_shape)
    assert not steps.done[:4].any()
    assert bool(steps.terminated[4]) and not bool(steps.truncated[4])
    assert int(step_types[4]) == int(navix.StepType.TERMINATION)
    assert float(steps.reward[4]) == 1.0 and float(steps.episode_return[4]) == 1.0
    np.testing.assert_array_equal(steps.final_obs[4], observations[4].astype(np.float32))
    np.testing.assert_array_equal(steps.final_obs[4][3, 3], [10, 0, 1])  # the agent, facing south
    np.testing.assert_array_equal(steps.obs[4], reset_obs)  # a fixed start: the same reset


def test_eager_equals_jit():
    env = envs.make("navix/Navix-Empty-Random-5x5-v0")  # a random start
    run = functools.partial(reset_and_steps, env, actions=(FORWARD, ROTATE_CW))
    chex.assert_trees_all_equal(run(jax.random.key(7)), jax.jit(run)(jax.random.key(7)))


def test_vmap_over_three_envs_equals_a_loop():
    env = envs.make("navix/Navix-Dynamic-Obstacles-5x5-Random-v0")  # random starts and moves
    run = jax.jit(functools.partial(reset_and_steps, env, actions=(FORWARD, FORWARD)))
    keys = jax.random.split(jax.random.key(7), 3)
    batched = jax.jit(jax.vmap(run))(keys)
    for i in range(3):
        chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[i], batched), run(keys[i]))


def test_every_registered_id_resets_and_steps_when_traced():
    # Traced as jit traces them (jax.eval_shape: no compilation, which costs seconds per id);
    # compiled runs of Empty, Dynamic-Obstacles and the CNN training run are tested above.
    for name in navix_adapter.ids():
        env = envs.make(f"navix/{name}")
        height, width = navix.make(name).height, navix.make(name).width
        obs, steps = jax.eval_shape(
            functools.partial(reset_and_steps, env, actions=(FORWARD,)), jax.random.key(0))
        assert env.observation_shape == obs.shape == (height, width, 3), name
        assert steps.obs.shape == steps.final_obs.shape == (1, *(height, width, 3)), name
        assert steps.reward.dtype == jnp.float32 and steps.terminated.dtype == jnp.bool_, name


@pytest.mark.slow  # a suite's physics or world compiled into a whole run
def test_tiny_training_run_with_the_cnn_has_finite_metrics():
    tiny_training_metrics(f"navix/{EMPTY}", encoder="cnn")
