"""The XLand-MiniGrid adapter: xminigrid's truncation and termination kept apart, the final
observation kept, egocentric grids for the CNN, jit and vmap, every MiniGrid id, params passed
through, and a tiny training run."""

import pytest

pytest.importorskip("xminigrid")

import functools  # noqa: E402

import chex  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import xminigrid  # noqa: E402
from conftest import reset_and_steps, scan_steps, tiny_training_metrics  # noqa: E402

from jaxppo import envs  # noqa: E402
from jaxppo.envs import xminigrid as xminigrid_adapter  # noqa: E402

EMPTY = "MiniGrid-Empty-5x5"
# xminigrid's actions (xminigrid/core/actions.py): 0 forward, 1 turn right, 2 turn left,
# 3 pick up, 4 put down, 5 toggle.
FORWARD, TURN_RIGHT = 0, 1


def _xminigrid_by_hand(name, key, actions):
    """xminigrid's own env from ``reset(key)`` over ``actions``: the observation [T, V, V, 2],
    step type [T] and discount [T] after each step."""
    env, params = xminigrid.make(name)

    def body(timestep, action):
        timestep = env.step(params, timestep, action)
        return timestep, (timestep.observation, timestep.step_type, timestep.discount)

    return jax.lax.scan(body, env.reset(params, key), jnp.asarray(actions, jnp.int32))[1]


def test_ids_are_the_minigrid_ids_of_the_registry():
    names = xminigrid_adapter.ids()
    assert names == tuple(n for n in xminigrid.registered_environments()
                          if n.startswith("MiniGrid-"))
    assert len(names) == 23  # xminigrid 0.9.3 registers 23 MiniGrid and 21 XLand envs
    assert envs.make(f"xminigrid/{EMPTY}").env_id == f"xminigrid/{EMPTY}"
    # The XLand ids need a ruleset (module docstring): not ids here, and asked for, one line
    # says why.
    assert not envs.is_known("xminigrid/XLand-MiniGrid-R1-9x9")
    assert set(xminigrid_adapter.left_out()) == {
        n for n in xminigrid.registered_environments() if n.startswith("XLand-")}
    with pytest.raises(ValueError, match=(
            r"^env_id 'xminigrid/XLand-MiniGrid-R1-9x9' is not offered by jaxppo's xminigrid "
            r"adapter: its task is a ruleset, and the default one has no goal")):
        envs.make("xminigrid/XLand-MiniGrid-R1-9x9")


def test_spaces_are_egocentric_grids_and_six_actions():
    env = envs.make(f"xminigrid/{EMPTY}")
    assert env.observation_shape == (7, 7, 2)  # the 7x7 view of (tile, colour)
    assert env.action_space.discrete and env.action_space.num_actions == 6
    assert not env.has_action_mask
    assert env.max_episode_steps == 100  # xminigrid's 4 * 5 * 5 for Empty-5x5
    obs, _ = env.reset(jax.random.key(0))
    assert obs.dtype == jnp.float32
    # The agent stands at the bottom middle of its view, (6, 3), facing up (east in the
    # grid, from (1, 1)): the goal (tile 6, green 2) at (3, 3) is two cells ahead, two right.
    np.testing.assert_array_equal(obs[4, 5], [6, 2])
    np.testing.assert_array_equal(obs[6, 3], [1, 7])  # the floor under the agent


def test_time_limit_is_a_truncation_with_xminigrid_final_observation():
    env = envs.make(f"xminigrid/{EMPTY}")
    actions = [FORWARD] + [TURN_RIGHT] * 99  # never at the goal: step 100 is the time cut
    key, step_key = jax.random.split(jax.random.key(3))
    _, state = env.reset(key)
    steps, keys = jax.jit(scan_steps, static_argnums=0)(env, state, step_key, actions)
    observations, step_types, discounts = jax.jit(
        _xminigrid_by_hand, static_argnums=0)(EMPTY, key, actions)
    assert not steps.done[:99].any()
    assert bool(steps.truncated[99]) and not bool(steps.terminated[99])
    assert int(step_types[99]) == 2 and float(discounts[99]) == 1.0  # LAST, not absorbing
    np.testing.assert_array_equal(steps.final_obs[99], observations[99].astype(np.float32))
    reset_key = jax.random.split(keys[99])[1]  # the base class's reset key of that step
    np.testing.assert_array_equal(steps.obs[99], env.reset(reset_key)[0])
    assert int(steps.episode_length[99]) == 100 and float(steps.episode_return[99]) == 0.0


