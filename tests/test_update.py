"""The PPO update piece by piece, on hand-made minibatches with known ratios and values.

A minibatch's old log-probs are the current policy's minus log r, so each sample's ratio is the
r chosen here; old values and targets are set around the critic's V the same way. Every switch
of the loss, the KL early stop, the gradient-norm metric, the averaging over steps taken, the
per-epoch GAE recompute, the value normalization of the batch and both shuffles are
pinned by numbers.
"""

import dataclasses
import functools
import importlib
import types

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jaxppo
from jaxppo import envs, gae, losses, networks, normalize, rollout, update
from jaxppo import policy as policy_lib

train_lib = importlib.import_module("jaxppo.train")  # the module; jaxppo.train is the function

# CartPole (4 observations, 2 actions), 8 hidden units. Loss-level tests switch advantage
# normalization and value clipping off unless they are what is tested, so that every term
# is a closed-form number.
CONFIG = jaxppo.Config(num_envs=4, num_steps=4, total_timesteps=4 * 4 * 2, update_epochs=2,
                       num_minibatches=2, hidden_sizes=(8,))
PLAIN = CONFIG.replace(normalize_advantages=False, clip_value_loss=False)


@pytest.fixture(scope="module")
def net():
    env = envs.make(CONFIG.env_id)
    return networks.make(CONFIG, env), networks.init(CONFIG, env, jax.random.key(0))


def _minibatch(net, ratio, advantage, old_value_shift=0.0, target_shift=0.0, key=1):
    """A Batch shaped like ``ratio`` ([B] or [T, N]) whose ratio under the
    current params is ``ratio``, old value V + old_value_shift and target V + target_shift."""
    network, params = net
    ratio = jnp.asarray(ratio, jnp.float32)
    obs_key, action_key = jax.random.split(jax.random.key(key))
    obs = jax.random.normal(obs_key, (*ratio.shape, 4))
    action = jax.random.randint(action_key, ratio.shape, 0, 2)
    dist, value = networks.apply(network, params, CONFIG, obs)
    return update.Batch(obs=obs, action=action, action_mask=None,
                        log_prob=dist.log_prob(action) - jnp.log(ratio),
                        value=value + old_value_shift,
                        advantage=jnp.broadcast_to(jnp.asarray(advantage, jnp.float32),
                                                   ratio.shape),
                        target=value + target_shift)


# --- The loss and its switches --------------------------------------------------------------

def test_advantages_used_as_given_with_normalization_off(net):
    # Ratio 1, A = 2 everywhere: the surrogate is -mean(1 * 2) = -2 (normalized A would be 0).
    _, info = update.loss(net[1], net[0], PLAIN, _minibatch(net, jnp.ones(8), 2.0))
    np.testing.assert_allclose(info.policy_loss, -2.0, rtol=1e-6)
    np.testing.assert_allclose(info.approx_kl, 0.0, atol=1e-7)


def test_advantages_are_normalized_within_the_minibatch(net):
    config = PLAIN.replace(normalize_advantages=True)
    advantage = jnp.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.0, 2.0, -0.5])
    ratio = jnp.array([1.1, 0.9, 1.0, 1.3, 0.8, 1.05, 1.0, 0.95])
    batch = _minibatch(net, ratio, advantage)
    _, info = update.loss(net[1], net[0], config, batch)
    # The minibatch's own mean and std: shifting every advantage by +100 changes nothing.
    _, shifted = update.loss(net[1], net[0], config, batch.replace(advantage=advantage + 100.0))
    np.testing.assert_allclose(shifted.policy_loss, info.policy_loss, rtol=1e-5, atol=1e-6)
    expected, _ = losses.policy_loss(jnp.log(ratio), jnp.zeros(8),
                                     losses.normalize_advantages(advantage), config.clip_eps)
    np.testing.assert_allclose(info.policy_loss, expected, rtol=1e-5, atol=1e-6)
    # And make_batch leaves advantages as GAE gave them (normalizing is the loss's job).
    data = update.UpdateData(_transitions(net), jnp.zeros((4, 4)), _normalizers())
    built = update.make_batch(config, data, jnp.full((4, 4), 7.0), jnp.zeros((4, 4)))
    np.testing.assert_array_equal(built.advantage, jnp.full((4, 4), 7.0))


def test_dual_clip_floors_the_objective_at_c_times_a(net):
    # log r = 3, A = -1: L_clip = min(e^3 * -1, 1.2 * -1) = -e^3 = -20.0855; the dual clip
    # floors it at c * A = 3 * -1 = -3, so the loss is 3 on, e^3 off.
    batch = _minibatch(net, jnp.full(8, np.e**3), -1.0)
    _, on = update.loss(net[1], net[0], PLAIN.replace(dual_clip=True, dual_clip_c=3.0), batch)
    _, off = update.loss(net[1], net[0], PLAIN, batch)
    np.testing.assert_allclose(on.policy_loss, 3.0, rtol=1e-5)
    np.testing.assert_allclose(off.policy_loss, np.e**3, rtol=1e-5)


