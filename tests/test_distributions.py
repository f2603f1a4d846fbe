"""Tests of `jaxppo.distributions`: closed forms, masking, sample moments."""

import math
import re

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


# MultiCategorical, hand-sized: nvec (3, 2), component 0 over logits [1, 2, 3] (the Categorical
# of test_categorical_known_values), component 1 over [0, log 3] (p = [1/4, 3/4]).
MULTI_NVEC = (3, 2)
# A larger layout for random inputs; its flat logits [..., 9] split as [0:4], [4:6], [6:9].
RANDOM_NVEC = (4, 2, 3)
RANDOM_SPANS = ((0, 4), (4, 6), (6, 9))


def _multi_logits():
    return jnp.float32([1.0, 2.0, 3.0, 0.0, math.log(3.0)])


def _multi_mask():
    # Component 0 allows actions {0, 1} (its largest logit, action 2, is masked); component 1
    # allows only action 0 (its largest logit, action 1, is masked).
    return jnp.array([True, True, False, True, False])


def _random_multi(seed, batch=(5, 7)):
    """Logits and a mask [*batch, 9] for RANDOM_NVEC, and actions [*batch, 3], some masked."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(*batch, 9)).astype(np.float32)
    mask = rng.random(size=logits.shape) < 0.6
    # Every component keeps at least one valid action: its first.
    mask[..., [start for start, _ in RANDOM_SPANS]] = True
    actions = np.stack([rng.integers(0, n, size=batch) for n in RANDOM_NVEC], axis=-1)
    return jnp.asarray(logits), jnp.asarray(mask), jnp.asarray(actions, dtype=jnp.int32)


def test_multi_categorical_known_values():
    dist = distributions.MultiCategorical.from_logits(_multi_logits(), MULTI_NVEC)
    # log p_0 = [-2.40760596, -1.40760596, -0.40760596] and H_0 = 0.83239558 (see above).
    # log p_1 = [-log 4, log(3/4)] = [-1.38629436, -0.28768207];
    # H_1 = 1/4 log 4 + 3/4 log(4/3) = 0.34657359 + 0.21576155 = 0.56233514.
    # log p(2, 1) = -0.40760596 - 0.28768207 = -0.69528803;
    # log p(0, 0) = -2.40760596 - 1.38629436 = -3.79390032.
    log_probs = jnp.stack([dist.log_prob(jnp.int32([2, 1])), dist.log_prob(jnp.int32([0, 0]))])
    chex.assert_trees_all_close(log_probs, jnp.float32([-0.69528803, -3.79390032]), rtol=1e-6)
    # H = H_0 + H_1 = 0.83239558 + 0.56233514 = 1.39473072.
    chex.assert_trees_all_close(dist.entropy(), 1.39473072, rtol=1e-6)
    chex.assert_trees_all_equal(dist.mode(), jnp.int32([2, 1]))


def test_multi_categorical_joint_log_probs_match_numpy():
    dist = distributions.MultiCategorical.from_logits(_multi_logits(), MULTI_NVEC)
    log_p0 = _numpy_log_softmax([1.0, 2.0, 3.0])
    log_p1 = _numpy_log_softmax([0.0, math.log(3.0)])
    joint = [(a0, a1) for a0 in range(3) for a1 in range(2)]
    log_probs = jnp.stack([dist.log_prob(jnp.int32(action)) for action in joint])
    expected = [log_p0[a0] + log_p1[a1] for a0, a1 in joint]
    chex.assert_trees_all_close(log_probs, np.float32(expected), rtol=1e-6)
    # The six joint probabilities sum to 1.
    chex.assert_trees_all_close(jnp.sum(jnp.exp(log_probs)), 1.0, rtol=1e-6)
    expected_entropy = -np.sum(np.exp(log_p0) * log_p0) - np.sum(np.exp(log_p1) * log_p1)
    chex.assert_trees_all_close(dist.entropy(), np.float32(expected_entropy), rtol=1e-6)


def test_multi_categorical_masked_known_values():
    dist = distributions.MultiCategorical.from_logits(_multi_logits(), MULTI_NVEC, _multi_mask())
    first, second = dist.components()
    # Component 1 keeps one action: p_1 = [1, 0], so log p_1(0) = 0 and H_1 = 0 exactly.
    chex.assert_trees_all_equal(second.log_prob(jnp.int32(0)), jnp.float32(0.0))
    chex.assert_trees_all_equal(second.entropy(), jnp.float32(0.0))
    # A masked action in either component has probability exactly 0 and a finite log-prob.
    for masked_action in ([2, 0], [0, 1], [2, 1]):
        log_prob = dist.log_prob(jnp.int32(masked_action))
        chex.assert_tree_all_finite(log_prob)
        chex.assert_trees_all_equal(jnp.exp(log_prob), jnp.float32(0.0))
    # Component 0 renormalizes over logits [1, 2]: log p_0 = [1, 2] - log(1 + e)
    # = [1, 2] - 2.31326169 = [-1.31326169, -0.31326169]; log p(a_0, 0) = log p_0(a_0) + 0.
    log_probs = jnp.stack([dist.log_prob(jnp.int32([0, 0])), dist.log_prob(jnp.int32([1, 0]))])
    chex.assert_trees_all_close(log_probs, jnp.float32([-1.31326169, -0.31326169]), rtol=1e-6)
    # p_0 = [1, e] / (1 + e) = [0.26894142, 0.73105858];
    # H = H_0 + 0 = 0.26894142 * 1.31326169 + 0.73105858 * 0.31326169
    #   = 0.35319046 + 0.22901265 = 0.58220311.
    chex.assert_trees_all_close(first.entropy(), 0.58220311, rtol=1e-6)
    chex.assert_trees_all_close(dist.entropy(), 0.58220311, rtol=1e-6)
    # The raw argmaxes (2, 1) are both masked; the mode takes the best valid action of each.
    chex.assert_trees_all_equal(dist.mode(), jnp.int32([1, 0]))


@pytest.mark.parametrize("masked", [False, True])
def test_multi_categorical_matches_independent_categoricals(masked):
    logits, mask, actions = _random_multi(0)
    dist = distributions.MultiCategorical.from_logits(logits, RANDOM_NVEC, mask if masked else None)
    parts = [
        distributions.Categorical.from_logits(
            logits[..., start:end], mask[..., start:end] if masked else None
        )
        for start, end in RANDOM_SPANS
    ]
    expected_log_prob = sum(part.log_prob(actions[..., d]) for d, part in enumerate(parts))
    expected_entropy = sum(part.entropy() for part in parts)
    chex.assert_shape([dist.log_prob(actions), dist.entropy()], (5, 7))
    # Masked actions have log-probs near -1e9, where float32 keeps ~7 digits: rtol, not atol.
    chex.assert_trees_all_close(dist.log_prob(actions), expected_log_prob, rtol=1e-6)
    chex.assert_trees_all_close(dist.entropy(), expected_entropy, rtol=1e-6, atol=1e-6)


def test_multi_categorical_sample_frequencies_match_probabilities():
    logits = jnp.broadcast_to(_multi_logits(), (NUM_SAMPLES, 5))
    samples = distributions.MultiCategorical.from_logits(logits, MULTI_NVEC).sample(
        jax.random.key(0)
    )
    chex.assert_shape(samples, (NUM_SAMPLES, 2))
    assert samples.dtype == jnp.int32
    # Independent components: the joint frequency of (a_0, a_1) is p_0(a_0) p_1(a_1). A cell's
    # standard error is sqrt(p (1 - p) / 20000) <= 0.5 / 141 = 0.0035; allow ~4 of those.
    counts = np.zeros((3, 2))
    np.add.at(counts, (np.asarray(samples[:, 0]), np.asarray(samples[:, 1])), 1)
    expected = np.outer(np.exp(_numpy_log_softmax([1.0, 2.0, 3.0])), [0.25, 0.75])
    chex.assert_trees_all_close(counts / NUM_SAMPLES, expected, atol=0.015)


def test_multi_categorical_never_samples_masked_actions():
    logits = jnp.broadcast_to(_multi_logits(), (NUM_SAMPLES, 5))
    mask = jnp.broadcast_to(_multi_mask(), (NUM_SAMPLES, 5))
    dist = distributions.MultiCategorical.from_logits(logits, MULTI_NVEC, mask)
    samples = dist.sample(jax.random.key(1))
    assert not jnp.any(samples[:, 0] == 2)
    assert jnp.all(samples[:, 1] == 0)
    # Component 0 follows p_0 = [0.26894142, 0.73105858]; standard error 0.0031, allow 0.015.
    assert abs(float(jnp.mean(samples[:, 0] == 1)) - 0.73105858) < 0.015
    # Random masks on a [200, 5, 7] batch: the flat index start_d + a_d of every draw is valid.
    logits, mask, _ = _random_multi(2)
    logits, mask = jnp.broadcast_to(logits, (200, 5, 7, 9)), jnp.broadcast_to(mask, (200, 5, 7, 9))
    samples = distributions.MultiCategorical.from_logits(logits, RANDOM_NVEC, mask).sample(
        jax.random.key(2)
    )
    chex.assert_shape(samples, (200, 5, 7, 3))
    starts = jnp.broadcast_to(jnp.int32([start for start, _ in RANDOM_SPANS]), samples.shape)
    assert jnp.all(jnp.take_along_axis(mask, samples + starts, axis=-1))


def test_multi_categorical_samples_depend_on_key():
    logits, mask, _ = _random_multi(3)
    dist = distributions.MultiCategorical.from_logits(logits, RANDOM_NVEC, mask)
    first = dist.sample(jax.random.key(0))
    chex.assert_trees_all_equal(first, dist.sample(jax.random.key(0)))
    assert not np.array_equal(first, dist.sample(jax.random.key(10)))


@pytest.mark.parametrize("masked", [False, True])
def test_multi_categorical_mode_is_per_component_argmax(masked):
    logits, mask, _ = _random_multi(4)
    dist = distributions.MultiCategorical.from_logits(logits, RANDOM_NVEC, mask if masked else None)
    allowed = np.where(mask, np.asarray(logits), -np.inf) if masked else np.asarray(logits)
    expected = np.stack([allowed[..., start:end].argmax(axis=-1) for start, end in RANDOM_SPANS],
                        axis=-1)
    mode = dist.mode()
    assert mode.dtype == jnp.int32
    chex.assert_trees_all_equal(mode, jnp.asarray(expected, dtype=jnp.int32))


def test_multi_categorical_masked_gradients_are_finite():
    logits, mask, actions = _random_multi(5)

    def objective(raw_logits):
        dist = distributions.MultiCategorical.from_logits(raw_logits, RANDOM_NVEC, mask)
        return jnp.sum(dist.entropy()) + jnp.sum(dist.log_prob(actions))

    grad = jax.grad(objective)(logits)
    chex.assert_tree_all_finite(grad)
    chex.assert_trees_all_equal(grad * ~mask, jnp.zeros_like(grad))
    assert jnp.any(grad != 0)


def _build_and_evaluate(logits, mask, action, key):
    dist = distributions.MultiCategorical.from_logits(logits, RANDOM_NVEC, mask)
    return dist.log_prob(action), dist.entropy(), dist.sample(key), dist.mode()


def test_multi_categorical_jit_matches_eager():
    logits, mask, actions = _random_multi(6)
    key = jax.random.key(0)
    eager = _build_and_evaluate(logits, mask, actions, key)
    jitted = jax.jit(_build_and_evaluate)(logits, mask, actions, key)
    chex.assert_trees_all_close(jitted[:2], eager[:2], rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_equal(jitted[2:], eager[2:])
    # The distribution itself crosses the jit boundary: nvec is static aux data.
    dist = distributions.MultiCategorical.from_logits(logits, RANDOM_NVEC, mask)
    chex.assert_trees_all_close(
        jax.jit(distributions.MultiCategorical.log_prob)(dist, actions), eager[0], rtol=1e-6
    )


def test_multi_categorical_vmap_matches_loop():
    logits, mask, actions = _random_multi(7)
    dist = distributions.MultiCategorical.from_logits(logits, RANDOM_NVEC, mask)
    vmapped = jax.vmap(distributions.MultiCategorical.log_prob)(dist, actions)
    looped = jnp.stack([
        distributions.MultiCategorical.from_logits(logits[i], RANDOM_NVEC, mask[i]).log_prob(
            actions[i]
        )
        for i in range(5)
    ])
    chex.assert_trees_all_close(vmapped, looped, rtol=1e-6)
    chex.assert_trees_all_close(dist.log_prob(actions), looped, rtol=1e-6)


@pytest.mark.parametrize(
    ("logits_shape", "nvec", "mask_shape", "message"),
    [
        ((4,), (3, 2), None, "logits [..., 4] do not match nvec (3, 2): expected [..., 5]"),
        ((7, 6), (3, 2), None, "logits [..., 6] do not match nvec (3, 2): expected [..., 5]"),
        ((), (3, 2), None, "logits [] (no action axis) do not match nvec (3, 2)"),
        ((5,), (3, 2), (4,), "mask [..., 4] does not match nvec (3, 2): expected [..., 5]"),
        ((2, 5), (3, 2), (3, 5), "mask shape (3, 5) does not match logits shape (2, 5)"),
        ((5,), (), None, "nvec () must be a non-empty tuple of positive ints"),
        ((5,), (5, 0), None, "nvec (5, 0) must be a non-empty tuple of positive ints"),
        ((5,), (6, -1), None, "nvec (6, -1) must be a non-empty tuple of positive ints"),
    ],
)
def test_multi_categorical_bad_shapes_raise(logits_shape, nvec, mask_shape, message):
    logits = jnp.zeros(logits_shape)
    mask = None if mask_shape is None else jnp.ones(mask_shape, dtype=bool)
    with pytest.raises(ValueError, match=re.escape(message)):
        distributions.MultiCategorical.from_logits(logits, nvec, mask)


def test_multi_categorical_action_without_component_axis_raises():
    # Logits [4, 5] take actions [4, 2]; actions [4] (one int per row) is the likely mistake.
    dist = distributions.MultiCategorical.from_logits(jnp.zeros((4, 5)), MULTI_NVEC)
    message = "action [..., 4] does not match nvec (3, 2): expected [..., 2]"
    with pytest.raises(ValueError, match=re.escape(message)):
        dist.log_prob(jnp.zeros(4, dtype=jnp.int32))


def test_multi_categorical_accepts_a_component_with_one_action():
    # nvec (1, 3): the first component has one action, p = 1, so log p = 0 and H = 0; the
    # joint is the second component alone: logits [0, 0, ln 2] -> p = [1/4, 1/4, 1/2],
    # log p(0, 2) = -ln 2, H = 2 * 1/4 ln 4 + 1/2 ln 2 = 1.5 ln 2 = 1.03972077.
    dist = distributions.MultiCategorical.from_logits(
        jnp.float32([5.0, 0.0, 0.0, math.log(2.0)]), (1, 3))
    chex.assert_trees_all_close(dist.log_prob(jnp.int32([0, 2])), -math.log(2.0), rtol=1e-6)
    chex.assert_trees_all_close(dist.entropy(), 1.5 * math.log(2.0), rtol=1e-6)
    chex.assert_trees_all_equal(dist.mode(), jnp.int32([0, 2]))


# --- gSDE's state-dependent Gaussian --------------------------------------------------------


def _sde(mean=(0.3,), latent=(1.0, 2.0), scales=((0.5,), (0.25,))):
    return distributions.StateDependentGaussian(
        jnp.float32(mean), jnp.float32(latent), jnp.log(jnp.float32(scales)))


def test_state_dependent_gaussian_known_values():
    dist = _sde()
    # variance = 1^2 * 0.5^2 + 2^2 * 0.25^2 (+ 1e-6) = 0.25 + 0.25 + 1e-6 = 0.500001. At
    # a = mean + 1: log p = -1 / (2 * 0.500001) - log(0.500001) / 2 - log(2 pi) / 2
    # = -0.999998 + 0.34657259 - 0.91893853 = -1.57236394.
    chex.assert_trees_all_close(dist.log_prob(jnp.float32([1.3])), -1.57236394, rtol=1e-6)
    # H = log(0.500001) / 2 + (1 + log 2 pi) / 2 = -0.34657259 + 1.41893853 = 1.07236594.
    chex.assert_trees_all_close(dist.entropy(), 1.07236594, rtol=1e-6)
    # Under the noise matrix [[1], [-2]]: z (sigma * noise) = 1 * 0.5 * 1 + 2 * 0.25 * -2
    # = -0.5, so the action is 0.3 - 0.5 = -0.2.
    chex.assert_trees_all_close(dist.explore(jnp.float32([[1.0], [-2.0]])), jnp.float32([-0.2]),
                                rtol=1e-6)
    chex.assert_trees_all_equal(dist.mode(), jnp.float32([0.3]))


def test_state_dependent_gaussian_matches_numpy_on_random_inputs():
    rng = np.random.default_rng(0)
    mean, latent = rng.normal(size=(5, 3)), np.tanh(rng.normal(size=(5, 4)))
    log_std, action = rng.normal(scale=0.5, size=(4, 3)), rng.normal(size=(5, 3))
    dist = distributions.StateDependentGaussian(jnp.float32(mean), jnp.float32(latent),
                                                jnp.float32(log_std))
    variance = latent**2 @ np.exp(2 * log_std) + 1e-6
    expected = (-(action - mean) ** 2 / (2 * variance) - 0.5 * np.log(2 * np.pi * variance)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(jnp.float32(action)), expected, rtol=1e-5)
    np.testing.assert_allclose(dist.entropy(),
                               0.5 * np.log(2 * np.pi * np.e * variance).sum(-1), rtol=1e-5)


def test_explore_has_the_state_distribution():
    # Over many noise matrices, the actions at one state have the mean and the variance
    # (0.500001) that log_prob uses; a standard error of 0.5 * sqrt(2 / 20,000) = 0.005 for
    # the variance.
    dist = _sde()
    noise = jax.random.normal(jax.random.key(0), (NUM_SAMPLES, 2, 1))
    actions = jax.vmap(dist.explore)(noise)
    chex.assert_trees_all_close(jnp.mean(actions), 0.3, atol=0.02)
    chex.assert_trees_all_close(jnp.var(actions), 0.5, atol=0.025)
    # `sample` draws each state's action on its own, with the same distribution.
    batch = jax.tree.map(lambda x: jnp.broadcast_to(x, (NUM_SAMPLES, *x.shape)), dist)
    samples = distributions.StateDependentGaussian(batch.mean, batch.latent, dist.log_std).sample(
        jax.random.key(1))
    chex.assert_trees_all_close(jnp.var(samples), 0.5, atol=0.025)


def test_state_dependent_variance_sends_no_gradient_to_the_features():
    # Stable-Baselines3's default (learn_features=False): the noise scales learn through
    # log_std, the features only through the mean's head.
    def log_prob(mean, latent, log_std):
        dist = distributions.StateDependentGaussian(mean, latent, log_std)
        return dist.log_prob(jnp.float32([1.3])) + dist.entropy()

    args = _sde()
    grads = jax.grad(log_prob, argnums=(0, 1, 2))(args.mean, args.latent, args.log_std)
    chex.assert_trees_all_equal(grads[1], jnp.zeros(2))
    assert np.all(np.asarray(grads[0]) != 0) and np.all(np.asarray(grads[2]) != 0)
