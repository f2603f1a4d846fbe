"""The PPO update: the optimizer, the loss over a minibatch, epochs of shuffled minibatches."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxppo import losses
from jaxppo.config import Config


class Batch(struct.PyTreeNode):
    """Flat training data, every field [B, ...] (or [M, B / M, ...] once split)."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


class LossInfo(struct.PyTreeNode):
    """Per-minibatch loss terms and diagnostics (averaged over an update by `update`)."""

    total_loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array


class OptCarry(struct.PyTreeNode):
    """Params and optimizer state, carried through the minibatch scan."""

    params: Any
    opt_state: Any


def learning_rate_schedule(config: Config) -> optax.Schedule:
    """Learning rate per gradient step: constant, or linear from learning_rate to 0.

    The initial value is the config's (possibly traced) leaf, so vmapping over learning rates
    neither recompiles nor closes over a Python float.
    """
    if config.anneal_lr:
        return optax.linear_schedule(config.learning_rate, 0.0, config.num_gradient_steps)
    return lambda count: config.learning_rate


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """clip_by_global_norm(max_grad_norm), then Adam(eps=adam_eps) at the scheduled rate.

    One optimizer over actor and critic params (Huang et al. 2022, details 4 and 11).
    """
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(learning_rate_schedule(config), eps=config.adam_eps),
    )


def loss(params, network, config: Config, batch: Batch) -> tuple[jax.Array, LossInfo]:
    """policy_loss + vf_coef * value_loss - ent_coef * entropy on one minibatch."""
    dist, value = network.apply(params, batch.obs)
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
    total = pg_loss + config.vf_coef * v_loss - config.ent_coef * entropy
    info = LossInfo(
        total_loss=total,
        policy_loss=pg_loss,
        value_loss=v_loss,
        entropy=entropy,
        approx_kl=pg_info.approx_kl,
        clip_fraction=pg_info.clip_fraction,
        grad_norm=jnp.zeros(()),
    )
    return total, info


def _minibatch_step(carry: OptCarry, minibatch: Batch, network, config: Config, optimizer):
    grads, info = jax.grad(loss, has_aux=True)(carry.params, network, config, minibatch)
    updates, opt_state = optimizer.update(grads, carry.opt_state, carry.params)
    params = optax.apply_updates(carry.params, updates)
    return OptCarry(params, opt_state), info.replace(grad_norm=optax.tree.norm(grads))


def shuffle_minibatches(batch: Batch, key: jax.Array, num_minibatches: int) -> Batch:
    """A random permutation of the B transitions, split into [M, B / M, ...]."""
    size = batch.obs.shape[0]
    permutation = jax.random.permutation(key, size)

    def split(x):
        return jnp.take(x, permutation, axis=0).reshape(num_minibatches, -1, *x.shape[1:])

    return jax.tree.map(split, batch)


def _epoch(carry: OptCarry, key: jax.Array, batch: Batch, network, config: Config, optimizer):
    minibatches = shuffle_minibatches(batch, key, config.num_minibatches)
    step = functools.partial(_minibatch_step, network=network, config=config, optimizer=optimizer)
    return jax.lax.scan(step, carry, minibatches)


def update(config: Config, network, optimizer, carry: OptCarry, batch: Batch, key: jax.Array
           ) -> tuple[OptCarry, LossInfo]:
    """update_epochs passes over ``batch``, each a fresh permutation cut into minibatches.

    Returns:
        The new params and optimizer state, and the loss info averaged over all
        update_epochs x num_minibatches gradient steps.
    """
    epoch = functools.partial(
        _epoch, batch=batch, network=network, config=config, optimizer=optimizer
    )
    carry, info = jax.lax.scan(epoch, carry, jax.random.split(key, config.update_epochs))
    return carry, jax.tree.map(jnp.mean, info)
