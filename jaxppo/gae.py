"""Generalized advantage estimation (Schulman et al. 2016) for one trajectory.

Callers vmap over environments: ``jax.vmap(gae, in_axes=(1, 1, 1, 1, 1, None, None),
out_axes=1)`` on [T, N] arrays.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp


def _backward_step(carry: jax.Array, inputs, gamma: jax.Array, gae_lambda: jax.Array):
    delta, done = inputs
    advantage = delta + gamma * gae_lambda * (1.0 - done) * carry
    return advantage, advantage


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets of one trajectory of T steps, by a reverse `lax.scan`.

    Time alignment: step t acts on obs_t, gets reward r_t and reaches next_obs_t (the
    pre-reset observation when the episode ended at t).

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
        A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1},  A_T = 0
        done_t  = terminated_t or truncated_t;  returns_t = A_t + values_t

    So a terminated step neither bootstraps nor continues the recursion; a truncated step
    bootstraps from V(next_obs_t) but cuts the recursion (the next step belongs to a new
    episode). The last step bootstraps from next_values_{T-1} = V(obs_T).

    Args:
        rewards: r_t, [T].
        values: V(obs_t), [T].
        next_values: V(next_obs_t), [T].
        terminated: [T] bool or {0, 1}.
        truncated: [T] bool or {0, 1}.
        gamma: discount in [0, 1].
        gae_lambda: lambda in [0, 1].

    Returns:
        (advantages [T], returns [T]).
    """
    chex.assert_rank([rewards, values, next_values, terminated, truncated], 1)
    chex.assert_equal_shape([rewards, values, next_values, terminated, truncated])
    dtype = values.dtype
    terminated = terminated.astype(dtype)
    done = jnp.maximum(terminated, truncated.astype(dtype))
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    step = functools.partial(_backward_step, gamma=gamma, gae_lambda=gae_lambda)
    _, advantages = jax.lax.scan(
        step, jnp.zeros((), dtype), (deltas, done), reverse=True
    )
    return advantages, advantages + values


def batched_gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """`gae` over N trajectories stored time-major, [T, N] in and out."""
    over_envs = jax.vmap(gae, in_axes=(1, 1, 1, 1, 1, None, None), out_axes=1)
    return over_envs(rewards, values, next_values, terminated, truncated, gamma, gae_lambda)
