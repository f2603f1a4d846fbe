"""Tests of `jaxppo.gae`: hand-worked values, a plain-loop reference, episode ends."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxppo import gae

GAMMA = 0.9
LAMBDA = 0.5

# A 3-step trajectory used by the hand-worked tests.
REWARDS = [1.0, 2.0, 3.0]
VALUES = [0.5, 1.0, 1.5]
NEXT_VALUES = [1.0, 1.5, 2.0]


def _gae(rewards, values, next_values, terminated, truncated, gamma=GAMMA, gae_lambda=LAMBDA):
    """`gae.gae` on lists or numpy arrays, as float32 / bool arrays."""
    return gae.gae(
        jnp.asarray(rewards, jnp.float32),
        jnp.asarray(values, jnp.float32),
        jnp.asarray(next_values, jnp.float32),
        jnp.asarray(terminated, bool),
        jnp.asarray(truncated, bool),
        gamma,
        gae_lambda,
    )


def _reference_gae(rewards, values, next_values, terminated, truncated, gamma, gae_lambda):
    """GAE by a plain backward Python loop in float64."""
    steps = len(rewards)
    advantages = np.zeros(steps)
    next_advantage = 0.0  # A_T = 0
    for t in reversed(range(steps)):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        done = float(terminated[t] or truncated[t])
        next_advantage = delta + gamma * gae_lambda * (1.0 - done) * next_advantage
        advantages[t] = next_advantage
    return advantages, advantages + np.asarray(values, np.float64)


def _random_trajectory(seed, steps=16):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=steps).astype(np.float32),
        rng.normal(size=steps).astype(np.float32),
        rng.normal(size=steps).astype(np.float32),
        rng.random(steps) < 0.15,
        rng.random(steps) < 0.15,
    )


def test_three_steps_by_hand_without_episode_ends():
    advantages, returns = _gae(REWARDS, VALUES, NEXT_VALUES, [0, 0, 0], [0, 0, 0])
    # delta_t = r_t + 0.9 * nv_t - v_t:
    #   delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4
    #   delta_1 = 2 + 0.9 * 1.5 - 1.0 = 2.35
    #   delta_2 = 3 + 0.9 * 2.0 - 1.5 = 3.3
    # A_t = delta_t + (0.9 * 0.5 = 0.45) * A_{t+1}:
    #   A_2 = 3.3
    #   A_1 = 2.35 + 0.45 * 3.3   = 3.835
    #   A_0 = 1.4  + 0.45 * 3.835 = 3.12575
    # returns = A + v = [3.62575, 4.835, 4.8]
    chex.assert_trees_all_close(advantages, jnp.array([3.12575, 3.835, 3.3]), rtol=1e-6)
    chex.assert_trees_all_close(returns, jnp.array([3.62575, 4.835, 4.8]), rtol=1e-6)


def test_three_steps_by_hand_with_terminal_at_step_one():
    advantages, returns = _gae(REWARDS, VALUES, NEXT_VALUES, [0, 1, 0], [0, 0, 0])
    # delta_0 = 1.4 and delta_2 = 3.3 as without ends; step 1 does not bootstrap:
    #   delta_1 = 2 + 0.9 * 0 * 1.5 - 1.0 = 1.0
    # A_2 = 3.3
    # A_1 = 1.0 + 0.45 * 0 * 3.3 = 1.0       (the recursion is cut)
    # A_0 = 1.4 + 0.45 * 1.0     = 1.85
    # returns = A + v = [2.35, 2.0, 4.8]
    chex.assert_trees_all_close(advantages, jnp.array([1.85, 1.0, 3.3]), rtol=1e-6)
    chex.assert_trees_all_close(returns, jnp.array([2.35, 2.0, 4.8]), rtol=1e-6)


def test_three_steps_by_hand_with_truncation_at_step_one():
    advantages, _ = _gae(REWARDS, VALUES, NEXT_VALUES, [0, 0, 0], [0, 1, 0])
    # Step 1 bootstraps (delta_1 = 2.35) but cuts the recursion:
    # A_1 = 2.35, A_0 = 1.4 + 0.45 * 2.35 = 2.4575, A_2 = 3.3
    chex.assert_trees_all_close(advantages, jnp.array([2.4575, 2.35, 3.3]), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gae_matches_plain_loop_reference(seed):
    rewards, values, next_values, terminated, truncated = _random_trajectory(seed)
    gamma, gae_lambda = 0.97, 0.9
    advantages, returns = _gae(
        rewards, values, next_values, terminated, truncated, gamma, gae_lambda
    )
    ref_advantages, ref_returns = _reference_gae(
        rewards, values, next_values, terminated, truncated, gamma, gae_lambda
    )
    chex.assert_trees_all_close(advantages, ref_advantages.astype(np.float32), rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(returns, ref_returns.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_flags_in_random_trajectories_are_exercised():
    """Guard for the reference test: its seeds contain both kinds of episode end."""
    flags = [_random_trajectory(seed)[3:] for seed in range(4)]
    assert any(term.any() for term, _ in flags)
    assert any(trunc.any() for _, trunc in flags)
    assert any((term & ~trunc).any() and (trunc & ~term).any() for term, trunc in flags)


def test_lambda_zero_gives_td_errors():
    rewards, values, next_values, terminated, truncated = _random_trajectory(5)
    advantages, _ = _gae(rewards, values, next_values, terminated, truncated, 0.99, 0.0)
    # lambda = 0: A_t = delta_t = r_t + gamma * (1 - term_t) * nv_t - v_t.
    td_errors = rewards + 0.99 * (1.0 - terminated) * next_values - values
    chex.assert_trees_all_close(advantages, td_errors.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_lambda_one_no_ends_gives_discounted_return_minus_value():
    rewards, values, next_values, _, _ = _random_trajectory(6, steps=5)
    no_end = np.zeros(5, bool)
    # lambda = 1 with consistent values (nv_t = v_{t+1}) telescopes to the Monte-Carlo
    # return bootstrapped at the end: sum_k 0.9^k r_{t+k} + 0.9^(T-t) nv_{T-1} - v_t.
    next_values = np.append(values[1:], next_values[-1])
    advantages, _ = _gae(rewards, values, next_values, no_end, no_end, 0.9, 1.0)
    expected = [
        sum(0.9**k * rewards[t + k] for k in range(5 - t)) + 0.9 ** (5 - t) * next_values[-1]
        - values[t]
        for t in range(5)
    ]
    chex.assert_trees_all_close(advantages, np.float32(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("terminated", "truncated", "bootstraps"),
    [([0, 0, 1, 0, 0], [0, 0, 0, 0, 0], False), ([0, 0, 0, 0, 0], [0, 0, 1, 0, 0], True)],
    ids=["terminated", "truncated"],
)
def test_episode_end_bootstrap_and_cut(terminated, truncated, bootstraps):
    rng = np.random.default_rng(7)
    rewards, values, next_values = rng.normal(size=(3, 5)).astype(np.float32)
    advantages, _ = _gae(rewards, values, next_values, terminated, truncated)

    # The step that ends the episode: A_2 = delta_2, bootstrapped only when truncated.
    bootstrap = GAMMA * next_values[2] if bootstraps else 0.0
    chex.assert_trees_all_close(advantages[2], rewards[2] + bootstrap - values[2], rtol=1e-6)

    # Later steps do not reach back across the end: A_0..A_2 ignore any change after step 2.
    changed_rewards = rewards.copy()
    changed_rewards[3:] += 100.0
    changed_values = values.copy()
    changed_values[3:] -= 50.0
    changed, _ = _gae(changed_rewards, changed_values, next_values, terminated, truncated)
    chex.assert_trees_all_equal(changed[:3], advantages[:3])
    assert not np.allclose(changed[3:], advantages[3:])

    # V(next_obs_2) matters for the truncated step and not for the terminated one.
    moved_next_values = next_values.copy()
    moved_next_values[2] += 10.0
    moved, _ = _gae(rewards, values, moved_next_values, terminated, truncated)
    # A_2 moves by 0.9 * 10 = 9 when bootstrapping; A_1 by 0.45 * 9 = 4.05, A_0 by 0.45 * 4.05.
    shift = 9.0 if bootstraps else 0.0
    expected_shift = np.float32([0.45**2 * shift, 0.45 * shift, shift, 0.0, 0.0])
    chex.assert_trees_all_close(moved - advantages, expected_shift, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_gae_equals_per_column_gae(seed):
    rng = np.random.default_rng(seed)
    steps, envs = 12, 3
    rewards, values, next_values = rng.normal(size=(3, steps, envs)).astype(np.float32)
    terminated = rng.random((steps, envs)) < 0.2
    truncated = rng.random((steps, envs)) < 0.2
    advantages, returns = gae.batched_gae(
        rewards, values, next_values, terminated, truncated, GAMMA, LAMBDA
    )
    chex.assert_shape([advantages, returns], (steps, envs))
    for n in range(envs):
        column = _gae(
            rewards[:, n], values[:, n], next_values[:, n], terminated[:, n], truncated[:, n]
        )
        chex.assert_trees_all_close((advantages[:, n], returns[:, n]), column, rtol=1e-6)


def test_eager_equals_jit_with_traced_gamma_and_lambda():
    rewards, values, next_values, terminated, truncated = _random_trajectory(11)
    args = (rewards, values, next_values, terminated, truncated)
    eager = gae.gae(*args, 0.97, 0.9)
    jitted = jax.jit(gae.gae)(*args, jnp.float32(0.97), jnp.float32(0.9))
    chex.assert_trees_all_close(jitted, eager, rtol=1e-6, atol=1e-6)


def test_two_dimensional_input_raises():
    x = jnp.zeros((4, 2))
    with pytest.raises(AssertionError, match="rank"):
        gae.gae(x, x, x, x, x, GAMMA, LAMBDA)


def test_mismatched_lengths_raise():
    with pytest.raises(AssertionError):
        _gae([1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0], [0, 0], [0, 0])


@pytest.mark.parametrize("flag_dtype", [bool, jnp.float32], ids=["bool", "float32"])
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_values_keep_their_dtype_with_any_flags(dtype, flag_dtype):
    # The flags are cast to the values' dtype: a float32 or bool flag would otherwise promote
    # the deltas to float32 and the scan's carry would change dtype (a trace error).
    rewards, values, next_values, terminated, truncated = _random_trajectory(0)
    assert terminated.any() and truncated.any()
    half = [jnp.asarray(x, dtype) for x in (rewards, values, next_values)]
    flags = [jnp.asarray(x, flag_dtype) for x in (terminated, truncated)]
    # gamma and lambda as Python floats (weakly typed when traced), as a Config passes them.
    advantages, returns = jax.jit(gae.gae)(*half, *flags, 0.97, 0.9)
    assert advantages.dtype == dtype and returns.dtype == dtype
    # Against the float64 loop on the half-precision inputs (8 to 11 significant bits).
    ref_advantages, _ = _reference_gae(*[np.float64(np.float32(x)) for x in half],
                                       terminated, truncated, 0.97, 0.9)
    np.testing.assert_allclose(np.float32(advantages), ref_advantages, rtol=5e-2, atol=5e-2)
