"""Dynamics of the memory, multi-discrete and image probes, on the gymnax objects and through
the adapter (`envs.make`). Nothing is trained here; test_probes.py holds the learning tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxppo import envs
from jaxppo.envs import probes

DELAY = probes.ProbeMemory.DELAY
KEY = jax.random.key(0)


def _memory_episode(sign: float, actions):
    """Steps a ProbeMemory episode from sign ``sign``; returns the observations it shows (the
    reset one, then the pre-reset one after each step), rewards and terminations."""
    probe = probes.ProbeMemory()
    params = probe.default_params
    state = probes.ProbeState(sign=jnp.float32(sign), time=0)
    observations = [probe.get_obs(state)]
    rewards, terminations = [], []
    for t, action in enumerate(actions):
        _, state, reward, terminated, truncated, info = probe.step(
            jax.random.key(t), state, action, params)
        observations.append(info["final_observation"])
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        assert not bool(truncated)
    return np.asarray(observations), rewards, terminations


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_memory_cue_is_shown_only_at_the_first_step(sign):
    observations, _, _ = _memory_episode(sign, [0] * (DELAY + 1))
    # Rows t = 0..DELAY (the query) and DELAY + 1 (after the end): [cue, query flag].
    expected = np.zeros((DELAY + 2, 2), np.float32)
    expected[0, 0] = sign
    expected[DELAY, 1] = 1.0
    np.testing.assert_array_equal(observations, expected)
    # The query step looks the same for both signs: only memory can tell them apart.
    np.testing.assert_array_equal(observations[DELAY], [0.0, 1.0])


@pytest.mark.parametrize(("sign", "right", "wrong"), [(1.0, 1, 0), (-1.0, 0, 1)])
def test_memory_rewards_only_the_answer_at_the_query(sign, right, wrong):
    # Any action before the query earns 0 and does not end the episode; at t = DELAY the
    # right action earns +1, the wrong one -1, and the episode terminates: DELAY + 1 steps.
    for early in (right, wrong):
        _, rewards, terminations = _memory_episode(sign, [early] * DELAY + [right])
        assert rewards == [0.0] * DELAY + [1.0]
        assert terminations == [False] * DELAY + [True]
        _, rewards, terminations = _memory_episode(sign, [early] * DELAY + [wrong])
        assert rewards == [0.0] * DELAY + [-1.0]
        assert terminations == [False] * DELAY + [True]


def test_memory_time_limit_leaves_room_for_the_episode():
    # Truncation must not cut the DELAY + 1 = 5 steps.
    assert probes.ProbeMemory().default_params.max_steps_in_episode > DELAY + 1


def test_memory_through_the_adapter():
    env = envs.make("ProbeMemory-v0")
    assert env.observation_shape == (2,) and env.observation_size == 2
    assert env.action_space.discrete and env.action_space.num_actions == 2
    assert env.action_space.shape == () and not env.action_space.multi_discrete
    assert not env.has_action_mask
    obs, state = env.reset(KEY)
    sign = float(obs[0])
    assert sign in (-1.0, 1.0)
    np.testing.assert_array_equal(obs, [sign, 0.0])
    right = int(sign > 0)
    for t in range(DELAY + 1):
        state, step = env.step(jax.random.key(t + 1), state, jnp.int32(right))
        assert bool(step.terminated) == (t == DELAY) and not bool(step.truncated)
    # Rewards 0 + 0 + 0 + 0 + 1 over 5 steps; the pre-reset obs is past the query, [0, 0], and
    # the next episode shows its own cue.
    assert float(step.reward) == 1.0
    assert float(step.episode_return) == 1.0 and int(step.episode_length) == DELAY + 1
    np.testing.assert_array_equal(step.final_obs, [0.0, 0.0])
    assert float(step.obs[0]) in (-1.0, 1.0) and float(step.obs[1]) == 0.0
    assert float(state.episode_return) == 0.0 and int(state.episode_length) == 0


def _multi_discrete_reward(sign: float, action) -> float:
    probe = probes.ProbeMultiDiscrete()
    state = probes.ProbeState(sign=jnp.float32(sign), time=0)
    _, _, reward, terminated, truncated, _ = probe.step(
        KEY, state, jnp.asarray(action, jnp.int32), probe.default_params)
    assert bool(terminated) and not bool(truncated)
    return float(reward)


@pytest.mark.parametrize(("sign", "action", "reward"), [
    (1.0, (2, 1), 1.0),     # 0.5 + 0.5: the optimum on +1
    (1.0, (2, 0), 0.5),     # 0.5 + 0
    (1.0, (0, 1), 0.5),     # 0 + 0.5
    (1.0, (0, 0), 0.0),     # 0 + 0
    (1.0, (1, 1), -0.5),    # 0 + 0.5 - 1: a0 = 1 is invalid
    (1.0, (1, 0), -1.0),    # 0 + 0 - 1
    (-1.0, (0, 0), 1.0),    # 0.5 + 0.5: the optimum on -1
    (-1.0, (0, 1), 0.5),    # 0.5 + 0
    (-1.0, (2, 0), 0.5),    # 0 + 0.5
    (-1.0, (2, 1), 0.0),    # 0 + 0
    (-1.0, (1, 0), -0.5),   # 0 + 0.5 - 1
    (-1.0, (1, 1), -1.0),   # 0 + 0 - 1
])
def test_multi_discrete_rewards_each_component(sign, action, reward):
    assert _multi_discrete_reward(sign, action) == reward


def test_multi_discrete_observation_is_the_sign():
    probe = probes.ProbeMultiDiscrete()
    obs, state = probe.reset(KEY, probe.default_params)
    assert obs.shape == (1,) and float(obs[0]) == float(state.sign)


def test_multi_discrete_mask_is_flat_components_in_order():
    # [component 0: 0, 1, 2 | component 1: 0, 1]; 1 of component 0 is never valid.
    probe = probes.ProbeMultiDiscrete()
    for sign in (1.0, -1.0):
        mask = probe.action_mask(probes.ProbeState(sign=jnp.float32(sign), time=0))
        assert mask.dtype == jnp.bool_
        np.testing.assert_array_equal(mask, [True, False, True, True, True])
    # Its length is the adapter's flat action count 3 + 2.
    space = envs.make("ProbeMultiDiscrete-v0").action_space
    assert mask.shape == (space.num_actions,) == (sum(space.nvec),)


def test_multi_discrete_through_the_adapter():
    env = envs.make("ProbeMultiDiscrete-v0")
    space = env.action_space
    assert space.discrete and space.multi_discrete
    assert space.nvec == (3, 2) and space.num_actions == 5 and space.shape == (2,)
    assert env.observation_shape == (1,) and env.has_action_mask
    obs, state = env.reset(KEY)
    np.testing.assert_array_equal(env.action_mask(state), [True, False, True, True, True])
    best = jnp.where(obs[0] > 0, jnp.array([2, 1]), jnp.array([0, 0]))
    _, step = env.step(jax.random.key(1), state, best)
    assert float(step.reward) == 1.0 and bool(step.terminated) and not bool(step.truncated)
    np.testing.assert_array_equal(step.final_obs, obs)
    _, step = env.step(jax.random.key(1), state, jnp.array([2, 1]))
    # (2, 1) is the optimum on +1 and earns 0 + 0 on -1.
    assert float(step.reward) == (1.0 if float(obs[0]) > 0 else 0.0)


def _image_state(row: int, col: int):
    return probes.ImageState(row=jnp.int32(row), col=jnp.int32(col), time=0)


def test_image_observation_is_one_pixel_in_channel_zero():
    probe = probes.ProbeImage()
    obs, state = probe.reset(KEY, probe.default_params)
    assert obs.shape == (6, 6, 2) and obs.dtype == jnp.float32
    expected = np.zeros((6, 6, 2), np.float32)
    expected[int(state.row), int(state.col), 0] = 1.0
    np.testing.assert_array_equal(obs, expected)
    corner = np.zeros((6, 6, 2), np.float32)
    corner[5, 0, 0] = 1.0  # bottom left: row 5, col 0
    np.testing.assert_array_equal(probe.get_obs(_image_state(5, 0)), corner)
    space = probe.observation_space(probe.default_params)
    assert space.shape == (6, 6, 2) and float(space.low) == 0.0 and float(space.high) == 1.0


@pytest.mark.parametrize(("col", "right"), [(0, 0), (2, 0), (3, 1), (5, 1)])
def test_image_rewards_the_half_of_the_pixel(col, right):
    # Columns 0..2 are the left half (action 0), 3..5 the right (action 1); the row is free.
    probe = probes.ProbeImage()
    for row in (0, 5):
        state = _image_state(row, col)
        for action, reward in [(right, 1.0), (1 - right, -1.0)]:
            _, _, r, terminated, truncated, info = probe.step(
                KEY, state, action, probe.default_params)
            assert float(r) == reward and bool(terminated) and not bool(truncated)
            np.testing.assert_array_equal(info["final_observation"], probe.get_obs(state))


def test_image_pixel_positions_cover_the_grid():
    # 4000 reset keys over 36 cells: every cell is expected 4000 / 36 = 111 times. The
    # right-half fraction has sd sqrt(0.25 / 4000) = 0.0079; the tolerance 0.03 is 3.8 sd.
    probe = probes.ProbeImage()
    keys = jax.random.split(KEY, 4000)
    _, states = jax.jit(jax.vmap(probe.reset, in_axes=(0, None)))(keys, probe.default_params)
    rows, cols = np.asarray(states.row), np.asarray(states.col)
    assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == {
        (r, c) for r in range(6) for c in range(6)}
    assert abs(np.mean(cols >= 3) - 0.5) < 0.03


def test_image_through_the_adapter():
    env = envs.make("ProbeImage-v0")
    # The grid reaches the network as a grid: 6 x 6 x 2 = 72 values.
    assert env.observation_shape == (6, 6, 2) and env.observation_size == 72
    assert env.action_space.discrete and env.action_space.num_actions == 2
    assert not env.has_action_mask
    obs, state = env.reset(KEY)
    assert obs.shape == (6, 6, 2) and float(obs.sum()) == 1.0 and float(obs[..., 1].sum()) == 0.0
    col = int(state.env_state.col)
    _, step = env.step(jax.random.key(1), state, jnp.int32(col >= 3))
    assert float(step.reward) == 1.0 and bool(step.terminated)
    assert float(step.episode_return) == 1.0 and int(step.episode_length) == 1
    np.testing.assert_array_equal(step.final_obs, obs)


def _actions(env_id: str, key: jax.Array, n: int) -> jax.Array:
    nvec = envs.make(env_id).action_space.nvec
    if nvec:
        shape = (n, len(nvec))
        return jax.random.randint(key, shape, 0, jnp.broadcast_to(jnp.array(nvec), shape))
    return jax.random.randint(key, (n,), 0, 2)


@pytest.mark.parametrize("env_id", ["ProbeMemory-v0", "ProbeMultiDiscrete-v0", "ProbeImage-v0"])
def test_reset_and_step_vmap_equals_a_loop_and_jit_equals_eager(env_id):
    env = envs.make(env_id)
    reset_keys = jax.random.split(jax.random.key(1), 16)
    step_keys = jax.random.split(jax.random.key(2), 16)
    actions = _actions(env_id, jax.random.key(3), 16)

    def reset_and_step(reset_key, step_key, action):
        obs, state = env.reset(reset_key)
        state, step = env.step(step_key, state, action)
        return obs, state, step

    batched = jax.jit(jax.vmap(reset_and_step))(reset_keys, step_keys, actions)
    looped = [reset_and_step(reset_keys[i], step_keys[i], actions[i]) for i in range(16)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *looped)
    jax.tree.map(np.testing.assert_array_equal, batched, stacked)
    assert batched[0].shape == (16, *env.observation_shape)
    masks = jax.vmap(env.action_mask)(batched[1])
    assert masks.shape == (16, max(env.action_space.num_actions, 1))
