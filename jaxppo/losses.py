"""PPO losses and diagnostics: pure array math over a minibatch [B] (any shape works).

Each loss is returned as a value to minimize. The total PPO loss is the sum of named terms,
``policy_loss + vf_coef * value_loss - ent_coef * entropy``, assembled by `jaxppo.update`.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct


class PolicyInfo(struct.PyTreeNode):
    """Diagnostics of the policy update on a minibatch (no gradient flows through them)."""

    approx_kl: jax.Array
    clip_fraction: jax.Array


def normalize_advantages(advantages: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(A - mean(A)) / (std(A) + eps) over the minibatch."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def policy_loss(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    clip_eps: float | jax.Array,
    dual_clip_c: float | jax.Array | None = None,
) -> tuple[jax.Array, PolicyInfo]:
    """Negated mean clipped-surrogate objective (Schulman et al. 2017), optionally dual-clipped.

    With r = exp(log_prob - old_log_prob):

        L_clip = min(r * A, clip(r, 1 - eps, 1 + eps) * A)
        dual clip (Ye et al. 2020), where A < 0:  max(L_clip, c * A);  A >= 0: L_clip

    Advantages are used as given (normalizing them is the caller's switch).

    Args:
        log_prob: log pi(a|s) under the current params, [B].
        old_log_prob: log pi_old(a|s) from the rollout, [B].
        advantages: A, [B].
        clip_eps: eps > 0.
        dual_clip_c: c > 1, or None for exactly standard PPO.

    Returns:
        (-mean(objective), PolicyInfo), where approx_kl is the mean of
        (r - 1) - log r (Schulman's low-variance unbiased estimator of KL(old || new)) and
        clip_fraction the share of samples with |r - 1| > eps.
    """
    chex.assert_equal_shape([log_prob, old_log_prob, advantages])
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    objective = jnp.minimum(unclipped, clipped)
    if dual_clip_c is not None:
        objective = jnp.where(
            advantages < 0, jnp.maximum(objective, dual_clip_c * advantages), objective
        )
    ratio = jax.lax.stop_gradient(ratio)
    info = PolicyInfo(
        approx_kl=jnp.mean((ratio - 1.0) - jax.lax.stop_gradient(log_ratio)),
        clip_fraction=jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    )
    return -jnp.mean(objective), info


def value_loss(
    values: jax.Array,
    old_values: jax.Array,
    returns: jax.Array,
    vf_clip: float | jax.Array | None = None,
) -> jax.Array:
    """Half mean squared error of the value prediction, optionally clipped.

        unclipped:  0.5 * mean((V - R)^2)
        clipped:    0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))

    Args:
        values: V(s) under the current params, [B].
        old_values: V_old(s) from the rollout, [B].
        returns: value targets R, [B].
        vf_clip: clip range c > 0, or None for the plain MSE.
    """
    chex.assert_equal_shape([values, old_values, returns])
    squared = (values - returns) ** 2
    if vf_clip is not None:
        clipped_values = old_values + jnp.clip(values - old_values, -vf_clip, vf_clip)
        squared = jnp.maximum(squared, (clipped_values - returns) ** 2)
    return 0.5 * jnp.mean(squared)


def explained_variance(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """1 - Var(targets - predictions) / Var(targets); NaN when the targets have no variance.

    1 is a perfect critic, 0 one no better than predicting the mean, < 0 worse than that.
    """
    var_targets = jnp.var(targets)
    ev = 1.0 - jnp.var(targets - predictions) / var_targets
    return jnp.where(var_targets > 0, ev, jnp.nan)
