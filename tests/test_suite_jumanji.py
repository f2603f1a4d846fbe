"""The jumanji adapter: time-limit cuts as truncations, terminal states as terminations, the
final observation kept, masks equal to jumanji's (per component and joint), jit and vmap,
every offered id, and a tiny training run with masks."""

import pytest

pytest.importorskip("jumanji")

import functools  # noqa: E402

import chex  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jumanji  # noqa: E402
import numpy as np  # noqa: E402
from conftest import reset_and_steps, scan_steps, tiny_training_metrics  # noqa: E402

from jaxppo import envs  # noqa: E402
from jaxppo.envs import jumanji as jumanji_adapter  # noqa: E402


def _by_hand(env, key, actions):
    """A jumanji env (as registered: ``jumanji.make(name)``, made outside any trace, where
    its specs would hold tracers) reset with ``key`` and stepped over ``actions`` [T, ...]
    without any reset: the TimeSteps [T]."""

    def body(state, action):
        return env.step(state, action)

    with jax.numpy_rank_promotion("allow"):  # the suite's code broadcasts
        return jax.lax.scan(body, env.reset(key)[0], jnp.asarray(actions, jnp.int32))[1]


def _flat(*arrays):
    return np.concatenate([np.ravel(np.asarray(x, np.float32)) for x in arrays])


def test_ids_are_the_registry_but_the_left_out():
    registered = jumanji.registered_environments()
    assert set(jumanji_adapter.ids()) | set(jumanji_adapter.LEFT_OUT) == registered
    assert len(jumanji_adapter.ids()) == 24  # jumanji 1.1.2: 26 registered, 2 left out


def test_a_time_limit_ended_as_termination_becomes_a_truncation():
    name = "RubiksCube-partly-scrambled-v0"  # 20 steps (registered time_limit), no mask
    env = envs.make(f"jumanji/{name}")
    assert env.max_episode_steps == 20 and not env.has_action_mask
    actions = [[0, 0, 0]] * 20  # one face turned over and over: 4 states, none solved
    key, step_key = jax.random.split(jax.random.key(0))
    steps, keys = jax.jit(scan_steps, static_argnums=0)(env, env.reset(key)[1], step_key,
                                                          actions)
    own = jax.jit(_by_hand, static_argnums=0)(jumanji.make(name), key, actions)
    assert not steps.done[:19].any() and not own.last()[:19].any()
    # Jumanji ends step 20 as a termination (discount 0); it is the time limit's cut.
    assert bool(own.last()[19]) and float(own.discount[19]) == 0.0
    assert bool(steps.truncated[19]) and not bool(steps.terminated[19])
    expected = _flat(own.observation.cube[19], own.observation.step_count[19])
    np.testing.assert_array_equal(steps.final_obs[19], expected)
    assert expected[-1] == 20  # the step count of the final observation
    reset_key = jax.random.split(keys[19])[1]  # the base class's reset key of that step
    np.testing.assert_array_equal(steps.obs[19], env.reset(reset_key)[0])


def test_jumanji_own_truncation_stays_a_truncation():
    name = "LevelBasedForaging-v0"  # 100 steps, jumanji's truncation (discount 1) at the limit
    env = envs.make(f"jumanji/{name}")
    actions = [[0, 0]] * 100  # both agents wait (NOOP): no food is eaten, nothing terminates
    key, step_key = jax.random.split(jax.random.key(1))
    steps, _ = jax.jit(scan_steps, static_argnums=0)(env, env.reset(key)[1], step_key,
                                                      actions)
    own = jax.jit(_by_hand, static_argnums=0)(jumanji.make(name), key, actions)
    assert bool(own.last()[99]) and (np.asarray(own.discount[99]) == 1.0).all()
    assert not steps.done[:99].any()
    assert bool(steps.truncated[99]) and not bool(steps.terminated[99])
    expected = _flat(own.observation.agents_view[99], own.observation.step_count[99])
    np.testing.assert_array_equal(steps.final_obs[99], expected)


def test_a_wall_hit_is_a_termination_with_the_final_observation():
    name = "Snake-v1"
    env = envs.make(f"jumanji/{name}")
    actions = [0] * 12  # UP 12 times on a 12-row board: the head leaves it by the 12th
    key, step_key = jax.random.split(jax.random.key(2))
    steps, _ = jax.jit(scan_steps, static_argnums=0)(env, env.reset(key)[1], step_key,
                                                      actions)
    own = jax.jit(_by_hand, static_argnums=0)(jumanji.make(name), key, actions)
    end = int(np.argmax(np.asarray(own.last())))
    assert bool(own.last()[end]) and float(own.discount[end]) == 0.0
    assert not steps.done[:end].any()
    assert bool(steps.terminated[end]) and not bool(steps.truncated[end])
    expected = _flat(own.observation.grid[end], own.observation.step_count[end])
    np.testing.assert_array_equal(steps.final_obs[end], expected)
    assert env.observation_shape == (12 * 12 * 5 + 1,)  # the grid and the step count, no mask


# JobShop's action for key 3: each machine's first job its mask allows (20: idle).
JOBS = [12, 0, 9, 2, 6, 3, 7, 20, 13, 1]