def test_value_loss_unclipped_when_the_switch_is_off(net):
    # V_old = V + 1, R = V - 1. Off: 0.5 * mean((V - R)^2) = 0.5 * 1 = 0.5.
    # On (vf_clip 0.2): V_clip = V_old + clip(-1, -0.2, 0.2) = V + 0.8, (V_clip - R)^2 = 1.8^2
    # = 3.24 > 1, so 0.5 * 3.24 = 1.62.
    batch = _minibatch(net, jnp.ones(8), 0.0, old_value_shift=1.0, target_shift=-1.0)
    _, off = update.loss(net[1], net[0], PLAIN, batch)
    _, on = update.loss(net[1], net[0], PLAIN.replace(clip_value_loss=True), batch)
    np.testing.assert_allclose(off.value_loss, 0.5, rtol=1e-5)
    np.testing.assert_allclose(on.value_loss, 1.62, rtol=1e-5)


def test_value_clip_range_is_vf_clip_not_clip_eps(net):
    # As above with vf_clip 0.5: V_clip = V + 1 - 0.5, (V + 0.5 - (V - 1))^2 = 1.5^2 = 2.25,
    # so 0.5 * 2.25 = 1.125 (with clip_eps 0.2 as the range it would be 1.62).
    config = PLAIN.replace(clip_value_loss=True, vf_clip=0.5, clip_eps=0.2)
    batch = _minibatch(net, jnp.ones(8), 0.0, old_value_shift=1.0, target_shift=-1.0)
    _, info = update.loss(net[1], net[0], config, batch)
    np.testing.assert_allclose(info.value_loss, 1.125, rtol=1e-5)
    _, value = networks.apply(net[0], net[1], config, batch.obs)
    np.testing.assert_allclose(info.value_loss,
                               losses.value_loss(value, batch.value, batch.target, 0.5),
                               rtol=1e-6)


def test_total_loss_weights_the_value_loss_by_vf_coef(net):
    # value loss 0.5 (V - R = 1 everywhere), policy loss -2 (ratio 1, A = 2):
    # total = -2 + 2.0 * 0.5 - 0.01 * H.
    config = PLAIN.replace(vf_coef=2.0, ent_coef=0.01)
    batch = _minibatch(net, jnp.ones(8), 2.0, target_shift=-1.0)
    total, info = update.loss(net[1], net[0], config, batch)
    np.testing.assert_allclose(info.value_loss, 0.5, rtol=1e-5)
    np.testing.assert_allclose(total, -2.0 + 2.0 * 0.5 - 0.01 * info.entropy, rtol=1e-5)
    np.testing.assert_allclose(info.total_loss, total, rtol=1e-7)


def test_entropy_bonus_is_the_mean_entropy_over_the_minibatch(net):
    # B = 8 samples, ratio 1, A = 2, V = R, and the update's ent_coef 0.5 (not the config's
    # 0.01): total = -2 + 0 - 0.5 * mean(H), each H at most ln 2 = 0.693 (two actions); a sum
    # over the minibatch would be 8 times the mean.
    batch = _minibatch(net, jnp.ones(8), 2.0)
    total, info = update.loss(net[1], net[0], PLAIN, batch, jnp.float32(0.5))
    dist, _ = networks.apply(net[0], net[1], PLAIN, batch.obs)
    per_sample = np.asarray(dist.entropy(), np.float64)
    assert per_sample.shape == (8,) and np.ptp(per_sample) > 0
    assert per_sample.max() <= np.log(2)
    np.testing.assert_allclose(info.entropy, per_sample.mean(), rtol=1e-5)
    np.testing.assert_allclose(total, -2.0 - 0.5 * per_sample.mean(), rtol=1e-5)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # ent_coef 0.04 -> 0.01 over U = 4 updates (8 x 16 env steps, 16 per update), f = k / 4.
        ("constant", [0.04, 0.04, 0.04, 0.04]),
        ("linear", [0.04, 0.0325, 0.025, 0.0175]),  # 0.04 + (0.01 - 0.04) * f
        ("exponential", [0.04, 0.04 * 0.25**0.25, 0.02, 0.04 * 0.25**0.75]),  # 0.04 * 0.25^f
    ],
)
def test_entropy_coefficient_of_each_update(schedule, expected):
    config = CONFIG.replace(total_timesteps=64, ent_schedule=schedule, ent_coef=0.04,
                            ent_coef_end=0.01)
    assert config.num_updates == 4
    got = [update.entropy_coefficient(config, k) for k in range(4)]
    assert all(g.dtype == jnp.float32 for g in got)
    np.testing.assert_allclose(np.float64(got), expected, rtol=1e-6)


