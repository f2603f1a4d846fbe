"""The whole PPO run as pure functions: `init`, `step` (one update) and `train`.

``train(config, key) = init(config, key)`` then ``lax.scan(step)`` over ``num_updates``: one
XLA program, which ``jax.vmap`` turns into many seeds (over ``key``) and many hyperparameter
settings (over a config stacked by `jaxppo.stack_configs`). Nothing here prints or writes;
metrics are returned.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxppo import config as config_lib
from jaxppo import envs, gae, losses, networks, normalize, prng, rollout, update
from jaxppo.config import Config


class TrainState(struct.PyTreeNode):
    """Everything a run carries between updates; arrays only.

    Attributes:
        params: actor-critic params.
        opt_state: optax state of `update.make_optimizer`.
        env_state: states of the N envs (with running episode statistics).
        obs: current observations [N, O].
        key: PRNG key for the rest of the run.
        update_step: updates done so far (int32 scalar).
        normalizers: running statistics of observations, discounted returns and value
            targets; part of the policy (a saved policy normalizes exactly as in training).
    """

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update_step: jax.Array
    normalizers: normalize.Normalizers


class Metrics(struct.PyTreeNode):
    """Scalars per update: [num_updates] from `train`, [S, num_updates] after a vmap over seeds.

    Attributes:
        env_steps: environment steps done by the end of this update.
        episode_return: mean undiscounted return of the episodes that ended during this
            update's rollout; NaN in an update in which no episode ended (use nanmean).
        episode_length: mean length of those episodes; NaN likewise.
        episode_count: how many episodes ended during the rollout.
        total_loss, policy_loss, value_loss, entropy, approx_kl, clip_fraction, grad_norm:
            means over the update's update_epochs x num_minibatches gradient steps
            (grad_norm before clipping).
        explained_variance: of the rollout values for the GAE targets, before the update.
        learning_rate: the rate of the update's first gradient step.
        ent_coef: the entropy coefficient of the update (see `update.entropy_coefficient`).
        gradient_steps: gradient steps taken (fewer than update_epochs x num_minibatches
            only when KL early stop fired).
    """

    env_steps: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    episode_count: jax.Array
    total_loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array
    explained_variance: jax.Array
    learning_rate: jax.Array
    ent_coef: jax.Array
    gradient_steps: jax.Array


def init(config: Config, key: jax.Array) -> TrainState:
    """Initial train state: fresh params and optimizer state, N freshly reset envs.

    The key is split per purpose (network init, env resets, the rest of the run).
    """
    config_lib.validate(config)
    env = envs.make(config.env_id)
    net_key, env_key, run_key = jax.random.split(key, 3)
    params = networks.init(config, env, net_key)
    opt_state = update.make_optimizer(config).init(params)
    obs, env_state = jax.vmap(env.reset)(jax.random.split(env_key, config.num_envs))
    return TrainState(
        params=params,
        opt_state=opt_state,
        env_state=env_state,
        obs=obs,
        key=run_key,
        update_step=jnp.zeros((), jnp.int32),
        normalizers=normalize.Normalizers.create(env.observation_size, config.num_envs),
    )


def _metrics(config: Config, state: TrainState, transitions: rollout.Transition,
             batch: update.Batch, info: update.UpdateInfo, ent_coef: jax.Array) -> Metrics:
    done = transitions.done
    count = done.sum()
    first_gradient_step = state.update_step * config.update_epochs * config.num_minibatches
    learning_rate = update.learning_rate_schedule(config)(first_gradient_step)
    return Metrics(
        env_steps=(state.update_step + 1) * config.batch_size,
        # 0 / 0 = NaN when no episode ended in this rollout (documented in Metrics).
        episode_return=jnp.where(done, transitions.episode_return, 0.0).sum() / count,
        episode_length=jnp.where(done, transitions.episode_length, 0).sum() / count,
        episode_count=count,
        total_loss=info.loss.total_loss,
        policy_loss=info.loss.policy_loss,
        value_loss=info.loss.value_loss,
        entropy=info.loss.entropy,
        approx_kl=info.loss.approx_kl,
        clip_fraction=info.loss.clip_fraction,
        grad_norm=info.loss.grad_norm,
        explained_variance=losses.explained_variance(batch.value, batch.target),
        learning_rate=jnp.asarray(learning_rate, jnp.float32),
        ent_coef=jnp.asarray(ent_coef, jnp.float32),
        gradient_steps=info.gradient_steps,
    )


def _scaled_rewards(config: Config, normalizers: normalize.Normalizers,
                    transitions: rollout.Transition
                    ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Rewards for GAE (scaled by the frozen return std when scale_rewards is on), the
    running discounted return after the rollout [N] and its value at every step [T, N]
    (with scale_rewards off: the rewards as they are, the running return unchanged, None)."""
    if not config.scale_rewards:
        # Nothing reads the running return without reward scaling: leave it where it is.
        return transitions.reward, normalizers.discounted_return, None
    last, returns = normalize.discounted_returns(
        normalizers.discounted_return, transitions.reward, transitions.done, config.gamma
    )
    return normalize.scale_rewards(normalizers.reward, transitions.reward), last, returns