@pytest.mark.parametrize("name, action, jumanji_action, num_actions", [
    ("Game2048-v1", 1, 1, 4),  # discrete: the mask as it is
    ("JobShop-v0", JOBS, JOBS, 210),  # 10 machines x 21 choices: the rows concatenated
    ("Minesweeper-v0", 23, [2, 3], 100),  # joint [10, 10]: index 23 = row 2 * 10 + column 3
])
def test_masks_and_actions_are_jumanji_own(name, action, jumanji_action, num_actions):
    env = envs.make(f"jumanji/{name}")
    own_env = jumanji.make(name)
    key = jax.random.key(3)
    assert env.has_action_mask and env.action_space.num_actions == num_actions

    def ours(key):
        _, state = env.reset(key)
        after, step = env.step(key, state, jnp.asarray(action, jnp.int32))
        return env.action_mask(state), env.action_mask(after), step

    def own(key):
        with jax.numpy_rank_promotion("allow"):
            state, first = own_env.reset(key)
            return first, own_env.step(state, jnp.asarray(jumanji_action, jnp.int32))[1]

    reset_mask, step_mask, step = jax.jit(ours)(key)
    first, second = jax.jit(own)(key)
    assert reset_mask.shape == (num_actions,) and reset_mask.dtype == jnp.bool_
    np.testing.assert_array_equal(reset_mask, np.ravel(first.observation.action_mask))
    assert not bool(step.done)  # so the mask after the step is the stepped state's
    np.testing.assert_array_equal(step_mask, np.ravel(second.observation.action_mask))
    if name == "Minesweeper-v0":  # the cell the action revealed, and only it, is closed
        assert np.flatnonzero(reset_mask & ~step_mask).tolist() == [23]


def test_eager_equals_jit_with_bool_flags_and_grid_observations():
    env = envs.make("jumanji/Game2048-v1")  # a random board, a random new tile per step
    run = functools.partial(reset_and_steps, env, actions=(0, 1))
    obs, steps = jax.jit(run)(jax.random.key(7))
    chex.assert_trees_all_equal(run(jax.random.key(7)), (obs, steps))
    assert env.observation_shape == (4, 4, 1)  # the board alone, as a grid for the CNN
    assert obs.shape == steps.obs.shape[1:] == steps.final_obs.shape[1:] == (4, 4, 1)
    assert steps.terminated.dtype == steps.truncated.dtype == jnp.bool_
    assert steps.terminated.shape == steps.reward.shape == (2,)  # a scalar per step
    assert steps.reward.dtype == jnp.float32


def test_vmap_over_three_envs_equals_a_loop():
    env = envs.make("jumanji/Game2048-v1")
    run = jax.jit(functools.partial(reset_and_steps, env, actions=(3, 2)))
    keys = jax.random.split(jax.random.key(7), 3)
    batched = jax.jit(jax.vmap(run))(keys)
    for i in range(3):
        chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[i], batched), run(keys[i]))


def _reset_and_step(env, key):
    obs, state = env.reset(key)
    action = jnp.zeros(env.action_space.shape, jnp.int32)
    state, step = env.step(key, state, action)
    return obs, step, env.action_mask(state)


def test_every_offered_id_resets_and_steps_when_traced():
    # Traced as jit traces them (jax.eval_shape: no compilation, which costs seconds per id);
    # compiled runs of one env per kind of action space are tested above.
    for name in jumanji_adapter.ids():
        env = envs.make(f"jumanji/{name}")
        obs, step, mask = jax.eval_shape(functools.partial(_reset_and_step, env),
                                         jax.random.key(0))
        assert obs.shape == step.final_obs.shape == env.observation_shape, name
        assert step.reward.shape == () and step.reward.dtype == jnp.float32, name
        assert step.terminated.dtype == step.truncated.dtype == jnp.bool_, name
        assert mask.shape == (max(env.action_space.num_actions, 1),), name


def test_a_board_beside_other_fields_leads_the_observation_for_the_cnn():
    snake = envs.make("jumanji/Snake-v1")
    assert snake.observation_grid == (12, 12, 5)  # the grid, then the step count
    maze = envs.make("jumanji/Maze-v0")
    key = jax.random.key(3)
    obs, _ = jax.jit(maze.reset)(key)
    own = jumanji.make("Maze-v0").reset(key)[1].observation
    # Maze's fields are agent_position, target_position, walls, step_count: the walls, its
    # one board, come first, as a [10, 10, 1] grid, then the rest in their order.
    assert maze.observation_grid == (10, 10, 1)
    np.testing.assert_array_equal(obs, _flat(own.walls, own.agent_position,
                                             own.target_position, own.step_count))
    # No single board: Tetris has its grid and the falling tetromino, both 2-D.
    assert envs.make("jumanji/Tetris-v0").observation_grid is None


@pytest.mark.slow  # a suite's physics or world compiled into a whole run
def test_tiny_training_run_with_masks_has_finite_metrics():
    tiny_training_metrics("jumanji/LevelBasedForaging-v0", action_masking=True)


@pytest.mark.slow  # a suite's world compiled into a whole run
def test_tiny_cnn_run_reads_the_grid_among_the_fields():
    tiny_training_metrics("jumanji/Snake-v1", encoder="cnn", action_masking=True)
