"""The PPO update: advantages, the training batch, the optimizer, the loss over a minibatch,
epochs of shuffled minibatches.

One update flows one way: `advantages` (GAE over the rollout, the final observations' values
from one batched critic pass) -> `make_batch` (in the critic's units) -> `update`'s epochs,
each a fresh shuffle cut into minibatches, each minibatch one `minibatch_step`. With
recompute_advantages every epoch after the first rebuilds its batch by the same two functions
(`training_batch`) from the latest critic.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from jaxppo import gae, losses, networks, normalize, prng, rollout
from jaxppo import policy as policy_lib
from jaxppo.config import Config


class Batch(struct.PyTreeNode):
    """Training data, [T, N, ...] as built, [M, B / M, ...] once cut into minibatches.

    ``value`` and ``target`` are in the critic's units: normalized by the frozen value
    statistics when normalize_values is on, return units otherwise.

    A recurrent policy's batch stays [T, N, ...] when cut ([M, T, N / M, ...]: whole env
    sequences) and also holds ``start`` (episode starts, like ``obs``) and ``core``, the
    carry each env's sequence starts from ([N, ...], [M, N / M, ...] when cut). Both are None
    without a recurrent core.
    """

    obs: jax.Array
    action: jax.Array
    action_mask: jax.Array | None  # [..., K] with action_masking, else None
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array
    start: jax.Array | None = None
    core: Any = None


class UpdateData(struct.PyTreeNode):
    """What an update learns from: the rollout, its (scaled) rewards, the frozen statistics
    and, for a recurrent policy, the carry the rollout started from ([N, ...]; else None)."""

    transitions: rollout.Transition
    reward: jax.Array
    normalizers: normalize.Normalizers
    core: Any = None


class LossInfo(struct.PyTreeNode):
    """One minibatch's loss terms and diagnostics (`loss`)."""

    total_loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array


class OptCarry(struct.PyTreeNode):
    """Params, optimizer state and the KL early-stop flag, carried through the epochs.

    Inside `update` the params are one flat vector (`jax.flatten_util.ravel_pytree`); they are
    a tree again when `update` returns them.
    """

    params: Any
    opt_state: Any
    stopped: jax.Array


class UpdateInfo(LossInfo):
    """What an update reports: `LossInfo`'s fields as means over the gradient steps taken, and

    Attributes:
        grad_norm: the gradient's global norm before clipping, mean over the steps taken.
        explained_variance: of the rollout's values for the first epoch's GAE targets.
        ent_coef: the entropy coefficient the update used.
        gradient_steps: gradient steps taken (fewer than update_epochs x num_minibatches only
            when KL early stop fired).
    """

    grad_norm: jax.Array
    explained_variance: jax.Array
    ent_coef: jax.Array
    gradient_steps: jax.Array


def learning_rate_at(config: Config, update_step: jax.Array) -> jax.Array:
    """The learning rate of every gradient step of update k (0-based) of U = num_updates:

        anneal_lr:  learning_rate * (1 - k / U)   (lr at update 0, lr / U at the last)
        otherwise:  learning_rate

    Keyed to the update, the run's progress, as CleanRL and SB3 do, and not to the optimizer's
    step count: KL early stop skips steps, and a count of steps taken would stall the anneal.
    The initial value is the config's (possibly traced) leaf, so vmapping over learning rates
    neither recompiles nor closes over a Python float.
    """
    rate = jnp.asarray(config.learning_rate, jnp.float32)
    if config.anneal_lr:
        fraction = jnp.asarray(update_step, jnp.float32) / config.num_updates
        return rate * (1.0 - fraction)
    return rate


def entropy_coefficient(config: Config, update_step: jax.Array) -> jax.Array:
    """The entropy coefficient of update k (0-based) of U = num_updates, with f = k / U:

        constant:     ent_coef
        linear:       ent_coef + (ent_coef_end - ent_coef) * f
        exponential:  ent_coef * (ent_coef_end / ent_coef) ** f
    """
    fraction = jnp.asarray(update_step, jnp.float32) / config.num_updates
    start, end = config.ent_coef, config.ent_coef_end
    if config.ent_schedule == "linear":
        return start + (end - start) * fraction
    if config.ent_schedule == "exponential":
        return start * (end / start) ** fraction
    return jnp.asarray(start, jnp.float32)


