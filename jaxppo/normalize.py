"""Running statistics for observation normalization, reward scaling and value targets.

Statistics are merged with the parallel algorithm of Chan et al. (1979): two sets of
(mean, variance, count) combine exactly, so a whole rollout [T, N, ...] is merged at once and
the result equals numpy's mean and variance of everything seen. Callers freeze statistics
within an update (rollout and every epoch see the same ones) and merge after it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

EPS = 1e-8


class RunningStats(struct.PyTreeNode):
    """Mean and (population) variance of every sample seen so far, elementwise over ``shape``.

    A fresh one has count 0, mean 0 and variance 1, so normalizing with it is the identity.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...] = ()) -> RunningStats:
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32),
                   jnp.zeros((), jnp.float32))

    @property
    def std(self) -> jax.Array:
        return jnp.sqrt(self.var + EPS)


def merge(stats: RunningStats, samples: jax.Array) -> RunningStats:
    """Merge a batch of samples [..., *shape] (all leading axes are samples) into ``stats``.

    With n_a, n_b the counts, delta = mean_b - mean_a and n = n_a + n_b:
        mean = mean_a + delta * n_b / n
        var  = (var_a * n_a + var_b * n_b + delta^2 * n_a * n_b / n) / n
    A count of 0 (fresh stats) gives exactly the batch's mean and variance.
    """
    feature_rank = stats.mean.ndim
    axes = tuple(range(samples.ndim - feature_rank))
    n_b = jnp.asarray(samples.size // max(stats.mean.size, 1), jnp.float32)
    mean_b = jnp.mean(samples, axis=axes)
    var_b = jnp.var(samples, axis=axes)
    n = stats.count + n_b
    delta = mean_b - stats.mean
    mean = stats.mean + delta * (n_b / n)
    m2 = stats.var * stats.count + var_b * n_b + delta**2 * (stats.count * n_b / n)
    return RunningStats(mean, m2 / n, n)


def normalize(stats: RunningStats, x: jax.Array, clip: float | jax.Array | None = None
              ) -> jax.Array:
    """(x - mean) / sqrt(var + 1e-8), optionally clipped to [-clip, clip]."""
    mean, std = (jnp.broadcast_to(a, x.shape) for a in (stats.mean, stats.std))
    out = (x - mean) / std
    return out if clip is None else jnp.clip(out, -clip, clip)


def denormalize(stats: RunningStats, x: jax.Array) -> jax.Array:
    """The inverse of `normalize` without clipping: x * sqrt(var + 1e-8) + mean."""
    mean, std = (jnp.broadcast_to(a, x.shape) for a in (stats.mean, stats.std))
    return x * std + mean


def _discount_step(carry: jax.Array, inputs, gamma):
    reward, done = inputs
    running = carry * gamma + reward
    return jnp.where(done, 0.0, running), running


def discounted_returns(carry: jax.Array, rewards: jax.Array, dones: jax.Array,
                       gamma: float | jax.Array) -> tuple[jax.Array, jax.Array]:
    """The per-env running discounted return used for reward scaling (as SB3 / CleanRL).

        R_t = gamma * R_{t-1} + r_t, and R is reset to 0 after a step where the episode ended.

    Args:
        carry: R before the rollout, [N].
        rewards: [T, N].
        dones: episode ended at t (terminated or truncated), [T, N].
        gamma: the discount.

    Returns:
        (R after the rollout [N], R_t for every step [T, N]).
    """
    step = functools.partial(_discount_step, gamma=gamma)
    return jax.lax.scan(step, carry, (rewards, dones))


def scale_rewards(stats: RunningStats, rewards: jax.Array) -> jax.Array:
    """r / sqrt(Var[R] + 1e-8), R the running discounted return (no mean is subtracted)."""
    return rewards / stats.std


class Normalizers(struct.PyTreeNode):
    """Every running statistic of a run (carried whether or not its switch is on).

    Attributes:
        obs: statistics of raw observations, elementwise over the observation's shape.
        reward: statistics of the per-env discounted return R (a scalar).
        value: statistics of the value targets (a scalar).
        discounted_return: the running R of each env [N].
    """

    obs: RunningStats
    reward: RunningStats
    value: RunningStats
    discounted_return: jax.Array

    @classmethod
    def create(cls, observation_shape: int | tuple[int, ...], num_envs: int) -> Normalizers:
        """Fresh statistics for observations of ``observation_shape`` (an int O means [O])."""
        if isinstance(observation_shape, int):
            observation_shape = (observation_shape,)
        return cls(RunningStats.create(tuple(observation_shape)), RunningStats.create(),
                   RunningStats.create(), jnp.zeros((num_envs,), jnp.float32))
