"""The policy's view of an observation: what acting, training and evaluation share.

A policy is its params and the normalizer statistics it was trained with (`Policy`). Raw
observations reach the networks through `observe` (normalized and clipped when normalize_obs
is on); the critic's output leaves through `critic_value` in return units (denormalized when
normalize_values is on). The rollout, the update's batch and evaluation all go through here,
so they see an observation the same way.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import struct

from jaxppo import networks, normalize
from jaxppo.config import Config


class Policy(struct.PyTreeNode):
    """What acting needs besides the envs: params and the frozen normalizer statistics."""

    params: Any
    normalizers: normalize.Normalizers


def observe(config: Config, normalizers: normalize.Normalizers, raw_obs: jax.Array
            ) -> jax.Array:
    """Raw observations as the networks see them (normalized and clipped when switched on)."""
    if not config.normalize_obs:
        return raw_obs
    return normalize.normalize(normalizers.obs, raw_obs, config.obs_clip)


def in_return_units(config: Config, policy: Policy, value: jax.Array) -> jax.Array:
    """A critic output in return units (denormalized when normalize_values is on)."""
    if not config.normalize_values:
        return value
    return normalize.denormalize(policy.normalizers.value, value)


def critic_value(config: Config, network, policy: Policy, obs: jax.Array, core=None
                 ) -> jax.Array:
    """V(obs) in return units for observations as the networks see them, [...]; for a
    recurrent policy, of observations continuing episodes from the carry ``core``
    (`networks.next_value`)."""
    return in_return_units(
        config, policy, networks.next_value(network, policy.params, config, core, obs))


def act(config: Config, network, policy: Policy, obs: jax.Array, mask: jax.Array | None,
        key: jax.Array, core=None, start: jax.Array | None = None,
        noise: jax.Array | None = None):
    """Sample actions at obs [N, *obs] (as the networks see them), one step of `networks.step`
    from the recurrent carry ``core`` (None without a core), zeroed where ``start`` [N].
    With gSDE, ``noise`` [N, L, D] is each env's standard normal noise matrix
    (`distributions.StateDependentGaussian.explore`) and ``key`` is not used.

    Returns:
        (the carry after obs, action, log pi(action | obs), V(obs) in return units), each
        batched over [N].
    """
    core, dist, value = networks.step(network, policy.params, config, core, obs, start, mask)
    action = dist.sample(key) if noise is None else dist.explore(noise)
    return core, action, dist.log_prob(action), in_return_units(config, policy, value)