def clip_by_global_max_norm(max_norm: float | jax.Array) -> optax.GradientTransformation:
    """Scale the whole gradient so that its largest absolute entry is at most ``max_norm``
    (the infinity-norm version of global-norm clipping; PyTorch's norm_type=inf)."""

    def update_fn(updates, state, params=None):
        del params
        norm = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree.leaves(updates)]))
        scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
        return jax.tree.map(lambda g: g * scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Gradient clipping (global L2 norm, or global max-norm), then Adam's direction
    (``optax.scale_by_adam``, eps=adam_eps); `minibatch_step` takes the step of the update's
    `learning_rate_at` along it. One optimizer over actor and critic (Huang et al. 2022, details
    4, 11).

    It works on one flat vector of all the params (``optax.flatten``), so Adam's moments are
    flat vectors too. `update` keeps the params flat through its epochs: the norm is one
    reduction and Adam one elementwise pass, instead of a kernel per leaf.
    """
    if config.grad_norm_type == "max":
        clip = clip_by_global_max_norm(config.max_grad_norm)
    else:
        clip = optax.clip_by_global_norm(config.max_grad_norm)
    return optax.flatten(optax.chain(clip, optax.scale_by_adam(eps=config.adam_eps)))


def apply_step(params, direction, learning_rate: jax.Array):
    """params - learning_rate * direction, leaf by leaf (Adam's step along its direction)."""
    return jax.tree.map(lambda p, d: p - learning_rate * d, params, direction)


def loss(params, network, config: Config, batch: Batch, ent_coef: jax.Array | None = None
         ) -> tuple[jax.Array, LossInfo]:
    """policy_loss + vf_coef * value_loss - ent_coef * entropy on one minibatch.

    ``ent_coef`` is the update's entropy coefficient (`entropy_coefficient`, which follows the
    run's schedule); None means the config's own ``ent_coef``.
    """
    if ent_coef is None:
        ent_coef = config.ent_coef
    # A recurrent policy replays each minibatch's sequences from the carries the rollout
    # started them with; otherwise this is one batched apply.
    dist, value = networks.sequence(network, params, config, batch.core, batch.obs,
                                    batch.start, batch.action_mask)
    advantage = batch.advantage
    if config.normalize_advantages:
        advantage = losses.normalize_advantages(advantage)
    pg_loss, pg_info = losses.policy_loss(
        dist.log_prob(batch.action),
        batch.log_prob,
        advantage,
        config.clip_eps,
        config.dual_clip_c if config.dual_clip else None,
    )
    v_loss = losses.value_loss(
        value, batch.value, batch.target, config.vf_clip if config.clip_value_loss else None
    )
    entropy = dist.entropy().mean()
    total = pg_loss + config.vf_coef * v_loss - ent_coef * entropy
    info = LossInfo(
        total_loss=total,
        policy_loss=pg_loss,
        value_loss=v_loss,
        entropy=entropy,
        approx_kl=pg_info.approx_kl,
        clip_fraction=pg_info.clip_fraction,
    )
    return total, info


def advantages(config: Config, network, policy: policy_lib.Policy, data: UpdateData,
               value: jax.Array, core=None) -> tuple[jax.Array, jax.Array]:
    """GAE advantages and value targets [T, N] (return units) of the rollout in ``data``.

    ``value`` [T, N] is V(obs) in return units: the rollout's own values for the first epoch,
    the latest critic's with recompute_advantages. V(final_obs) comes from ``policy``'s
    critic, one batched pass over [T, N] (a bigger matmul than T small ones in the rollout);
    a recurrent critic reads each final observation from ``core`` [T, N, ...], its carry
    after obs_t (default: the rollout's own, ``transitions.core``).
    """
    tr = data.transitions
    if core is None:
        core = tr.core
    next_value = policy_lib.critic_value(config, network, policy, tr.final_obs, core)
    return gae.batched_gae(data.reward, value, next_value, tr.terminated, tr.truncated,
                           config.gamma, config.gae_lambda)


def make_batch(config: Config, data: UpdateData, advantage: jax.Array, target: jax.Array
               ) -> Batch:
    """Training data from the rollout and its GAE advantages and targets (return units)."""
    tr = data.transitions
    old_value = tr.value
    if config.normalize_values:
        old_value = normalize.normalize(data.normalizers.value, old_value)
        target = normalize.normalize(data.normalizers.value, target)
    return Batch(obs=tr.obs, action=tr.action, action_mask=tr.action_mask,
                 log_prob=tr.log_prob, value=old_value, advantage=advantage, target=target,
                 start=tr.start, core=data.core)


def training_batch(config: Config, network, params, data: UpdateData) -> Batch:
    """With recompute_advantages: the batch of an epoch after the first, from ``params``'
    critic (the latest at the start of the epoch) on the rollout's observations."""
    policy = policy_lib.Policy(params, data.normalizers)
    tr = data.transitions
    value, core = networks.critic_sequence(network, params, config, data.core, tr.obs, tr.start)
    value = policy_lib.in_return_units(config, policy, value)
    return make_batch(config, data, *advantages(config, network, policy, data, value, core))


def _flat_loss(flat_params, unravel, network, config: Config, batch: Batch,
               ent_coef: jax.Array):
    return loss(unravel(flat_params), network, config, batch, ent_coef)


def minibatch_step(carry: OptCarry, minibatch: Batch, unravel, network, config: Config,
                   optimizer, ent_coef: jax.Array, learning_rate: jax.Array):
    """One gradient step of ``learning_rate`` on a minibatch, or none once KL early stop has
    fired.

    Returns:
        The new carry, and (the minibatch's `LossInfo`, the gradient's norm, whether the step
        was taken).
    """
    grads, info = jax.grad(_flat_loss, has_aux=True)(carry.params, unravel, network, config,
                                                     minibatch, ent_coef)
    direction, opt_state = optimizer.update(grads, carry.opt_state)
    params = apply_step(carry.params, direction, learning_rate)
    # KL early stop: approx_kl is measured before this step; once over target_kl, this step
    # and every later one of the update are skipped (a select, so it runs inside jit / vmap).
    # Without the switch nothing can stop, so the select over params and Adam state (a full
    # extra pass over them per step) is left out.
    stop = carry.stopped
    if config.kl_early_stop:
        stop = stop | (info.approx_kl > config.target_kl)
        new = OptCarry(params, opt_state, stop)
        old = carry.replace(stopped=stop)
        carry = jax.tree.map(lambda o, n: jnp.where(stop, o, n), old, new)
    else:
        carry = OptCarry(params, opt_state, stop)
    return carry, (info, optax.tree.norm(grads), ~stop)


def shuffle_minibatches(batch: Batch, key: jax.Array, config: Config) -> Batch:
    """Cut a [T, N, ...] batch into [M, B / M, ...] minibatches of a random order.

    shuffle="transitions": a permutation of all T x N transitions.
    shuffle="trajectories": a permutation of the N envs, each minibatch holding N / M whole
    trajectories, time order kept inside each.
    A recurrent batch (with ``start`` and ``core``) is cut like "trajectories" but keeps its
    time axis, [M, T, N / M, ...], and its carries go with their sequences, [M, N / M, ...].
    """
    steps, envs_ = batch.obs.shape[:2]
    m = config.num_minibatches
    if batch.core is not None or batch.start is not None:
        # Recurrent: [M, T, N / M, ...] whole sequences, with the carries they start from.
        order = prng.permutation(key, envs_)

        def split_sequences(x):
            x = jnp.take(x, order, axis=1).reshape(steps, m, envs_ // m, *x.shape[2:])
            return jnp.swapaxes(x, 0, 1)

        def split_carry(x):
            return jnp.take(x, order, axis=0).reshape(m, envs_ // m, *x.shape[1:])

        return jax.tree.map(split_sequences, batch.replace(core=None)).replace(
            core=jax.tree.map(split_carry, batch.core))
    if config.shuffle == "trajectories":
        order = prng.permutation(key, envs_)

        def split(x):
            x = jnp.take(x, order, axis=1).reshape(steps, m, envs_ // m, *x.shape[2:])
            return jnp.swapaxes(x, 0, 1).reshape(m, steps * (envs_ // m), *x.shape[3:])

        return jax.tree.map(split, batch)
    order = prng.permutation(key, steps * envs_)

    def split_flat(x):
        x = x.reshape(steps * envs_, *x.shape[2:])
        return jnp.take(x, order, axis=0).reshape(m, -1, *x.shape[1:])

    return jax.tree.map(split_flat, batch)


def _epoch(carry: OptCarry, inputs, batch: Batch, data: UpdateData, unravel, network,
           config: Config, optimizer, ent_coef: jax.Array, learning_rate: jax.Array):
    key, first = inputs
    if config.recompute_advantages:
        # The first epoch's critic is the rollout's: its batch is already at hand.
        batch = jax.lax.cond(first, lambda: batch,
                             lambda: training_batch(config, network, unravel(carry.params), data))
    minibatches = shuffle_minibatches(batch, key, config)
    step = functools.partial(minibatch_step, unravel=unravel, network=network, config=config,
                             optimizer=optimizer, ent_coef=ent_coef,
                             learning_rate=learning_rate)
    return jax.lax.scan(step, carry, minibatches)


def update(config: Config, network, optimizer, carry: OptCarry, data: UpdateData,
           batch: Batch, key: jax.Array, *, ent_coef: jax.Array | None = None,
           learning_rate: jax.Array | None = None) -> tuple[OptCarry, UpdateInfo]:
    """update_epochs passes over ``batch`` [T, N] (`make_batch` of the rollout), each a fresh
    permutation cut into minibatches; with recompute_advantages every epoch after the first
    rebuilds the batch from the latest critic (`training_batch`).

    ``ent_coef`` is the update's entropy coefficient (`entropy_coefficient`) and
    ``learning_rate`` its step size (`learning_rate_at`); None means the config's own value.
    ``carry.params`` is a param tree; the epochs run on it as one flat
    vector, so
    ``optimizer`` and ``carry.opt_state`` must be for that vector: `make_optimizer`'s, whose
    ``optax.flatten`` makes its state the same for the tree and for the vector.

    Returns:
        The new params and optimizer state, and the `UpdateInfo`: the loss info averaged over
        the gradient steps taken (all update_epochs x num_minibatches of them unless KL early
        stop fired).
    """
    if ent_coef is None:
        ent_coef = config.ent_coef
    if learning_rate is None:
        learning_rate = config.learning_rate
    flat, unravel = ravel_pytree(carry.params)
    epoch = functools.partial(_epoch, batch=batch, data=data, unravel=unravel, network=network,
                              config=config, optimizer=optimizer, ent_coef=ent_coef,
                              learning_rate=learning_rate)
    keys = jax.random.split(key, config.update_epochs)
    first = jnp.arange(config.update_epochs) == 0
    carry, (info, grad_norm, taken) = jax.lax.scan(epoch, carry.replace(params=flat),
                                                   (keys, first))
    carry = carry.replace(params=unravel(carry.params))
    count = taken.sum()
    weights = taken / jnp.maximum(count, 1)
    mean = functools.partial(_weighted_sum, weights=weights)
    return carry, UpdateInfo(
        **dataclasses.asdict(jax.tree.map(mean, info)),
        grad_norm=mean(grad_norm),
        explained_variance=losses.explained_variance(batch.value, batch.target),
        ent_coef=jnp.asarray(ent_coef, jnp.float32),
        gradient_steps=count,
    )


def _weighted_sum(x: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.sum(x * weights)