# --- One minibatch step: KL early stop and the gradient-norm metric -------------------------

@functools.partial(jax.jit, static_argnums=0)
def _jitted_step(network, config, params, batch, stopped):
    flat, unravel = ravel_pytree(params)
    optimizer = update.make_optimizer(config)
    carry = update.OptCarry(flat, optimizer.init(flat), stopped)
    out, (info, grad_norm, taken) = update.minibatch_step(carry, batch, unravel, network,
                                                          config, optimizer, config.ent_coef,
                                                          config.learning_rate)
    return carry, out, {**dataclasses.asdict(info), "grad_norm": grad_norm}, taken


def _step(net, config, batch, stopped):
    """`minibatch_step` on flat params with a fresh Adam state (config traced: one compile
    per static fields); returns (carry in, carry out, info, taken)."""
    carry, out, info, taken = _jitted_step(net[0], config, net[1], batch, jnp.array(stopped))
    return carry, out, types.SimpleNamespace(**info), taken


# Ratios (2, 0.5, 1.1, 1): approx_kl = mean((r - 1) - log r)
#   = ((1 - ln 2) + (-0.5 + ln 2) + (0.1 - ln 1.1) + 0) / 4 = (0.6 - 0.0953102) / 4 = 0.1261725.
KL_RATIOS = [2.0, 0.5, 1.1, 1.0]
KL = (0.6 - np.log(1.1)) / 4


def test_kl_early_stop_compares_this_steps_kl_with_target_kl(net):
    batch = _minibatch(net, KL_RATIOS, [1.0, -1.0, 0.5, 2.0])
    config = PLAIN.replace(kl_early_stop=True, learning_rate=1e-2)
    # 0.12617 > target_kl 0.1: this very step is skipped and the update stops.
    carry, out, info, taken = _step(net, config.replace(target_kl=0.1), batch, False)
    np.testing.assert_allclose(info.approx_kl, KL, rtol=1e-5)
    assert not bool(taken) and bool(out.stopped)
    chex.assert_trees_all_equal(out.params, carry.params)
    chex.assert_trees_all_equal(out.opt_state, carry.opt_state)
    # 0.12617 <= target_kl 0.13: taken.
    carry, out, _, taken = _step(net, config.replace(target_kl=0.13), batch, False)
    assert bool(taken) and not bool(out.stopped)
    assert not np.allclose(out.params, carry.params)


def test_kl_early_stop_is_sticky(net):
    # Ratio 1 (approx_kl 0 <= target_kl), but the update already stopped: nothing moves.
    config = PLAIN.replace(kl_early_stop=True, target_kl=0.02, learning_rate=1e-2)
    batch = _minibatch(net, jnp.ones(8), [1.0, -1.0] * 4)
    carry, out, info, taken = _step(net, config, batch, True)
    np.testing.assert_allclose(info.approx_kl, 0.0, atol=1e-7)
    assert not bool(taken) and bool(out.stopped)
    chex.assert_trees_all_equal(out.params, carry.params)
    chex.assert_trees_all_equal(out.opt_state, carry.opt_state)
    # The same step on a carry that has not stopped is taken (the params do move).
    carry, out, _, taken = _step(net, config, batch, False)
    assert bool(taken) and not bool(out.stopped)
    assert not np.allclose(out.params, carry.params)


def test_kl_early_stop_takes_a_step_whose_kl_equals_target_kl(net):
    # Stop when approx_kl > target_kl, strictly: at target_kl equal to this program's own
    # float32 approx_kl the step is taken; one float32 below it, skipped.
    batch = _minibatch(net, KL_RATIOS, [1.0, -1.0, 0.5, 2.0])
    config = PLAIN.replace(kl_early_stop=True, learning_rate=1e-2)
    _, _, info, _ = _step(net, config.replace(target_kl=0.1), batch, False)
    kl = np.float32(info.approx_kl)
    np.testing.assert_allclose(kl, KL, rtol=1e-5)
    _, out, _, taken = _step(net, config.replace(target_kl=float(kl)), batch, False)
    assert bool(taken) and not bool(out.stopped)
    below = float(np.nextafter(kl, np.float32(0.0)))
    _, out, _, taken = _step(net, config.replace(target_kl=below), batch, False)
    assert not bool(taken) and bool(out.stopped)


