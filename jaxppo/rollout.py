"""Collect experience: `lax.scan` over num_steps of one policy step on N vmapped envs."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxppo import envs
from jaxppo import policy as policy_lib
from jaxppo.config import Config


class Transition(struct.PyTreeNode):
    """One rollout, time-major: every field is [T, N, ...].

    Step t acts on ``obs`` and reaches the (pre-reset) next observation ``final_obs``; where
    an episode ended, the env's next ``obs`` already starts a new one. The value of
    ``final_obs`` is the update's to compute (`jaxppo.update.advantages`), in one batched
    critic pass over [T, N]. Observations are stored as the networks saw them (normalized
    with the frozen statistics of this update when normalize_obs is on); ``raw_obs`` feeds
    the statistics.
    Fields a config does not use are None (not stored, not shuffled, not carried).

    A recurrent policy's rollout also keeps ``start`` (obs_t begins an episode: the carry was
    zeroed before reading it) and ``core``, the carry after reading obs_t [T, N, ...], from
    which the value of ``final_obs`` is computed (`jaxppo.networks.next_value`).

    Attributes:
        obs: observations acted on, as the networks saw them, [T, N, *obs].
        raw_obs: the same observations before normalization, [T, N, *obs]; None unless
            normalize_obs.
        final_obs: next observations before any reset, as the networks see them,
            [T, N, *obs].
        action: sampled actions, [T, N] (discrete) or [T, N, D] (continuous, unclipped).
        action_mask: valid actions when acting, [T, N, K]; None unless action_masking.
        log_prob: log pi_old(action | obs), [T, N].
        value: V_old(obs) in return units, [T, N].
        reward: the env's reward, [T, N].
        terminated: the transition reached a terminal state, [T, N].
        truncated: the episode was cut by a time limit (not terminal), [T, N].
        episode_return: return of the episode so far, complete where terminated | truncated.
        episode_length: length of the episode so far, likewise.
        start: obs begins an episode, [T, N]; None without a recurrent core.
        core: the carry after reading obs, [T, N, ...]; None without a recurrent core.
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
    episode_return: jax.Array
    episode_length: jax.Array
    start: jax.Array | None = None
    core: Any = None

    @property
    def done(self) -> jax.Array:
        """An episode ended at this step."""
        return self.terminated | self.truncated


class EnvCarry(struct.PyTreeNode):
    """What the rollout scan carries: the current raw observations and env states of N envs
    and, for a recurrent policy, its carry and whether each current observation begins an
    episode (None without a recurrent core)."""

    obs: jax.Array
    env_state: Any
    core: Any = None
    start: jax.Array | None = None


def policy_step(carry: EnvCarry, key: jax.Array, config: Config, env, network,
                policy: policy_lib.Policy, noise: jax.Array | None = None
                ) -> tuple[EnvCarry, Transition]:
    """Act in every env once (with gSDE, under the noise matrices ``noise`` [N, L, D]).
    Returns the new carry and the transition of this step."""
    action_key, env_key = jax.random.split(key)
    obs = policy_lib.observe(config, policy.normalizers, carry.obs)
    mask = jax.vmap(env.action_mask)(carry.env_state) if config.action_masking else None
    core, action, log_prob, value = policy_lib.act(config, network, policy, obs, mask,
                                                   action_key, carry.core, carry.start, noise)
    env_keys = jax.random.split(env_key, carry.obs.shape[0])
    env_state, step = envs.step_batch(env, env_keys, carry.env_state, action)
    transition = Transition(
        obs=obs,
        raw_obs=carry.obs if config.normalize_obs else None,
        final_obs=policy_lib.observe(config, policy.normalizers, step.final_obs),
        action=action,
        action_mask=mask,
        log_prob=log_prob,
        value=value,
        reward=step.reward,
        terminated=step.terminated,
        truncated=step.truncated,
        episode_return=step.episode_return,
        episode_length=step.episode_length,
        start=carry.start,
        core=core,
    )
    start = None if carry.start is None else step.done
    return EnvCarry(step.obs, env_state, core, start), transition


def sde_every(config: Config) -> int:
    """Steps each gSDE noise matrix is held: gsde_sample_freq, or the whole rollout (0)."""
    return config.gsde_sample_freq or config.num_steps


def sde_noise_shape(config: Config, network) -> tuple[int, ...] | None:
    """[draws, N, L, D]: the standard normal gSDE noise matrices of one rollout, one per env
    and draw (ceil(T / gsde_sample_freq) draws, or 1); None without gSDE."""
    if not network.sde_size:
        return None
    return (-(-config.num_steps // sde_every(config)), config.num_envs, network.sde_size,
            network.action_size)


def rollout(config: Config, env, network, policy: policy_lib.Policy, carry: EnvCarry,
            key: jax.Array) -> tuple[EnvCarry, Transition]:
    """Run the policy for config.num_steps steps in N envs with auto-reset.

    Args:
        config: the run's config.
        env: a `jaxppo.envs` env.
        network: the `networks.ActorCritic` for the params.
        policy: params and the normalizer statistics, frozen for the whole rollout.
        carry: current raw observations [N, *obs] and env states of N envs (and a recurrent
            policy's carry and episode starts).
        key: PRNG key for actions and env steps.

    With gSDE, each env draws a standard normal noise matrix [L, D] at the start of the
    rollout and every ``gsde_sample_freq`` steps after (once, when it is 0), from a key split
    off ``key`` first; without it, the keys of the steps are those of ``split(key, T)``.

    Returns:
        The carry after T steps, and the `Transition` [T, N, ...].
    """
    step = functools.partial(policy_step, config=config, env=env, network=network,
                             policy=policy)
    if not network.sde_size:
        return jax.lax.scan(step, carry, jax.random.split(key, config.num_steps))
    noise_key, key = jax.random.split(key)
    noise = jax.random.normal(noise_key, sde_noise_shape(config, network), jnp.float32)

    def body(carry, inputs):
        step_key, t = inputs
        return step(carry, step_key, noise=noise[t // sde_every(config)])

    steps = jnp.arange(config.num_steps)
    return jax.lax.scan(body, carry, (jax.random.split(key, config.num_steps), steps))