def test_goal_is_a_termination_with_the_final_observation():
    env = envs.make(f"xminigrid/{EMPTY}")
    # From (1, 1) facing east: two steps to (1, 3), turn south, two steps to the goal (3, 3).
    actions = [FORWARD, FORWARD, TURN_RIGHT, FORWARD, FORWARD]
    reset_obs, state = env.reset(jax.random.key(0))
    steps, _ = jax.jit(scan_steps, static_argnums=0)(env, state, jax.random.key(1), actions)
    observations, _, discounts = jax.jit(_xminigrid_by_hand, static_argnums=0)(
        EMPTY, jax.random.key(0), actions)
    assert steps.terminated.dtype == steps.truncated.dtype == jnp.bool_
    assert steps.reward.dtype == jnp.float32 and steps.terminated.shape == (5,)
    assert not steps.done[:4].any()
    assert bool(steps.terminated[4]) and not bool(steps.truncated[4])
    assert float(discounts[4]) == 0.0
    # xminigrid pays 1 - 0.9 * t / max_steps: 1 - 0.9 * 5 / 100 = 0.955.
    np.testing.assert_allclose(steps.reward[4], 0.955, rtol=1e-6)
    np.testing.assert_allclose(steps.episode_return[4], 0.955, rtol=1e-6)
    np.testing.assert_array_equal(steps.final_obs[4], observations[4].astype(np.float32))
    np.testing.assert_array_equal(steps.obs[4], reset_obs)  # a fixed start: the same reset


def test_eager_equals_jit():
    env = envs.make("xminigrid/MiniGrid-EmptyRandom-5x5")  # a random start
    run = functools.partial(reset_and_steps, env, actions=(FORWARD, TURN_RIGHT))
    chex.assert_trees_all_equal(run(jax.random.key(7)), jax.jit(run)(jax.random.key(7)))


def test_vmap_over_three_envs_equals_a_loop():
    env = envs.make("xminigrid/MiniGrid-EmptyRandom-5x5")
    run = jax.jit(functools.partial(reset_and_steps, env, actions=(FORWARD, FORWARD)))
    keys = jax.random.split(jax.random.key(2), 3)
    batched = jax.jit(jax.vmap(run))(keys)
    starts = {tuple(np.asarray(batched[0][i, ..., 0]).ravel()) for i in range(3)}
    assert len(starts) > 1  # the keys drew different starts
    for i in range(3):
        chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[i], batched), run(keys[i]))


def test_every_id_resets_and_steps_when_traced():
    # Traced as jit traces them (jax.eval_shape: no compilation); compiled runs above.
    for name in xminigrid_adapter.ids():
        env = envs.make(f"xminigrid/{name}")
        view = xminigrid.make(name)[1].view_size
        obs, steps = jax.eval_shape(
            functools.partial(reset_and_steps, env, actions=(FORWARD,)), jax.random.key(0))
        assert env.observation_shape == obs.shape == (view, view, 2), name
        assert steps.obs.shape == steps.final_obs.shape == (1, *(view, view, 2)), name
        assert steps.reward.dtype == jnp.float32 and steps.terminated.dtype == jnp.bool_, name


def test_params_pass_to_xminigrid_and_a_registered_env_trains():
    """An XLand ruleset or other params go through the constructor; registered, the env is an
    id like any other (here Empty-5x5 cut at 7 steps)."""
    short = xminigrid_adapter.XMiniGridEnv(EMPTY, env_id="ShortEmpty-v0", max_steps=7)
    assert short.max_episode_steps == 7
    _, state = short.reset(jax.random.key(0))
    steps, _ = jax.jit(scan_steps, static_argnums=0)(short, state, jax.random.key(1),
                                                      [TURN_RIGHT] * 7)
    assert bool(steps.truncated[6]) and not steps.done[:6].any()
    envs.register("ShortEmpty-v0", lambda: short)
    try:
        metrics = tiny_training_metrics("ShortEmpty-v0", encoder="cnn")
        assert np.isfinite(np.asarray(metrics.episode_length)).all()  # 7-step episodes ended
    finally:
        envs.unregister("ShortEmpty-v0")


@pytest.mark.slow  # a whole run compiled
def test_tiny_training_run_with_the_cnn_has_finite_metrics():
    tiny_training_metrics(f"xminigrid/{EMPTY}", encoder="cnn")