def test_grad_norm_is_the_raw_gradients_norm(net):
    # max_grad_norm 1e-3: the clipped gradient (and Adam's step) is far smaller than the raw.
    config = PLAIN.replace(max_grad_norm=1e-3)
    batch = _minibatch(net, KL_RATIOS * 2, [1.0, -1.0, 0.5, 2.0, -0.3, 0.0, 1.5, -2.0],
                       target_shift=-1.0)
    grads, _ = jax.grad(update.loss, has_aux=True)(net[1], net[0], config, batch)
    raw = optax.tree.norm(grads)
    _, _, info, _ = _step(net, config, batch, False)
    assert float(raw) > 100 * 1e-3
    np.testing.assert_allclose(info.grad_norm, raw, rtol=1e-5)


def test_bfloat16_matmuls_keep_float32_params_moved_by_adams_small_steps(net):
    # matmul_dtype="bfloat16" rounds the matmuls' operands only: the params stay float32
    # and move by Adam's first step, lr * g / (|g| + eps), at most lr = 1e-4 per entry.
    # Rounding them to bfloat16 (8 significant bits) would move a weight near 0.3 by up to
    # half its spacing 2^-2 x 2^-7 = 2^-9, ~1e-3, or not at all.
    config = PLAIN.replace(matmul_dtype="bfloat16", learning_rate=1e-4)
    network = networks.make(config, envs.make(config.env_id))
    batch = _minibatch(net, KL_RATIOS * 2, [1.0, -1.0, 0.5, 2.0, -0.3, 0.0, 1.5, -2.0],
                       target_shift=-1.0)
    carry, out, _, taken = _jitted_step(network, config, net[1], batch, jnp.array(False))
    assert bool(taken) and out.params.dtype == jnp.float32
    delta = np.abs(np.float64(out.params) - np.float64(carry.params))
    assert 0.0 < delta.max() <= 1.1e-4
    assert np.median(delta) > 0.5e-4  # most entries take (nearly) the full step lr
    after = np.float64(out.params)
    bf16 = np.float64(np.float32(after).astype(ml_dtypes.bfloat16))
    assert np.mean(after != bf16) > 0.5  # float32 values, most not representable in bfloat16


# --- A whole update: the mean over the steps taken ------------------------------------------

