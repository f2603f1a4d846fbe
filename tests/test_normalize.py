"""Tests of `jaxppo.normalize`: Chan et al.'s merge against numpy, normalize and its inverse,
the running discounted return against a plain loop, reward scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxppo import normalize

# One jit each for the module (one compile per input shape).
_merge = jax.jit(normalize.merge)
_discounted = jax.jit(normalize.discounted_returns)


def _stats(mean, var, count):
    return normalize.RunningStats(jnp.float32(mean), jnp.float32(var), jnp.float32(count))


def test_fresh_statistics_are_mean_zero_variance_one_count_zero():
    fresh = normalize.RunningStats.create((3,))
    np.testing.assert_array_equal(fresh.mean, np.zeros(3))
    np.testing.assert_array_equal(fresh.var, np.ones(3))
    assert fresh.count.shape == () and float(fresh.count) == 0.0
    # 1 + 1e-8 rounds to 1 in float32: normalizing with fresh statistics is the identity.
    x = jnp.float32([[20.0, -3.5, 0.1], [1e-3, 7.0, -42.0]])
    np.testing.assert_array_equal(normalize.normalize(fresh, x), x)
    normalizers = normalize.Normalizers.create(3, 5)
    assert normalizers.obs.mean.shape == (3,) and normalizers.reward.mean.shape == ()
    assert normalizers.value.mean.shape == ()
    np.testing.assert_array_equal(normalizers.discounted_return, np.zeros(5))


def test_merge_known_values():
    # Seen {-1, 3}: mean 1, var 4, count 2. Batch {5, 7}: mean 6, var 1. Together
    # {-1, 3, 5, 7}: mean 3.5, var (20.25 + 0.25 + 2.25 + 12.25) / 4 = 8.75. By the formula:
    # delta 5, mean 1 + 5 * 2 / 4 = 3.5, (4 * 2 + 1 * 2 + 25 * 2 * 2 / 4) / 4 = 35 / 4.
    merged = _merge(_stats(1.0, 4.0, 2.0), jnp.float32([5.0, 7.0]))
    np.testing.assert_allclose([merged.mean, merged.var, merged.count], [3.5, 8.75, 4.0],
                               rtol=1e-6)


def test_merge_into_fresh_statistics_is_the_batch_mean_and_variance():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(16, 4, 3)).astype(np.float32)
    merged = _merge(normalize.RunningStats.create((3,)), jnp.asarray(x))
    flat = np.float64(x).reshape(-1, 3)
    np.testing.assert_allclose(merged.mean, flat.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(merged.var, flat.var(axis=0), rtol=1e-5)
    assert float(merged.count) == 64


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merging_two_batches_equals_the_statistics_of_their_concatenation(seed):
    # Batches of different leading shapes ([T, N, O] and [B, O]) and different distributions:
    # merged one after the other they give numpy's mean and (population) variance of all rows.
    rng = np.random.default_rng(seed)
    a = rng.normal(rng.normal(size=3) * 5, rng.uniform(0.5, 3.0, size=3), size=(8, 4, 3))
    b = rng.normal(rng.normal(size=3) * 5, rng.uniform(0.5, 3.0, size=3), size=(5, 3))
    stats = normalize.RunningStats.create((3,))
    for batch in (a, b):
        stats = _merge(stats, jnp.float32(batch))
    everything = np.concatenate([a.reshape(-1, 3), b])
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.var, everything.var(axis=0), rtol=1e-5)
    assert float(stats.count) == 32 + 5


def test_many_scalar_merges_equal_numpy_over_everything():
    # Scalar statistics (as of rewards), one rollout [T, N] merged per update, 20 updates;
    # data far from 0 (mean 50, std 3), where float32 sums of squares would lose precision.
    rng = np.random.default_rng(3)
    rollouts = rng.normal(50.0, 3.0, size=(20, 16, 4))
    stats = normalize.RunningStats.create()
    for rollout in rollouts:
        stats = _merge(stats, jnp.float32(rollout))
    np.testing.assert_allclose(stats.mean, rollouts.mean(), rtol=1e-5)
    np.testing.assert_allclose(stats.var, rollouts.var(), rtol=1e-3)
    assert float(stats.count) == rollouts.size


def test_normalize_known_values_per_feature():
    # mean [1, -1, 0, 2], var [4, 1, 0.25, 9]: std [2, 1, 0.5, 3] exactly in float32 (1e-8 is
    # below half an ulp of each variance).
    stats = normalize.RunningStats(jnp.float32([1.0, -1.0, 0.0, 2.0]),
                                   jnp.float32([4.0, 1.0, 0.25, 9.0]), jnp.float32(10.0))
    x = jnp.float32([[5.0, -1.0, 3.0, 2.0], [-100.0, 0.0, -1.0, 50.0]])
    # (5 - 1) / 2 = 2, 0, 3 / 0.5 = 6, 0; -101 / 2 = -50.5, 1, -2, 48 / 3 = 16.
    np.testing.assert_array_equal(normalize.normalize(stats, x),
                                  [[2.0, 0.0, 6.0, 0.0], [-50.5, 1.0, -2.0, 16.0]])
    # Clipped to [-3, 3]: 6 -> 3, -50.5 -> -3, 16 -> 3.
    np.testing.assert_array_equal(normalize.normalize(stats, x, 3.0),
                                  [[2.0, 0.0, 3.0, 0.0], [-3.0, 1.0, -2.0, 3.0]])
    # A traced clip (Config.obs_clip is a dynamic leaf) gives the same numbers.
    clipped = jax.jit(normalize.normalize)(stats, x, jnp.float32(3.0))
    np.testing.assert_array_equal(clipped, [[2.0, 0.0, 3.0, 0.0], [-3.0, 1.0, -2.0, 3.0]])


def test_denormalize_inverts_normalize_and_back():
    rng = np.random.default_rng(4)
    stats = normalize.RunningStats(jnp.float32(rng.normal(size=5) * 10),
                                   jnp.float32(rng.uniform(0.01, 50.0, size=5)),
                                   jnp.float32(1000.0))
    x = jnp.float32(rng.normal(size=(7, 3, 5)) * 20)
    np.testing.assert_allclose(normalize.denormalize(stats, normalize.normalize(stats, x)), x,
                               rtol=1e-5, atol=1e-4)
    z = jnp.float32(rng.normal(size=(7, 3, 5)))
    np.testing.assert_allclose(normalize.normalize(stats, normalize.denormalize(stats, z)), z,
                               rtol=1e-5, atol=1e-5)
    # Both are elementwise per feature: (x - mean) / sqrt(var + 1e-8), numpy in float64.
    expected = (np.float64(x) - np.float64(stats.mean)) / np.sqrt(np.float64(stats.var) + 1e-8)
    np.testing.assert_allclose(normalize.normalize(stats, x), expected, rtol=1e-5, atol=1e-5)


def _discounted_reference(rewards, dones, gamma, start):
    """Plain loop: R_t = gamma * R_{t-1} + r_t, reset to 0 after a step that ended."""
    running = np.array(start, np.float64)
    out = np.zeros(rewards.shape, np.float64)
    for t in range(rewards.shape[0]):
        running = gamma * running + rewards[t]
        out[t] = running
        running = np.where(dones[t], 0.0, running)
    return out, running


def test_discounted_returns_known_values():
    # gamma 0.5, R before = 2, rewards 1, 1, 1, the episode ends at t = 1:
    # R_0 = 0.5 * 2 + 1 = 2, R_1 = 0.5 * 2 + 1 = 2 (then reset), R_2 = 0 + 1 = 1.
    last, returns = normalize.discounted_returns(jnp.float32([2.0]), jnp.ones((3, 1)),
                                                 jnp.array([[False], [True], [False]]), 0.5)
    np.testing.assert_array_equal(returns[:, 0], [2.0, 2.0, 1.0])
    np.testing.assert_array_equal(last, [1.0])


@pytest.mark.parametrize("seed", [0, 1])
def test_discounted_returns_match_a_plain_loop_eager_and_jitted(seed):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(30, 4)).astype(np.float32)
    dones = rng.random((30, 4)) < 0.15
    start = rng.normal(size=4).astype(np.float32)
    ref, ref_last = _discounted_reference(rewards, dones, 0.97, start)
    for fn in (normalize.discounted_returns, _discounted):
        last, returns = fn(jnp.asarray(start), jnp.asarray(rewards), jnp.asarray(dones),
                           jnp.float32(0.97))
        np.testing.assert_allclose(returns, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(last, ref_last, rtol=1e-5, atol=1e-5)


def test_scale_rewards_divides_by_the_return_std_without_centering():
    # Return statistics mean 5, var 4: r / sqrt(4 + 1e-8) = r / 2; the mean is not subtracted.
    stats = _stats(5.0, 4.0, 100.0)
    np.testing.assert_array_equal(normalize.scale_rewards(stats, jnp.float32([2.0, -4.0, 0.0])),
                                  [1.0, -2.0, 0.0])


def test_normalize_clips_to_the_given_range():
    fresh = normalize.RunningStats.create((3,))
    x = jnp.float32([20.0, -20.0, 3.0])
    # Fresh stats: (x - 0) / sqrt(1 + 1e-8) = x in float32; clip 10 cuts +-20 to +-10.
    np.testing.assert_array_equal(normalize.normalize(fresh, x, 10.0), [10.0, -10.0, 3.0])
    np.testing.assert_array_equal(normalize.normalize(fresh, x), [20.0, -20.0, 3.0])


def test_denormalize_is_x_times_std_plus_mean_and_inverts_normalize():
    stats = normalize.RunningStats(jnp.float32(2.0), jnp.float32(9.0), jnp.float32(10.0))
    # std = sqrt(9 + 1e-8) = 3 in float32: x * 3 + 2 = [-4, 2, 3.5] for x = [-2, 0, 0.5].
    np.testing.assert_array_equal(normalize.denormalize(stats, jnp.float32([-2.0, 0.0, 0.5])),
                                  [-4.0, 2.0, 3.5])
    rng = np.random.default_rng(0)
    per_feature = normalize.RunningStats(jnp.float32(rng.normal(size=4) * 5),
                                         jnp.float32(rng.uniform(0.1, 20.0, size=4)),
                                         jnp.float32(100.0))
    x = jnp.float32(rng.normal(size=(6, 4)) * 10)
    np.testing.assert_allclose(normalize.denormalize(per_feature,
                                                     normalize.normalize(per_feature, x)),
                               x, rtol=1e-5, atol=1e-5)


def test_a_constant_feature_normalizes_to_finite_values():
    # Feature 1 is 0 in every sample: mean 0, var 0, std = sqrt(0 + 1e-8) = 1e-4. Its samples
    # normalize to 0 and x = 1e-4 to 1e-4 / 1e-4 = 1 (var + 0 would give 0 / 0 and 1 / 0,
    # var - 1e-8 the square root of a negative number).
    samples = jnp.float32([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]])
    stats = _merge(normalize.RunningStats.create((2,)), samples)
    np.testing.assert_array_equal(stats.var[1], 0.0)
    np.testing.assert_allclose(stats.std, [np.sqrt(8.0 / 3.0), 1e-4], rtol=1e-6)
    out = normalize.normalize(stats, jnp.concatenate([samples, jnp.float32([[3.0, 1e-4]])]))
    np.testing.assert_array_equal(out[:3, 1], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(out[3], [0.0, 1.0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalize.denormalize(stats, out)[3], [3.0, 1e-4], rtol=1e-5)


def test_scale_rewards_with_zero_return_variance_stays_finite():
    # Var[R] = 0: r / sqrt(0 + 1e-8) = r / 1e-4, so 2e-4 -> 2 and 0 -> 0.
    scaled = normalize.scale_rewards(_stats(1.0, 0.0, 10.0), jnp.float32([2e-4, 0.0]))
    np.testing.assert_allclose(scaled, [2.0, 0.0], rtol=1e-5)