def _merged(config: Config, normalizers: normalize.Normalizers, transitions: rollout.Transition,
            discounted: tuple[jax.Array, jax.Array], targets: jax.Array) -> normalize.Normalizers:
    """Statistics after the update: what this rollout saw merged in (per enabled switch)."""
    last, returns = discounted
    new = normalizers.replace(discounted_return=last)
    if config.normalize_obs:
        new = new.replace(obs=normalize.merge(normalizers.obs, transitions.raw_obs))
    if config.scale_rewards:
        new = new.replace(reward=normalize.merge(normalizers.reward, returns))
    if config.normalize_values:
        new = new.replace(value=normalize.merge(normalizers.value, targets))
    return new


def _step(config: Config, state: TrainState) -> tuple[TrainState, Metrics]:
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    optimizer = update.make_optimizer(config)
    key, rollout_key, update_key = jax.random.split(state.key, 3)
    # The rollout draws on jaxppo's unrolled threefry: the same numbers in fewer kernels
    # (prng.fast; 1.1x at 1 seed). The shuffle keeps JAX's: it ran slower on the unrolled one.
    rollout_key = prng.fast(rollout_key)

    policy = rollout.Policy(state.params, state.normalizers)
    carry, transitions = rollout.rollout(
        config, env, network, policy, rollout.EnvCarry(state.obs, state.env_state), rollout_key
    )
    reward, last_return, returns = _scaled_rewards(config, state.normalizers, transitions)
    advantages, targets = gae.batched_gae(
        reward, transitions.value, transitions.next_value, transitions.terminated,
        transitions.truncated, config.gamma, config.gae_lambda,
    )
    data = update.UpdateData(transitions, reward, state.normalizers)
    batch = update.make_batch(config, data, advantages, targets)
    ent_coef = update.entropy_coefficient(config, state.update_step)
    opt, info = update.update(
        config.replace(ent_coef=ent_coef), network, optimizer,
        update.OptCarry(state.params, state.opt_state, jnp.zeros((), jnp.bool_)), data, batch,
        update_key,
    )
    new_state = TrainState(
        params=opt.params,
        opt_state=opt.opt_state,
        env_state=carry.env_state,
        obs=carry.obs,
        key=key,
        update_step=state.update_step + 1,
        normalizers=_merged(config, state.normalizers, transitions, (last_return, returns),
                            targets),
    )
    return new_state, _metrics(config, state, transitions, batch, info, ent_coef)


def step(config: Config, state: TrainState) -> tuple[TrainState, Metrics]:
    """One PPO update: rollout of T x N steps, GAE, update_epochs x num_minibatches steps.

    Pure and jittable; ``jax.jit(step)`` is the building block of chunked, checkpointed runs.
    Observation, action, log-prob and value of the rollout come from the params at the start
    of the update, so the first minibatch of the first epoch has ratio exactly 1.
    """
    config_lib.validate(config)
    return _step(config, state)


def _scan_step(state: TrainState, _, config: Config) -> tuple[TrainState, Metrics]:
    return _step(config, state)


def train(config: Config, key: jax.Array) -> tuple[TrainState, Metrics]:
    """A whole PPO run: `init`, then `step` scanned ``config.num_updates`` times.

    Args:
        config: the run's `Config` (dynamic leaves may be traced or, under vmap, batched).
        key: a PRNG key; the same key gives the same result, bit for bit, on one machine.

    Returns:
        The final `TrainState` and the `Metrics`, each leaf [num_updates].
    """
    state = init(config, key)
    body = functools.partial(_scan_step, config=config)
    return jax.lax.scan(body, state, None, length=config.num_updates)