@pytest.mark.layout
def test_update_info_averages_only_the_steps_taken(net):
    """KL early stop after the first step: the update's info is that step's alone."""
    # The first minibatch has ratio 1 (approx_kl ~0 <= 1e-6); after a step at lr 0.1 the next
    # minibatch's approx_kl is far above 1e-6, so 1 of 2 x 2 steps is taken.
    config = CONFIG.replace(kl_early_stop=True, target_kl=1e-6, learning_rate=0.1)
    ratio = jnp.ones((4, 4))
    batch = _minibatch(net, ratio, jax.random.normal(jax.random.key(7), (4, 4)),
                       target_shift=0.5)
    data = update.UpdateData(_transitions(net), jnp.zeros((4, 4)), _normalizers())
    optimizer = update.make_optimizer(config)
    carry = update.OptCarry(net[1], optimizer.init(net[1]), jnp.array(False))
    key = jax.random.key(3)
    _, info = update.update(config, net[0], optimizer, carry, data, batch, key)
    assert int(info.gradient_steps) == 1
    assert float(info.clip_fraction) == 0.0
    assert float(info.approx_kl) <= 1e-6
    # The first minibatch of the first epoch, by hand.
    first = jax.tree.map(lambda x: x[0],
                         update.shuffle_minibatches(batch, jax.random.split(key, 2)[0], config))
    grads, expected = jax.grad(update.loss, has_aux=True)(net[1], net[0], config, first)
    for name in ("total_loss", "policy_loss", "value_loss", "entropy", "approx_kl",
                 "clip_fraction"):
        np.testing.assert_allclose(getattr(info, name), getattr(expected, name), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    np.testing.assert_allclose(info.grad_norm, optax.tree.norm(grads), rtol=1e-5)


def _update(config, net, batch, key=3, learning_rate=None):
    """`update.update` from ``net``'s params and a fresh Adam state; (carry out, info)."""
    data = update.UpdateData(_transitions(net), jnp.zeros((4, 4)), _normalizers())
    optimizer = update.make_optimizer(config)
    carry = update.OptCarry(net[1], optimizer.init(net[1]), jnp.array(False))
    return update.update(config, net[0], optimizer, carry, data, batch, jax.random.key(key),
                         learning_rate=learning_rate)


def test_update_info_is_the_mean_over_several_steps_taken(net):
    # Learning rate 0, so every step sees the same params: 2 epochs x 2 minibatches of 8, each
    # epoch a partition of the 16 transitions. Ratio 1 and A_i = i (no normalization): a
    # step's policy loss is -mean(A) over its minibatch and the mean over the 4 steps
    # -mean(0..15) = -7.5 (a sum: -30). V - R = 1 or 2, half each: a step's value loss is
    # 0.5 * mean((V - R)^2) over its samples, the mean over the steps 0.5 * 2.5 = 1.25.
    advantage = jnp.arange(16.0).reshape(4, 4)
    shift = jnp.tile(jnp.float32([-1.0, -2.0]), (4, 2))
    batch = _minibatch(net, jnp.ones((4, 4)), advantage, target_shift=shift)
    config = PLAIN.replace(ent_coef=0.01)
    out, info = _update(config, net, batch, learning_rate=jnp.float32(0.0))
    assert int(info.gradient_steps) == 4
    chex.assert_trees_all_equal(out.params, net[1])  # the rate given, not the config's
    np.testing.assert_allclose(info.policy_loss, -7.5, rtol=1e-5)
    np.testing.assert_allclose(info.value_loss, 1.25, rtol=1e-5)
    # The steps' own values differ (else any one of them would pass for the mean).
    keys = jax.random.split(jax.random.key(3), 2)
    steps = [jax.tree.map(lambda x, m=m: x[m], update.shuffle_minibatches(batch, k, config))
             for k in keys for m in range(2)]
    per_step = [jax.grad(update.loss, has_aux=True)(net[1], net[0], config, mb) for mb in steps]
    policy_losses = [float(i.policy_loss) for _, i in per_step]
    assert np.ptp(policy_losses) > 0.1
    # Entropy, KL and clip fraction are means of the same kind; grad_norm the mean of the
    # four gradients' norms, and total = -7.5 + 0.5 * 1.25 - 0.01 * entropy.
    dist, _ = networks.apply(net[0], net[1], config, batch.obs)
    np.testing.assert_allclose(info.entropy, np.mean(np.float64(dist.entropy())), rtol=1e-5)
    np.testing.assert_allclose(info.approx_kl, 0.0, atol=1e-6)
    assert float(info.clip_fraction) == 0.0
    np.testing.assert_allclose(info.grad_norm,
                               np.mean([float(optax.tree.norm(g)) for g, _ in per_step]),
                               rtol=1e-5)
    np.testing.assert_allclose(info.total_loss, -7.5 + 0.5 * 1.25 - 0.01 * info.entropy,
                               rtol=1e-5)
    assert info.ent_coef.dtype == jnp.float32 and float(info.ent_coef) == np.float32(0.01)


def test_update_info_is_zero_not_nan_when_no_step_is_taken(net):
    # The first minibatch's approx_kl is already over target_kl, and the stop is sticky:
    # 0 steps taken, so the means over them are 0 / max(0, 1) = 0 and the params stay.
    config = PLAIN.replace(kl_early_stop=True, target_kl=1e-3, learning_rate=1e-2)
    batch = _minibatch(net, jnp.tile(jnp.float32(KL_RATIOS), (4, 1)) ** 2, 1.0)
    out, info = _update(config, net, batch)
    assert int(info.gradient_steps) == 0
    for name in ("total_loss", "policy_loss", "value_loss", "entropy", "approx_kl",
                 "clip_fraction", "grad_norm"):
        assert float(getattr(info, name)) == 0.0, name
    chex.assert_trees_all_equal(out.params, net[1])


def _update_by_hand(config, net, data, batch, key, recompute_first):
    """`update.update`'s epochs as a Python loop over `minibatch_step`; the batch of every
    epoch after the first (and of the first with ``recompute_first``) is `training_batch`
    from the params at the epoch's start. Returns the final params."""
    network, params = net
    optimizer = update.make_optimizer(config)
    flat, unravel = ravel_pytree(params)
    carry = update.OptCarry(flat, optimizer.init(flat), jnp.array(False))
    step = jax.jit(functools.partial(update.minibatch_step, unravel=unravel, network=network,
                                     config=config, optimizer=optimizer,
                                     ent_coef=config.ent_coef,
                                     learning_rate=config.learning_rate))
    for epoch, epoch_key in enumerate(jax.random.split(key, config.update_epochs)):
        if epoch > 0 or recompute_first:
            batch = update.training_batch(config, network, unravel(carry.params), data)
        minibatches = update.shuffle_minibatches(batch, epoch_key, config)
        for m in range(config.num_minibatches):
            carry, _ = step(carry, jax.tree.map(lambda x, m=m: x[m], minibatches))
    return unravel(carry.params)


def test_update_recomputes_advantages_after_the_first_epoch_only(net):
    # The rollout's batch has GAE from its own stored values (random here), so it differs
    # from what the critic gives: the first epoch must train on it, the second on the batch
    # recomputed from the critic after the first.
    network, params = net
    config = CONFIG.replace(recompute_advantages=True, learning_rate=1e-2)
    tr = _transitions(net)
    data = update.UpdateData(tr, tr.reward, _normalizers())
    policy = policy_lib.Policy(params, data.normalizers)
    batch = update.make_batch(config, data,
                              *update.advantages(config, network, policy, data, tr.value))
    from_critic = update.training_batch(config, network, params, data)
    assert not np.allclose(batch.advantage, from_critic.advantage, atol=1e-2)
    optimizer = update.make_optimizer(config)
    carry = update.OptCarry(params, optimizer.init(params), jnp.array(False))
    key = jax.random.key(4)
    out, info = update.update(config, network, optimizer, carry, data, batch, key)
    assert int(info.gradient_steps) == 4
    expected = _update_by_hand(config, net, data, batch, key, recompute_first=False)
    chex.assert_trees_all_close(out.params, expected, rtol=1e-5, atol=1e-6)
    # Recomputing in the first epoch too would end elsewhere: the check above can fail.
    every = _update_by_hand(config, net, data, batch, key, recompute_first=True)
    gap = np.abs(ravel_pytree(every)[0] - ravel_pytree(expected)[0]).max()
    assert gap > 1e-4, gap


# --- Building the batch: per-epoch GAE, normalized values -----------------------------------

def _normalizers(value_mean=0.0, value_var=1.0):
    stats = normalize.Normalizers.create(4, 4)
    return stats.replace(value=normalize.RunningStats(jnp.float32(value_mean),
                                                      jnp.float32(value_var), jnp.float32(10)))


def _transitions(net, key=11, obs_size=4):
    """A hand-made rollout [T=4, N=4] with random rewards, one termination, one truncation."""
    keys = jax.random.split(jax.random.key(key), 4)
    obs = jax.random.normal(keys[0], (4, 4, obs_size))
    final_obs = jax.random.normal(keys[1], (4, 4, obs_size))
    zeros = jnp.zeros((4, 4))
    terminated = zeros.astype(bool).at[1, 0].set(True)
    truncated = zeros.astype(bool).at[2, 3].set(True)
    return rollout.Transition(
        obs=obs, raw_obs=None, final_obs=final_obs, action=zeros.astype(jnp.int32),
        action_mask=None, log_prob=zeros, value=jax.random.normal(keys[2], (4, 4)),
        reward=jax.random.normal(keys[3], (4, 4)), terminated=terminated, truncated=truncated,
        episode_return=zeros, episode_length=zeros.astype(jnp.int32))


def test_training_batch_recomputes_gae_from_the_scaled_rewards(net):
    network, params = net
    tr = _transitions(net)
    data = update.UpdateData(tr, tr.reward / 3.0, _normalizers())
    got = update.training_batch(CONFIG, network, params, data)
    value = networks.value(network, params, CONFIG, tr.obs)
    next_value = networks.value(network, params, CONFIG, tr.final_obs)
    adv, target = gae.batched_gae(tr.reward / 3.0, value, next_value, tr.terminated,
                                  tr.truncated, CONFIG.gamma, CONFIG.gae_lambda)
    np.testing.assert_allclose(got.advantage, adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.target, target, rtol=1e-5, atol=1e-6)
    unscaled, _ = gae.batched_gae(tr.reward, value, next_value, tr.terminated, tr.truncated,
                                  CONFIG.gamma, CONFIG.gae_lambda)
    assert not np.allclose(got.advantage, unscaled, atol=1e-3)


def test_recurrent_advantages_continue_from_the_carries_given():
    """A recurrent critic reads V(final_obs_t) from the carry after obs_t: the rollout's own
    (transitions.core) by default, the caller's when given (an epoch's recompute passes the
    latest critic's)."""
    config = jaxppo.Config(env_id="ProbeMemory-v0", core="gru", core_size=8,
                           hidden_sizes=(16,), shuffle="trajectories", num_envs=4,
                           num_steps=4, num_minibatches=2, total_timesteps=32)
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    params = networks.init(config, env, jax.random.key(0))
    carry = networks.initial_carry(network, (4,))
    own, other = (jax.tree.map(lambda x, k=k: jax.random.normal(k, (4, *x.shape)), carry)
                  for k in jax.random.split(jax.random.key(1)))
    tr = _transitions(None, obs_size=2).replace(start=jnp.zeros((4, 4), bool), core=own)
    data = update.UpdateData(tr, tr.reward, _normalizers(), carry)
    policy = policy_lib.Policy(params, data.normalizers)

    def by_hand(core):
        next_value = policy_lib.critic_value(config, network, policy, tr.final_obs, core)
        return gae.batched_gae(tr.reward, tr.value, next_value, tr.terminated, tr.truncated,
                               config.gamma, config.gae_lambda)

    default = update.advantages(config, network, policy, data, tr.value)
    chex.assert_trees_all_close(default, by_hand(own), rtol=1e-5, atol=1e-6)
    given = update.advantages(config, network, policy, data, tr.value, other)
    chex.assert_trees_all_close(given, by_hand(other), rtol=1e-5, atol=1e-6)
    assert not np.allclose(given[0], default[0], atol=1e-3)


def test_make_batch_normalizes_old_values_and_targets(net):
    # Value statistics mean 5, var 4: x -> (x - 5) / sqrt(4 + 1e-8) = (x - 5) / 2.
    tr = _transitions(net).replace(value=jnp.tile(jnp.array([7.0, 3.0, 5.0, 9.0]), (4, 1)))
    data = update.UpdateData(tr, tr.reward, _normalizers(5.0, 4.0))
    target = jnp.tile(jnp.array([1.0, 5.0, 11.0, -3.0]), (4, 1))
    advantage = jnp.ones((4, 4))
    on = update.make_batch(CONFIG.replace(normalize_values=True), data, advantage, target)
    np.testing.assert_allclose(on.value, jnp.tile(jnp.array([1.0, -1.0, 0.0, 2.0]), (4, 1)),
                               rtol=1e-6)
    np.testing.assert_allclose(on.target, jnp.tile(jnp.array([-2.0, 0.0, 3.0, -4.0]), (4, 1)),
                               rtol=1e-6)
    off = update.make_batch(CONFIG, data, advantage, target)
    np.testing.assert_array_equal(off.value, tr.value)
    np.testing.assert_array_equal(off.target, target)


# --- The shuffles ---------------------------------------------------------------------------

def _index_batch(steps, envs_):
    """A batch whose obs hold (t, n) so shuffles can be traced back."""
    t, n = np.meshgrid(np.arange(steps), np.arange(envs_), indexing="ij")
    obs = jnp.asarray(np.stack([t, n], -1), jnp.float32)
    zeros = jnp.zeros((steps, envs_))
    return update.Batch(obs=obs, action=zeros.astype(jnp.int32),
                        action_mask=jnp.ones((steps, envs_, 2), bool), log_prob=zeros,
                        value=zeros, advantage=zeros, target=zeros)


def test_transition_shuffle_is_a_permutation():
    config = CONFIG.replace(num_minibatches=4)
    out = update.shuffle_minibatches(_index_batch(16, 4), jax.random.key(0), config)
    assert out.obs.shape == (4, 16, 2)
    pairs = {tuple(p) for p in np.asarray(out.obs).reshape(-1, 2).astype(int)}
    assert len(pairs) == 64
    other = update.shuffle_minibatches(_index_batch(16, 4), jax.random.key(1), config)
    assert not np.array_equal(out.obs, other.obs)


def test_trajectory_shuffle_keeps_whole_trajectories_in_time_order():
    config = CONFIG.replace(num_minibatches=2, shuffle="trajectories")
    out = np.asarray(update.shuffle_minibatches(_index_batch(16, 4), jax.random.key(0),
                                                config).obs).astype(int)
    assert out.shape == (2, 32, 2)
    pairs = {tuple(p) for p in out.reshape(-1, 2)}
    assert len(pairs) == 64  # a permutation of the batch
    for minibatch in out:
        envs_in = sorted(set(minibatch[:, 1]))
        assert len(envs_in) == 2  # N / M = 2 whole trajectories
        for n in envs_in:
            times = minibatch[minibatch[:, 1] == n, 0]
            np.testing.assert_array_equal(times, np.arange(16))


def test_trajectory_shuffle_permutes_the_envs():
    config = CONFIG.replace(shuffle="trajectories", num_minibatches=2)
    batch = _index_batch(4, 4)
    shuffle = jax.jit(functools.partial(update.shuffle_minibatches, config=config))
    orders, first_envs = set(), set()
    for k in range(20):
        envs_ = np.asarray(shuffle(batch, jax.random.key(k)).obs[..., 1]).astype(int)
        orders.add(tuple(envs_[:, 0]) + tuple(envs_[:, -1]))
        first_envs |= set(envs_[0])
    assert len(orders) > 1  # different keys, different env orders
    assert first_envs == {0, 1, 2, 3}  # every env reaches the first minibatch


def test_recurrent_shuffle_keeps_whole_sequences_with_their_carries():
    # With start and core set the batch [T=3, N=4] is cut into [M=2, T, N / M = 2, ...]
    # sequences whatever config.shuffle says: obs hold (t, n), and env n's carries (a pair,
    # as an actor-critic GRU keeps, width 5) hold n and -n.
    config = CONFIG.replace(num_minibatches=2, shuffle="transitions")
    env_ids = jnp.tile(jnp.arange(4.0)[:, None], (1, 5))
    batch = _index_batch(3, 4).replace(start=jnp.zeros((3, 4), bool).at[0, 1].set(True),
                                       core=(env_ids, -env_ids))
    orders = set()
    for k in range(6):
        out = update.shuffle_minibatches(batch, jax.random.key(k), config)
        chex.assert_shape([out.obs, out.action_mask], (2, 3, 2, 2))
        chex.assert_shape([out.action, out.start, out.advantage], (2, 3, 2))
        chex.assert_shape(list(out.core), (2, 2, 5))
        obs = np.asarray(out.obs).astype(int)
        envs_ = obs[:, 0, :, 1]  # [M, N / M]: the env of each sequence
        assert sorted(envs_.ravel().tolist()) == [0, 1, 2, 3]
        orders.add(tuple(envs_.ravel().tolist()))
        # Each sequence is one env in time order, its start flags and carries its own.
        np.testing.assert_array_equal(obs[..., 1], np.broadcast_to(envs_[:, None], (2, 3, 2)))
        np.testing.assert_array_equal(obs[..., 0],
                                      np.broadcast_to(np.arange(3)[:, None], (2, 3, 2)))
        np.testing.assert_array_equal(out.start, (obs[..., 1] == 1) & (obs[..., 0] == 0))
        np.testing.assert_array_equal(out.core[0], np.repeat(envs_[..., None], 5, axis=-1))
        np.testing.assert_array_equal(out.core[1], -np.repeat(envs_[..., None], 5, axis=-1))
    assert len(orders) > 1  # the envs are permuted, differently per key


@pytest.mark.parametrize("shuffle", ["transitions", "trajectories"])
def test_shuffle_keeps_every_field_of_a_transition_together(shuffle):
    # Every leaf carries its transition's flat index t * N + n (the mask on each of its K
    # entries, obs on each of its O): after the shuffle each row of each leaf holds its obs
    # row's index, so advantages and targets stay with their obs, actions and log-probs.
    config = CONFIG.replace(shuffle=shuffle, num_minibatches=2)
    index = jnp.arange(4 * 4, dtype=jnp.float32).reshape(4, 4)
    batch = update.Batch(obs=jnp.repeat(index[..., None], 4, axis=-1),
                         action=index.astype(jnp.int32),
                         action_mask=jnp.repeat(index[..., None], 2, axis=-1),
                         log_prob=index, value=index, advantage=index, target=index)
    shuffled = jax.jit(functools.partial(update.shuffle_minibatches, config=config))(
        batch, jax.random.key(5))
    rows = np.asarray(shuffled.obs[..., 0])
    chex.assert_shape(rows, (2, 8))
    # A permutation of the 16 transitions, and not the identity (else nothing is tested).
    assert sorted(rows.ravel().tolist()) == list(range(16))
    assert not np.array_equal(rows.ravel(), np.arange(16))
    for name in ("obs", "action_mask"):
        np.testing.assert_array_equal(getattr(shuffled, name),
                                      np.broadcast_to(rows[..., None], getattr(shuffled, name)
                                                      .shape), err_msg=name)
    for name in ("action", "log_prob", "value", "advantage", "target"):
        np.testing.assert_array_equal(getattr(shuffled, name), rows, err_msg=name)


# --- The explained-variance metric ----------------------------------------------------------

def test_explained_variance_metric_is_of_the_values_for_the_targets(net):
    # V = (1, 2, 3, 4), R = (0, 2, 4, 6): Var(R) = 5, R - V = (-1, 0, 1, 2), Var = 1.25,
    # EV = 1 - 1.25 / 5 = 0.75 (swapped: 1 - 1.25 / Var(V) = 1 - 1.25 / 1.25 = 0).
    batch = _minibatch(net, jnp.ones((2, 2)), 1.0).replace(
        value=jnp.array([[1.0, 2.0], [3.0, 4.0]]), target=jnp.array([[0.0, 2.0], [4.0, 6.0]]))
    data = update.UpdateData(_transitions(net), jnp.zeros((4, 4)), _normalizers())
    optimizer = update.make_optimizer(CONFIG)
    carry = update.OptCarry(net[1], optimizer.init(net[1]), jnp.array(False))
    _, info = update.update(CONFIG, net[0], optimizer, carry, data, batch, jax.random.key(0))
    np.testing.assert_allclose(info.explained_variance, 0.75, rtol=1e-6)
