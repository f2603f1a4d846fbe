"""Tests of `jaxppo.distributions`: closed forms, masking, sample moments."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxppo import distributions

NUM_SAMPLES = 20_000


def _numpy_log_softmax(logits):
    logits = np.float64(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_categorical_known_values():
    dist = distributions.Categorical.from_logits(jnp.float32([1.0, 2.0, 3.0]))
    # logsumexp(1, 2, 3) = 3 + log(1 + e^-1 + e^-2) = 3.40760596, so
    # log p = [1, 2, 3] - 3.40760596 = [-2.40760596, -1.40760596, -0.40760596].
    log_probs = jnp.stack([dist.log_prob(jnp.int32(k)) for k in range(3)])
    chex.assert_trees_all_close(
        log_probs, jnp.float32([-2.40760596, -1.40760596, -0.40760596]), rtol=1e-6
    )
    # p = [0.09003057, 0.24472847, 0.66524096];
    # H = 0.0900 * 2.4076 + 0.2447 * 1.4076 + 0.6652 * 0.4076 = 0.83239558.
    chex.assert_trees_all_close(dist.entropy(), 0.83239558, rtol=1e-6)
    assert dist.mode() == 2


def test_categorical_uniform_entropy_is_log_k():
    dist = distributions.Categorical.from_logits(jnp.full((2, 4), 0.7))
    # Four equal logits: p = 1/4, log p = -log 4, H = log 4 = 1.38629436.
    chex.assert_trees_all_close(dist.entropy(), jnp.full(2, math.log(4.0)), rtol=1e-6)
    chex.assert_trees_all_close(
        dist.log_prob(jnp.int32([0, 3])), jnp.full(2, -math.log(4.0)), rtol=1e-6
    )


def test_categorical_matches_closed_form_on_random_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(5, 6)).astype(np.float32)
    actions = rng.integers(0, 6, size=5)
    dist = distributions.Categorical.from_logits(jnp.asarray(logits))
    log_p = _numpy_log_softmax(logits)
    expected_log_prob = [log_p[i, actions[i]] for i in range(5)]
    expected_entropy = [-sum(math.exp(lp) * lp for lp in row) for row in log_p]
    chex.assert_trees_all_close(
        dist.log_prob(jnp.asarray(actions)), np.float32(expected_log_prob), rtol=1e-5, atol=1e-6
    )
    chex.assert_trees_all_close(dist.entropy(), np.float32(expected_entropy), rtol=1e-5)
    chex.assert_trees_all_equal(dist.mode(), jnp.asarray(np.argmax(logits, axis=-1)))


def _masked():
    logits = jnp.float32([[0.5, 3.0, -1.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    # Action 1 (the largest logit) is masked in row 0; actions 0 and 3 in row 1.
    mask = jnp.array([[True, False, True, True], [False, True, True, False]])
    return logits, mask


def test_masked_actions_are_never_sampled():
    logits, mask = _masked()
    # One distribution per draw: [NUM_SAMPLES, 2, 4] logits, sampled with one key.
    dist = distributions.Categorical.from_logits(
        jnp.broadcast_to(logits, (NUM_SAMPLES, 2, 4)), jnp.broadcast_to(mask, (NUM_SAMPLES, 2, 4))
    )
    samples = dist.sample(jax.random.key(0))
    chex.assert_shape(samples, (NUM_SAMPLES, 2))
    sampled_masked = jnp.take_along_axis(~mask, samples.T, axis=-1)
    assert not sampled_masked.any()
    # Row 1 is uniform over actions 1 and 2: each about half the time.
    share = float(jnp.mean(samples[:, 1] == 1))
    assert abs(share - 0.5) < 0.02
    # Row 0 follows the renormalized softmax over the valid logits [0.5, -1, 0].
    valid = np.exp([0.5, -1.0, 0.0]) / np.exp([0.5, -1.0, 0.0]).sum()
    counts = [float(jnp.mean(samples[:, 0] == k)) for k in (0, 2, 3)]
    chex.assert_trees_all_close(np.float32(counts), np.float32(valid), atol=0.02)


def test_masked_probability_is_exactly_zero_and_values_finite():
    logits, mask = _masked()
    dist = distributions.Categorical.from_logits(logits, mask)
    probs = jnp.exp(jax.nn.log_softmax(dist.logits, axis=-1))
    chex.assert_trees_all_equal(probs * ~mask, jnp.zeros((2, 4)))
    chex.assert_tree_all_finite(dist.log_prob(jnp.int32([1, 0])))  # masked actions
    chex.assert_tree_all_finite(dist.log_prob(jnp.int32([0, 1])))  # valid actions
    chex.assert_tree_all_finite(dist.entropy())
    # The masked actions drop out: row 1 is uniform over two, H = log 2.
    # Row 0: the entropy of softmax([0.5, -1, 0]).
    valid = _numpy_log_softmax([0.5, -1.0, 0.0])
    expected = [-np.sum(np.exp(valid) * valid), math.log(2.0)]
    chex.assert_trees_all_close(dist.entropy(), np.float32(expected), rtol=1e-6)
    chex.assert_trees_all_close(dist.log_prob(jnp.int32([0, 1])),
                                np.float32([valid[0], -math.log(2.0)]), rtol=1e-6)
    assert dist.mode()[0] != 1  # the largest raw logit is masked


def test_masked_gradients_are_finite():
    logits, mask = _masked()

    def objective(raw_logits):
        dist = distributions.Categorical.from_logits(raw_logits, mask)
        return jnp.sum(dist.entropy()) + jnp.sum(dist.log_prob(jnp.int32([0, 2])))

    grad = jax.grad(objective)(logits)
    chex.assert_tree_all_finite(grad)
    # No gradient reaches the raw logits of masked actions.
    chex.assert_trees_all_equal(grad * ~mask, jnp.zeros((2, 4)))
    assert jnp.any(grad != 0)


def _gaussian():
    mean = jnp.float32([[0.0, 1.0, -2.0], [0.5, -0.5, 3.0]])
    log_std = jnp.float32([[0.0, -1.0, 0.7], [0.3, 0.0, -0.4]])
    return distributions.DiagGaussian(mean, log_std)


def _normal_logpdf(x, mean, std):
    try:
        from scipy import stats
    except ImportError:
        return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    return stats.norm.logpdf(x, mean, std)


def _normal_entropy(std):
    try:
        from scipy import stats
    except ImportError:
        return 0.5 * np.log(2 * np.pi * np.e * std**2)
    return stats.norm.entropy(scale=std)


def test_gaussian_known_values():
    dist = distributions.DiagGaussian(jnp.zeros(1), jnp.zeros(1))
    # Standard normal at a = 1: -1/2 - log(2 pi) / 2 = -0.5 - 0.91893853 = -1.41893853.
    chex.assert_trees_all_close(dist.log_prob(jnp.ones(1)), -1.41893853, rtol=1e-6)
    # H = (1 + log(2 pi)) / 2 = 1.41893853.
    chex.assert_trees_all_close(dist.entropy(), 1.41893853, rtol=1e-6)
    # sigma = e^0.5 in two dims at a = mean: 2 * (-0.5 - 0.91893853) = -2.83787707.
    dist = distributions.DiagGaussian(jnp.ones(2), jnp.full(2, 0.5))
    chex.assert_trees_all_close(dist.log_prob(jnp.ones(2)), -2.83787707, rtol=1e-6)


def test_gaussian_log_prob_and_entropy_match_scipy():
    dist = _gaussian()
    rng = np.random.default_rng(1)
    actions = rng.normal(scale=2.0, size=(2, 3)).astype(np.float32)
    mean, std = np.float64(dist.mean), np.exp(np.float64(dist.log_std))
    expected_log_prob = _normal_logpdf(np.float64(actions), mean, std).sum(axis=-1)
    expected_entropy = _normal_entropy(std).sum(axis=-1)
    chex.assert_trees_all_close(
        dist.log_prob(jnp.asarray(actions)), np.float32(expected_log_prob), rtol=1e-5
    )
    chex.assert_trees_all_close(dist.entropy(), np.float32(expected_entropy), rtol=1e-6)
    chex.assert_shape([dist.log_prob(jnp.asarray(actions)), dist.entropy()], (2,))


def test_gaussian_sample_moments_and_mode():
    dist = _gaussian()
    many = jax.tree.map(lambda x: jnp.broadcast_to(x, (NUM_SAMPLES, 2, 3)), dist)
    samples = many.sample(jax.random.key(1))
    chex.assert_shape(samples, (NUM_SAMPLES, 2, 3))
    std = np.exp(np.float64(dist.log_std))
    # Standard error of the mean: std / sqrt(20000) <= 2.01 / 141 = 0.014; allow ~4 of those.
    chex.assert_trees_all_close(samples.mean(axis=0), dist.mean, atol=0.06)
    # The sample std is within a few percent of sigma for 20000 draws (its relative standard
    # error is 1 / sqrt(2 * 20000) = 0.005).
    chex.assert_trees_all_close(samples.std(axis=0), np.float32(std), rtol=0.03)
    chex.assert_trees_all_equal(dist.mode(), dist.mean)


@pytest.mark.parametrize("key_seed", [0, 1])
def test_samples_depend_on_key(key_seed):
    dist = _gaussian()
    first = dist.sample(jax.random.key(key_seed))
    chex.assert_trees_all_equal(first, dist.sample(jax.random.key(key_seed)))
    assert not np.allclose(first, dist.sample(jax.random.key(key_seed + 10)))


def test_gaussian_state_independent_log_std_broadcasts_over_batch():
    """A shared log_std [D] works with mean [B, D], as networks build it for batched obs.

    The broadcast must be explicit: conftest raises on implicit rank promotion.
    """
    mean = jnp.float32([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    log_std = jnp.float32([0.0, -1.0])  # [D], shared by the batch, as the network builds it
    dist = distributions.DiagGaussian(mean, log_std)
    full = distributions.DiagGaussian(mean, jnp.broadcast_to(log_std, mean.shape))
    chex.assert_trees_all_equal(dist.entropy(), full.entropy())
    chex.assert_trees_all_equal(dist.log_prob(mean + 1.0), full.log_prob(mean + 1.0))
    chex.assert_trees_all_equal(dist.sample(jax.random.key(0)), full.sample(jax.random.key(0)))
