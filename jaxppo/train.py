"""The whole PPO run as pure functions: `init`, `step` (one update) and `train`.

``train(config, key) = init(config, key)`` then `run_updates`, a ``lax.scan`` of `step` over
``num_updates``: one XLA program, which ``jax.vmap`` turns into many seeds (over ``key``) and
many hyperparameter settings (over a config stacked by `jaxppo.stack_configs`). Nothing here
prints or writes; metrics are returned.

One update flows one way, each stage taking what the previous one produced:

    rollout.rollout     T x N steps of the policy -> Transition [T, N]
    _scaled_rewards     rewards for GAE (scale_rewards), the running discounted return
    update.advantages   GAE advantages and targets (return units)
    update.update       update_epochs x num_minibatches clipped steps -> params, UpdateInfo
    _merged, _metrics   the normalizers with this rollout merged in; Metrics

The normalizer statistics are frozen within an update (the policy acts, and the update
learns, with those it started with) and merged after it.

Every update checks its loss, gradient, new params and new normalizers for non-finite values
(`divergence_cause`). A run whose update went non-finite keeps the state from before that
update from then on; `TrainState.divergence` says what went first and `diverged_at` when, so
one diverging run of a vmapped sweep leaves the others bit for bit as they would have been.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxppo import backend, envs, networks, normalize, rollout, update
from jaxppo import config as config_lib
from jaxppo import policy as policy_lib
from jaxppo.config import Config


class TrainState(struct.PyTreeNode):
    """Everything a run carries between updates; arrays only.

    Attributes:
        params: actor-critic params.
        opt_state: optax state of `update.make_optimizer`.
        env_state: states of the N envs (with running episode statistics).
        obs: current observations [N, *obs] (the env's observation shape).
        key: PRNG key for the rest of the run.
        update_step: updates done so far (int32 scalar).
        normalizers: running statistics of observations, discounted returns and value
            targets; part of the policy (a saved policy normalizes exactly as in training).
        core: a recurrent policy's carry after the last observation it read, [N, ...];
            None without a recurrent core.
        start: whether each env's current observation begins an episode (the carry is
            zeroed before reading it), [N]; None without a recurrent core.
        divergence: 0 while the run is finite, else the index in `DIVERGENCE` of what went
            non-finite first (int32 scalar); the run's state is frozen from then on.
        diverged_at: the update (0-based) that went non-finite, -1 while none has.
    """

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update_step: jax.Array
    normalizers: normalize.Normalizers
    divergence: jax.Array
    diverged_at: jax.Array
    core: Any = None
    start: jax.Array | None = None


# What `TrainState.divergence` and `Metrics.divergence` index: the first non-finite quantity of
# an update, in the order they are computed.
DIVERGENCE = ("none", "non-finite loss", "non-finite gradient", "non-finite params",
              "non-finite normalizer")


class Metrics(update.UpdateInfo):
    """Scalars per update: [num_updates] from `train`, [S, num_updates] after a vmap over seeds.

    The fields of `update.UpdateInfo` (the losses, entropy, approx_kl, clip_fraction and
    grad_norm as means over the update's gradient steps, explained_variance, ent_coef,
    gradient_steps), and:

    Attributes:
        env_steps: environment steps done by the end of this update.
        episode_return: mean undiscounted return of the episodes that ended during this
            update's rollout; NaN in an update in which no episode ended (use nanmean).
        episode_length: mean length of those episodes; NaN likewise.
        episode_count: how many episodes ended during the rollout.
        learning_rate: the rate of every gradient step of this update
            (`update.learning_rate_at`).
        divergence: the run's `TrainState.divergence` after this update: 0 while finite;
            from the update that went non-finite on, what went first (`DIVERGENCE`), and the
            metrics are those of that update's attempt.
    """

    env_steps: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    episode_count: jax.Array
    learning_rate: jax.Array
    divergence: jax.Array


def validate(config: Config) -> Config:
    """Check every field (`jaxppo.config.validate`), then the config against its environment
    (`jaxppo.envs.check`, `jaxppo.envs.check_params`, `jaxppo.networks.check`); a `ValueError`
    names the bad field, its value and what is allowed.

    Runs in Python before tracing; returns the config, unchanged, so calls can be chained.
    """
    config_lib.validate(config)
    envs.check(config)
    envs.check_params(config)
    networks.check(config, envs.make(config.env_id))
    return config


def init(config: Config, key: jax.Array) -> TrainState:
    """Initial train state: fresh params and optimizer state, N freshly reset envs.

    The key is split per purpose (network init, env resets, the rest of the run).
    """
    validate(config)
    env = envs.make_for(config)
    net_key, env_key, run_key = jax.random.split(key, 3)
    params = networks.init(config, env, net_key)
    opt_state = update.make_optimizer(config).init(params)
    obs, env_state = jax.vmap(env.reset)(jax.random.split(env_key, config.num_envs))
    network = networks.make(config, env)
    recurrent = network.recurrent
    return TrainState(
        params=params,
        opt_state=opt_state,
        env_state=env_state,
        obs=obs,
        key=run_key,
        update_step=jnp.zeros((), jnp.int32),
        normalizers=normalize.Normalizers.create(env.observation_shape, config.num_envs),
        divergence=jnp.zeros((), jnp.int32),
        diverged_at=jnp.full((), -1, jnp.int32),
        core=networks.initial_carry(network, (config.num_envs,)),
        start=jnp.ones((config.num_envs,), jnp.bool_) if recurrent else None,
    )


def _metrics(config: Config, update_step: jax.Array, transitions: rollout.Transition,
             info: update.UpdateInfo, learning_rate: jax.Array, divergence: jax.Array
             ) -> Metrics:
    done = transitions.done
    count = done.sum()
    return Metrics(
        **dataclasses.asdict(info),
        env_steps=(update_step + 1) * config.batch_size,
        # 0 / 0 = NaN when no episode ended in this rollout (documented in Metrics).
        episode_return=jnp.where(done, transitions.episode_return, 0.0).sum() / count,
        episode_length=jnp.where(done, transitions.episode_length, 0).sum() / count,
        episode_count=count,
        learning_rate=jnp.asarray(learning_rate, jnp.float32),
        divergence=divergence,
    )


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.stack(leaves).all() if leaves else jnp.ones((), jnp.bool_)


def divergence_cause(info: update.UpdateInfo, params, normalizers: normalize.Normalizers
                     ) -> jax.Array:
    """The index in `DIVERGENCE` of the first non-finite quantity of an update (0: none), in
    the order they are computed: the loss, the gradient's norm, the new params, the new
    normalizer statistics (int32 scalar)."""
    finite = jnp.stack([jnp.isfinite(info.total_loss), jnp.isfinite(info.grad_norm),
                        _all_finite(params), _all_finite(normalizers)])
    return jnp.where(finite.all(), 0, jnp.argmin(finite) + 1).astype(jnp.int32)


def freeze_diverged(state: TrainState, new: TrainState, cause: jax.Array) -> TrainState:
    """``new``, or, for a run that is or goes non-finite, ``state`` frozen with the cause and
    update recorded (a select, so one run of a vmapped batch freezes alone)."""
    diverges = (state.divergence == 0) & (cause > 0)
    frozen = (state.divergence > 0) | diverges
    kept = jax.tree.map(lambda old, fresh: jnp.where(frozen, old, fresh), state, new)
    return kept.replace(
        update_step=new.update_step,
        divergence=jnp.where(diverges, cause, state.divergence),
        diverged_at=jnp.where(diverges, state.update_step, state.diverged_at))


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
    env = envs.make_for(config)
    network = networks.make(config, env)
    key, rollout_key, update_key = jax.random.split(state.key, 3)
    policy = policy_lib.Policy(state.params, state.normalizers)
    carry, transitions = rollout.rollout(
        config, env, network, policy,
        rollout.EnvCarry(state.obs, state.env_state, state.core, state.start),
        backend.rollout_key(rollout_key))
    reward, last_return, returns = _scaled_rewards(config, state.normalizers, transitions)
    data = update.UpdateData(transitions, reward, state.normalizers, state.core)
    advantage, target = update.advantages(config, network, policy, data, transitions.value)
    learning_rate = update.learning_rate_at(config, state.update_step)
    opt, info = update.update(
        config, network, update.make_optimizer(config),
        update.OptCarry(state.params, state.opt_state, jnp.zeros((), jnp.bool_)), data,
        update.make_batch(config, data, advantage, target), update_key,
        ent_coef=update.entropy_coefficient(config, state.update_step),
        learning_rate=learning_rate)
    new_state = TrainState(
        params=opt.params,
        opt_state=opt.opt_state,
        env_state=carry.env_state,
        obs=carry.obs,
        key=key,
        update_step=state.update_step + 1,
        normalizers=_merged(config, state.normalizers, transitions, (last_return, returns),
                            target),
        divergence=state.divergence,
        diverged_at=state.diverged_at,
        core=carry.core,
        start=carry.start,
    )
    new_state = freeze_diverged(state, new_state,
                         divergence_cause(info, new_state.params, new_state.normalizers))
    return new_state, _metrics(config, state.update_step, transitions, info, learning_rate,
                               new_state.divergence)


def step(config: Config, state: TrainState) -> tuple[TrainState, Metrics]:
    """One PPO update: rollout of T x N steps, GAE, update_epochs x num_minibatches steps.

    Pure and jittable; ``jax.jit(step)`` is the building block of chunked, checkpointed runs.
    Observation, action, log-prob and value of the rollout come from the params at the start
    of the update, so the first minibatch of the first epoch has ratio exactly 1.
    """
    validate(config)
    return _step(config, state)


def _scan_step(state: TrainState, index: jax.Array | None, config: Config,
               active: jax.Array | None) -> tuple[TrainState, Metrics]:
    if active is None:
        return _step(config, state)
    # Not batched under a vmap over runs, so the cond stays a real branch.
    return jax.lax.cond(index < active, functools.partial(_step, config), _skipped(config),
                        state)


def _skipped(config: Config):
    """An update that leaves the state as it is and returns zero metrics."""

    def skip(state: TrainState) -> tuple[TrainState, Metrics]:
        shapes = jax.eval_shape(functools.partial(_step, config), state)[1]
        return state, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), shapes)

    return skip


def run_updates(config: Config, state: TrainState, num_updates: int,
                active: jax.Array | None = None) -> tuple[TrainState, Metrics]:
    """``num_updates`` updates (`step`) scanned from ``state``: the loop of `train`, of the
    sweeps and of the runner's chunks.

    Args:
        config: the run's `Config`.
        state: the state to continue from.
        num_updates: the scan's length (static).
        active: None, or a traced count: updates at index >= ``active`` leave the state
            unchanged and give zero metrics, so that one compiled chunk of ``num_updates``
            also runs a run's last, shorter chunk.

    Returns:
        The state after the updates and the `Metrics`, each leaf [num_updates].
    """
    body = functools.partial(_scan_step, config=config, active=active)
    # The update index is needed only to compare with ``active``.
    indices = None if active is None else jnp.arange(num_updates)
    return jax.lax.scan(body, state, indices, length=num_updates)


def train(config: Config, key: jax.Array) -> tuple[TrainState, Metrics]:
    """A whole PPO run: `init`, then `step` scanned ``config.num_updates`` times.

    Args:
        config: the run's `Config` (dynamic leaves may be traced or, under vmap, batched).
        key: a PRNG key; the same key gives the same result, bit for bit, on one machine.

    Returns:
        The final `TrainState` and the `Metrics`, each leaf [num_updates].
    """
    return run_updates(config, init(config, key), config.num_updates)
