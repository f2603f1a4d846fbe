"""Collect experience: `lax.scan` over num_steps of one policy step on N vmapped envs."""

from __future__ import annotations

import functools
from typing import Any

import jax
from flax import struct

from jaxppo import networks, normalize
from jaxppo.config import Config


class Transition(struct.PyTreeNode):
    """One rollout, time-major: every field is [T, N, ...].

    Step t acts on ``obs`` and reaches the (pre-reset) next observation ``final_obs``, whose
    value is ``next_value``; where an episode ended, the env's next ``obs`` already starts a
    new one. Observations are stored as the networks saw them (normalized with the frozen
    statistics of this update when normalize_obs is on); ``raw_obs`` feeds the statistics.
    Fields a config does not use are None (not stored, not shuffled, not carried).

    Attributes:
        obs: observations acted on, as the networks saw them, [T, N, O].
        raw_obs: the same observations before normalization, [T, N, O]; None unless
            normalize_obs.
        final_obs: next observations before any reset, as the networks see them, [T, N, O].
        action: sampled actions, [T, N] (discrete) or [T, N, D] (continuous, unclipped).
        action_mask: valid actions when acting, [T, N, K]; None unless action_masking.
        log_prob: log pi_old(action | obs), [T, N].
        value: V_old(obs) in return units, [T, N].
        reward: the env's reward, [T, N].
        terminated: the transition reached a terminal state, [T, N].
        truncated: the episode was cut by a time limit (not terminal), [T, N].
        next_value: V_old(final_obs) in return units, [T, N].
        episode_return: return of the episode so far, complete where terminated | truncated.
        episode_length: length of the episode so far, likewise.
    """

    obs: jax.Array
    raw_obs: jax.Array | None
    final_obs: jax.Array
    action: jax.Array
    action_mask: jax.Array | None
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_value: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        """An episode ended at this step."""
        return self.terminated | self.truncated


class EnvCarry(struct.PyTreeNode):
    """What the rollout scan carries: the current raw observation and env states of N envs."""

    obs: jax.Array
    env_state: Any


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


def critic_value(config: Config, network, policy: Policy, obs: jax.Array) -> jax.Array:
    """V(obs) in return units (denormalized when normalize_values is on)."""
    value = networks.value(network, policy.params, config, obs)
    if config.normalize_values:
        value = normalize.denormalize(policy.normalizers.value, value)
    return value


def _policy_step(carry: EnvCarry, key: jax.Array, config: Config, env, network,
                 policy: Policy):
    """Act in every env once. Returns the new carry and the transition of this step."""
    action_key, env_key = jax.random.split(key)
    obs = observe(config, policy.normalizers, carry.obs)
    mask = jax.vmap(env.action_mask)(carry.env_state) if config.action_masking else None
    dist, value = networks.apply(network, policy.params, config, obs, mask)
    if config.normalize_values:
        value = normalize.denormalize(policy.normalizers.value, value)
    action = dist.sample(action_key)
    env_keys = jax.random.split(env_key, carry.obs.shape[0])
    env_state, step = jax.vmap(env.step)(env_keys, carry.env_state, action)
    transition = Transition(
        obs=obs,
        raw_obs=carry.obs if config.normalize_obs else None,
        final_obs=observe(config, policy.normalizers, step.final_obs),
        action=action,
        action_mask=mask,
        log_prob=dist.log_prob(action),
        value=value,
        reward=step.reward,
        terminated=step.terminated,
        truncated=step.truncated,
        next_value=value,  # placeholder, replaced after the scan
        episode_return=step.episode_return,
        episode_length=step.episode_length,
    )
    return EnvCarry(step.obs, env_state), transition


def rollout(config: Config, env, network, policy: Policy, carry: EnvCarry, key: jax.Array
            ) -> tuple[EnvCarry, Transition]:
    """Run the policy for config.num_steps steps in N envs with auto-reset.

    The values of the pre-reset next observations are computed after the scan in one batched
    critic pass over [T, N] (a bigger matmul than T small ones inside the loop).

    Args:
        config: the run's config.
        env: a `jaxppo.envs` env.
        network: the `networks.ActorCritic` for the params.
        policy: params and the normalizer statistics, frozen for the whole rollout.
        carry: current raw observations [N, O] and env states of N envs.
        key: PRNG key for actions and env steps.

    Returns:
        The carry after T steps, and the `Transition` [T, N, ...].
    """
    body = functools.partial(_policy_step, config=config, env=env, network=network,
                             policy=policy)
    carry, transitions = jax.lax.scan(body, carry, jax.random.split(key, config.num_steps))
    next_value = critic_value(config, network, policy, transitions.final_obs)
    return carry, transitions.replace(next_value=next_value)
