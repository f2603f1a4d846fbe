"""Collect experience: `lax.scan` over num_steps of one policy step on N vmapped envs."""

from __future__ import annotations

import functools
from typing import Any

import jax
from flax import struct


class Transition(struct.PyTreeNode):
    """One rollout, time-major: every field is [T, N, ...].

    Step t acts on ``obs`` and reaches the (pre-reset) next observation whose value is
    ``next_value``; where an episode ended, the env's next ``obs`` already starts a new one.

    Attributes:
        obs: observations acted on, [T, N, O].
        action: sampled actions, [T, N] (discrete) or [T, N, D] (continuous, unclipped).
        log_prob: log pi_old(action | obs), [T, N].
        value: V_old(obs), [T, N].
        reward: [T, N].
        terminated: the transition reached a terminal state, [T, N].
        truncated: the episode was cut by a time limit (not terminal), [T, N].
        next_value: V_old of the pre-reset next observation, [T, N].
        episode_return: return of the episode so far, complete where terminated | truncated.
        episode_length: length of the episode so far, likewise.
    """

    obs: jax.Array
    action: jax.Array
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
    """What the rollout scan carries: the current observation and env states of N envs."""

    obs: jax.Array
    env_state: Any


def _policy_step(carry: EnvCarry, key: jax.Array, env, network, params):
    """Act in every env once. Returns the new carry, the partial transition and final_obs."""
    action_key, env_key = jax.random.split(key)
    dist, value = network.apply(params, carry.obs)
    action = dist.sample(action_key)
    env_keys = jax.random.split(env_key, carry.obs.shape[0])
    env_state, step = jax.vmap(env.step)(env_keys, carry.env_state, action)
    transition = Transition(
        obs=carry.obs,
        action=action,
        log_prob=dist.log_prob(action),
        value=value,
        reward=step.reward,
        terminated=step.terminated,
        truncated=step.truncated,
        next_value=value,  # placeholder, replaced after the scan
        episode_return=step.episode_return,
        episode_length=step.episode_length,
    )
    return EnvCarry(step.obs, env_state), (transition, step.final_obs)


def rollout(env, network, params, carry: EnvCarry, key: jax.Array, num_steps: int
            ) -> tuple[EnvCarry, Transition]:
    """Run the policy for ``num_steps`` steps in N envs with auto-reset.

    The values of the pre-reset next observations are computed after the scan in one batched
    critic pass over [T, N] (a bigger matmul than T small ones inside the loop).

    Args:
        env: a `jaxppo.envs` env.
        network: the `networks.ActorCritic` for ``params``.
        params: network params.
        carry: current observations [N, O] and env states of N envs.
        key: PRNG key for actions and env steps.
        num_steps: T.

    Returns:
        The carry after T steps, and the `Transition` [T, N, ...].
    """
    body = functools.partial(_policy_step, env=env, network=network, params=params)
    carry, (transitions, final_obs) = jax.lax.scan(
        body, carry, jax.random.split(key, num_steps)
    )
    next_value = network.apply(params, final_obs, method="value")
    return carry, transitions.replace(next_value=next_value)
