"""Tests of `jaxppo.losses`: known values, gradients in and out of the clip, diagnostics."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxppo import losses

CLIP_EPS = 0.2


def _random_minibatch(seed, size=32):
    rng = np.random.default_rng(seed)
    old_log_prob = rng.normal(size=size).astype(np.float32)
    log_prob = old_log_prob + 0.5 * rng.normal(size=size).astype(np.float32)
    advantages = rng.normal(size=size).astype(np.float32)
    return jnp.asarray(log_prob), jnp.asarray(old_log_prob), jnp.asarray(advantages)


def _standard_ppo_loss(log_prob, old_log_prob, advantages, clip_eps):
    """The clipped surrogate of Schulman et al. 2017, written out with the same jnp ops."""
    ratio = jnp.exp(log_prob - old_log_prob)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages))


def _reference_objective(ratio, advantage, clip_eps, dual_clip_c=None):
    """Per-sample objective by plain Python branches."""
    clipped_ratio = min(max(ratio, 1.0 - clip_eps), 1.0 + clip_eps)
    objective = min(ratio * advantage, clipped_ratio * advantage)
    if dual_clip_c is not None and advantage < 0:
        objective = max(objective, dual_clip_c * advantage)
    return objective


def _policy_loss_of_ratio(ratios, advantages, dual_clip_c=None):
    """(loss, d loss / d log_prob) at log_prob = log(ratio), old_log_prob = 0."""
    log_prob = jnp.log(jnp.asarray(ratios, jnp.float32))
    advantages = jnp.asarray(advantages, jnp.float32)

    def loss_fn(lp):
        return losses.policy_loss(lp, jnp.zeros_like(lp), advantages, CLIP_EPS, dual_clip_c)[0]

    return jax.value_and_grad(loss_fn)(log_prob)


def test_ratio_one_gives_minus_mean_advantage():
    _, old_log_prob, advantages = _random_minibatch(0)
    loss, info = losses.policy_loss(old_log_prob, old_log_prob, advantages, CLIP_EPS)
    # r = exp(0) = 1 lies inside [0.8, 1.2], so both surrogate terms are A.
    chex.assert_trees_all_close(loss, -np.mean(np.asarray(advantages, np.float64)), rtol=1e-6)
    chex.assert_trees_all_close(info.approx_kl, 0.0, atol=0.0)
    chex.assert_trees_all_close(info.clip_fraction, 0.0, atol=0.0)


def test_policy_gradient_zero_inside_clipped_region_and_nonzero_outside():
    # old_log_prob = 0, so d r / d log_prob = r and, unclipped,
    # d loss_i / d log_prob_i = -(1 / B) * r_i * A_i with B = 5.
    ratios = [1.5, 0.5, 0.5, 1.5, 1.1]
    advantages = [1.0, -1.0, 1.0, -1.0, 1.0]
    _, grad = _policy_loss_of_ratio(ratios, advantages)
    expected = [
        0.0,  # A > 0, r = 1.5 > 1.2: the clipped term 1.2 * 1 is the min, constant in r
        0.0,  # A < 0, r = 0.5 < 0.8: min(-0.5, -0.8) = -0.8, constant in r
        -0.5 * 1.0 / 5,  # A > 0, r = 0.5: min(0.5, 0.8) = r * A, grad -0.1
        -1.5 * -1.0 / 5,  # A < 0, r = 1.5: min(-1.5, -1.2) = r * A, grad 0.3
        -1.1 * 1.0 / 5,  # inside the trust region, grad -0.22
    ]
    chex.assert_trees_all_close(grad, jnp.float32(expected), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dual_clip_c", [None, 3.0])
def test_policy_loss_matches_plain_python_reference(seed, dual_clip_c):
    log_prob, old_log_prob, advantages = _random_minibatch(seed)
    # Spread the ratios so that every branch (clipped, unclipped, dual-clipped) occurs.
    log_prob = old_log_prob + 4.0 * (log_prob - old_log_prob)
    loss, _ = losses.policy_loss(log_prob, old_log_prob, advantages, CLIP_EPS, dual_clip_c)
    ratios = np.exp(np.float64(log_prob) - np.float64(old_log_prob))
    objectives = [
        _reference_objective(r, a, CLIP_EPS, dual_clip_c)
        for r, a in zip(ratios, np.float64(advantages), strict=True)
    ]
    chex.assert_trees_all_close(loss, -np.mean(objectives), rtol=1e-5, atol=1e-6)


def test_dual_clip_floor_known_value_and_zero_gradient():
    # A = -1, r = 10, c = 3: L_clip = min(10 * -1, 1.2 * -1) = -10;
    # dual clip: max(-10, 3 * -1) = -3, so the loss is 3.0 and constant in r.
    loss, grad = _policy_loss_of_ratio([10.0], [-1.0], dual_clip_c=3.0)
    chex.assert_trees_all_close(loss, 3.0, rtol=1e-6)
    chex.assert_trees_all_close(grad, jnp.zeros(1), atol=0.0)
    # Without the dual clip the same sample gives loss 10 and gradient -r * A = 10.
    loss, grad = _policy_loss_of_ratio([10.0], [-1.0])
    chex.assert_trees_all_close(loss, 10.0, rtol=1e-6)
    chex.assert_trees_all_close(grad, jnp.float32([10.0]), rtol=1e-6)


def test_dual_clip_none_is_standard_ppo_bit_for_bit():
    log_prob, old_log_prob, advantages = _random_minibatch(3)
    loss, _ = losses.policy_loss(log_prob, old_log_prob, advantages, CLIP_EPS, None)
    expected = _standard_ppo_loss(log_prob, old_log_prob, advantages, CLIP_EPS)
    chex.assert_trees_all_equal(loss, expected)


def test_dual_clip_with_nonnegative_advantages_is_standard_bit_for_bit():
    log_prob, old_log_prob, advantages = _random_minibatch(4)
    advantages = jnp.abs(advantages)
    log_prob = old_log_prob + 4.0 * (log_prob - old_log_prob)  # ratios far outside the clip
    standard = losses.policy_loss(log_prob, old_log_prob, advantages, CLIP_EPS)
    dual = losses.policy_loss(log_prob, old_log_prob, advantages, CLIP_EPS, 3.0)
    chex.assert_trees_all_equal(dual, standard)
    # With the signs flipped the dual clip does bind somewhere: the guard above can fail.
    negative = losses.policy_loss(log_prob, old_log_prob, -advantages, CLIP_EPS, 3.0)
    standard_negative = losses.policy_loss(log_prob, old_log_prob, -advantages, CLIP_EPS)
    assert negative[0] < standard_negative[0]


def test_approx_kl_and_clip_fraction_known_values():
    ratios = [2.0, 0.5, 1.1, 1.0]
    log_prob = jnp.log(jnp.float32(ratios))
    _, info = losses.policy_loss(log_prob, jnp.zeros(4), jnp.ones(4), CLIP_EPS)
    # (r - 1) - log r per sample:
    #   r = 2:   1 - log 2      = 0.30685282
    #   r = 0.5: -0.5 + log 2   = 0.19314718
    #   r = 1.1: 0.1 - log 1.1  = 0.00468982
    #   r = 1:   0
    # mean = (0.6 - log 1.1) / 4 = 0.12617246
    chex.assert_trees_all_close(info.approx_kl, (0.6 - math.log(1.1)) / 4, rtol=1e-5)
    # |r - 1| = 1, 0.5, 0.1, 0 against eps = 0.2: two of four clipped.
    chex.assert_trees_all_close(info.clip_fraction, 0.5, atol=0.0)


def test_diagnostics_carry_no_gradient():
    log_prob, old_log_prob, advantages = _random_minibatch(5)

    def approx_kl(lp):
        return losses.policy_loss(lp, old_log_prob, advantages, CLIP_EPS)[1].approx_kl

    grad = jax.grad(approx_kl)(log_prob)
    chex.assert_trees_all_close(grad, jnp.zeros_like(grad), atol=0.0)


def test_value_loss_known_values():
    values, old_values, returns = jnp.ones(1), jnp.zeros(1), jnp.full(1, 2.0)
    # Plain: 0.5 * (1 - 2)^2 = 0.5.
    chex.assert_trees_all_close(losses.value_loss(values, old_values, returns), 0.5, rtol=1e-6)
    # Clip 0.2: unclipped (1 - 2)^2 = 1; clipped V = 0 + clip(1, -0.2, 0.2) = 0.2 gives
    # (0.2 - 2)^2 = 3.24; max 3.24, times 0.5 = 1.62.
    chex.assert_trees_all_close(
        losses.value_loss(values, old_values, returns, 0.2), 1.62, rtol=1e-6
    )


def test_value_loss_clip_keeps_larger_unclipped_error():
    # old = 0, new = 1, target = 0.5, clip 0.2: unclipped (1 - 0.5)^2 = 0.25,
    # clipped (0.2 - 0.5)^2 = 0.09; max 0.25, times 0.5 = 0.125.
    loss = losses.value_loss(jnp.ones(1), jnp.zeros(1), jnp.full(1, 0.5), 0.2)
    chex.assert_trees_all_close(loss, 0.125, rtol=1e-6)
    # Both samples in one batch: 0.5 * mean(3.24, 0.25) = 0.8725.
    loss = losses.value_loss(jnp.ones(2), jnp.zeros(2), jnp.float32([2.0, 0.5]), 0.2)
    chex.assert_trees_all_close(loss, 0.8725, rtol=1e-6)


def test_value_loss_clip_matches_plain_loop():
    rng = np.random.default_rng(6)
    values, old_values, returns = rng.normal(size=(3, 16)).astype(np.float32)
    loss = losses.value_loss(values, old_values, returns, 0.3)
    terms = []
    for v, v_old, ret in zip(values, old_values, returns, strict=True):
        v_clipped = v_old + min(max(v - v_old, -0.3), 0.3)
        terms.append(max((v - ret) ** 2, (v_clipped - ret) ** 2))
    chex.assert_trees_all_close(loss, 0.5 * np.mean(terms), rtol=1e-5)


def test_explained_variance_known_values():
    targets = jnp.float32([1.0, 2.0, 3.0, 4.0])
    # Perfect critic: Var(0) / Var(t) = 0, so 1.
    chex.assert_trees_all_close(losses.explained_variance(targets, targets), 1.0, atol=0.0)
    # The mean 2.5 everywhere: Var(t - 2.5) = Var(t), so 0.
    mean_prediction = jnp.full(4, 2.5)
    chex.assert_trees_all_close(
        losses.explained_variance(mean_prediction, targets), 0.0, atol=1e-6
    )
    # Half the targets: Var(0.5 t) / Var(t) = 0.25, so 0.75.
    chex.assert_trees_all_close(
        losses.explained_variance(0.5 * targets, targets), 0.75, rtol=1e-6
    )
    # Negated: Var(2 t) / Var(t) = 4, so -3 (worse than the mean).
    chex.assert_trees_all_close(losses.explained_variance(-targets, targets), -3.0, rtol=1e-6)


def test_explained_variance_constant_targets_is_nan():
    ev = losses.explained_variance(jnp.float32([0.0, 1.0, 2.0]), jnp.full(3, 5.0))
    assert jnp.isnan(ev)


def test_normalize_advantages_mean_zero_std_one():
    advantages = 3.0 + 7.0 * _random_minibatch(7, size=64)[2]
    normalized = losses.normalize_advantages(advantages)
    chex.assert_trees_all_close(normalized.mean(), 0.0, atol=1e-6)
    chex.assert_trees_all_close(normalized.std(), 1.0, rtol=1e-5)
    # Order-preserving affine map: (A - mean) / std.
    expected = (np.float64(advantages) - np.mean(np.float64(advantages))) / np.std(
        np.float64(advantages)
    )
    chex.assert_trees_all_close(normalized, expected.astype(np.float32), rtol=1e-4, atol=1e-5)


def test_normalize_advantages_of_a_constant_minibatch_is_zero_not_nan():
    # std 0: (A - mean) / (0 + eps) = 0 / 1e-8 = 0; without eps it would be 0 / 0 = NaN.
    normalized = losses.normalize_advantages(jnp.full(8, 3.0))
    np.testing.assert_array_equal(normalized, np.zeros(8))


def test_normalize_advantages_adds_eps_to_the_std():
    # A = (0, 2e-8): mean 1e-8, std 1e-8, so (A - mean) / (1e-8 + 1e-8) = (-0.5, 0.5);
    # eps left out gives (-1, 1), eps subtracted divides by 0.
    normalized = losses.normalize_advantages(jnp.float32([0.0, 2e-8]))
    chex.assert_trees_all_close(normalized, jnp.float32([-0.5, 0.5]), rtol=1e-5)


def test_explained_variance_with_target_variance_below_one():
    # t = (0, 1): Var(t) = 0.25 (in (0, 1], a number, not NaN); p = 0.5 t:
    # Var(t - p) = Var(0.5 t) = 0.0625, so 1 - 0.0625 / 0.25 = 0.75.
    targets = jnp.float32([0.0, 1.0])
    chex.assert_trees_all_close(
        losses.explained_variance(0.5 * targets, targets), 0.75, rtol=1e-6
    )


def test_clip_fraction_counts_only_ratios_strictly_outside_the_range():
    # Ratios 1.25, 1 and 2 with eps = |1.25 - 1| computed by the same float32 ops, so the
    # first sits exactly on the boundary: |r - 1| > eps for the last one only, 1 / 3.
    log_prob = jnp.log(jnp.float32([1.25, 1.0, 2.0]))
    boundary = jnp.abs(jnp.exp(log_prob[0]) - 1.0)
    _, info = losses.policy_loss(log_prob, jnp.zeros(3), jnp.ones(3), boundary)
    chex.assert_trees_all_close(info.clip_fraction, 1.0 / 3.0, rtol=1e-6)
