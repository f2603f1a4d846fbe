"""The update-side implementation details: each switch does what it says, inside jit.

Normalizer statistics are checked against numpy over everything the rollouts saw, recomputed
here by replaying each update's rollout with the same key the step uses.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxppo
from jaxppo import envs, gae, networks, normalize, rollout, update
from jaxppo import policy as policy_lib

TINY = jaxppo.Config(
    num_envs=4, num_steps=16, total_timesteps=4 * 16 * 4, update_epochs=2, num_minibatches=2
)


@functools.partial(jax.jit, static_argnums=0)
def _step_and_rollout(config, state):
    """The step, plus the rollout it makes (same key split as `jaxppo.step`)."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    _, rollout_key, _ = jax.random.split(state.key, 3)
    _, transitions = rollout.rollout(
        config, env, network, policy_lib.Policy(state.params, state.normalizers),
        rollout.EnvCarry(state.obs, state.env_state), rollout_key,
    )
    new_state, metrics = jaxppo.step(config, state)
    return new_state, metrics, transitions


def _run(config, updates=3):
    state = jaxppo.init(config, jax.random.key(0))
    seen = []
    for _ in range(updates):
        before = state
        state, metrics, transitions = _step_and_rollout(config, state)
        seen.append((before, transitions, metrics))
    return state, seen


@pytest.fixture(scope="module")
def normalized_run():
    config = TINY.replace(normalize_obs=True, scale_rewards=True, normalize_values=True)
    return config, _run(config)


@pytest.mark.layout
def test_observation_statistics_equal_numpy_over_everything_seen(normalized_run):
    config, (state, seen) = normalized_run
    raw = np.concatenate([np.asarray(t.raw_obs).reshape(-1, 4) for _, t, _ in seen])
    assert raw.shape == (3 * 16 * 4, 4)
    stats = state.normalizers.obs
    np.testing.assert_allclose(stats.mean, raw.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.var, raw.var(axis=0), rtol=1e-4, atol=1e-6)
    assert float(stats.count) == raw.shape[0]


def test_statistics_are_frozen_within_an_update(normalized_run):
    """Every observation of update k was normalized with the statistics from before it."""
    config, (_, seen) = normalized_run
    for before, transitions, _ in seen:
        expected = normalize.normalize(before.normalizers.obs, transitions.raw_obs,
                                       config.obs_clip)
        chex.assert_trees_all_close(transitions.obs, expected, rtol=1e-6)
    first = seen[0][1]
    # Fresh statistics (mean 0, var 1) make the first update's normalization the identity.
    np.testing.assert_allclose(first.obs, first.raw_obs, rtol=1e-6)


def _discounted_reference(rewards, dones, gamma, start):
    """Plain loop: R_t = gamma * R_{t-1} + r_t, reset to 0 after a step that ended."""
    running = np.array(start, np.float64)
    out = np.zeros_like(rewards, np.float64)
    for t in range(rewards.shape[0]):
        running = gamma * running + rewards[t]
        out[t] = running
        running = np.where(dones[t], 0.0, running)
    return out, running


@pytest.mark.layout
def test_reward_scaling_uses_the_running_return_std(normalized_run):
    config, (state, seen) = normalized_run
    carry = np.zeros(4)
    all_returns = []
    for before, transitions, _ in seen:
        returns, carry = _discounted_reference(np.asarray(transitions.reward),
                                               np.asarray(transitions.done), 0.99, carry)
        all_returns.append(returns)
        # The rewards GAE saw in this update: r / sqrt(var(R seen before it) + 1e-8).
        scaled = normalize.scale_rewards(before.normalizers.reward, transitions.reward)
        if not all_returns[:-1]:
            np.testing.assert_allclose(scaled, transitions.reward, rtol=1e-6)
        else:
            var = np.concatenate([r.ravel() for r in all_returns[:-1]]).var()
            np.testing.assert_allclose(scaled, transitions.reward / np.sqrt(var + 1e-8),
                                       rtol=1e-4)
    everything = np.concatenate([r.ravel() for r in all_returns])
    np.testing.assert_allclose(state.normalizers.reward.var, everything.var(), rtol=1e-4)
    np.testing.assert_allclose(state.normalizers.discounted_return, carry, rtol=1e-5)


@pytest.mark.layout
def test_value_targets_are_normalized_and_values_denormalized(normalized_run):
    config, (state, seen) = normalized_run
    targets = []
    for before, tr, _ in seen:
        reward = normalize.scale_rewards(before.normalizers.reward, tr.reward)
        network = networks.make(config, envs.make(config.env_id))
        policy = policy_lib.Policy(before.params, before.normalizers)
        next_value = policy_lib.critic_value(config, network, policy, tr.final_obs)
        _, target = gae.batched_gae(reward, tr.value, next_value, tr.terminated,
                                    tr.truncated, config.gamma, config.gae_lambda)
        targets.append(np.asarray(target).ravel())
        # The rollout's values are the critic's outputs mapped back to return units.
        raw = networks.value(network, before.params, config, tr.obs)
        np.testing.assert_allclose(
            tr.value, normalize.denormalize(before.normalizers.value, raw), rtol=1e-5, atol=1e-6
        )
    everything = np.concatenate(targets)
    np.testing.assert_allclose(state.normalizers.value.mean, everything.mean(), rtol=1e-4)
    np.testing.assert_allclose(state.normalizers.value.var, everything.var(), rtol=1e-4)


def test_final_obs_value_is_denormalized_with_the_value_statistics():
    """With normalize_values on and value statistics mean 5, var 4 (not the identity), the
    values of the pre-reset next observations are in return units like the values: 5 + 2 V."""
    config = TINY.replace(normalize_values=True, num_steps=32)
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    state = jaxppo.init(config, jax.random.key(1))
    stats = normalize.RunningStats(jnp.float32(5.0), jnp.float32(4.0), jnp.float32(50.0))
    policy = policy_lib.Policy(state.params, state.normalizers.replace(value=stats))
    _, tr = jax.jit(rollout.rollout, static_argnums=(0, 1, 2))(
        config, env, network, policy, rollout.EnvCarry(state.obs, state.env_state),
        jax.random.key(2))
    raw = np.float64(networks.value(network, state.params, config, tr.final_obs))
    next_value = policy_lib.critic_value(config, network, policy, tr.final_obs)
    # std = sqrt(4 + 1e-8) = 2 in float32.
    np.testing.assert_allclose(next_value, 2.0 * raw + 5.0, rtol=1e-5, atol=1e-5)
    assert np.abs(raw).max() < 2.0  # so the raw critic is far from the denormalized one
    done = np.asarray(tr.done[:-1])
    assert done.any() and (~done).any()
    np.testing.assert_allclose(np.asarray(next_value[:-1])[~done],
                               np.asarray(tr.value[1:])[~done], rtol=1e-5, atol=1e-5)


def test_switches_off_leave_statistics_fresh():
    config = TINY
    state, _ = _run(config, updates=1)
    fresh = normalize.Normalizers.create(4, 4)
    chex.assert_trees_all_equal(state.normalizers.obs, fresh.obs)
    chex.assert_trees_all_equal(state.normalizers.reward, fresh.reward)
    chex.assert_trees_all_equal(state.normalizers.value, fresh.value)


def _update_inputs(config):
    """A rollout and its first-epoch batch, for exercising update pieces directly."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    state = jaxppo.init(config, jax.random.key(1))
    policy = policy_lib.Policy(state.params, state.normalizers)
    _, tr = rollout.rollout(config, env, network, policy,
                            rollout.EnvCarry(state.obs, state.env_state), jax.random.key(2))
    data = update.UpdateData(tr, tr.reward, state.normalizers)
    adv, target = update.advantages(config, network, policy, data, tr.value)
    return network, state, data, update.make_batch(config, data, adv, target)


@pytest.mark.layout
def test_recompute_advantages_uses_the_critic_after_the_previous_epoch():
    config = TINY.replace(recompute_advantages=True, learning_rate=1e-2)
    network, state, data, batch = _update_inputs(config)
    optimizer = update.make_optimizer(config)
    # Inside an update the params are one flat vector.
    flat, unravel = ravel_pytree(state.params)
    carry = update.OptCarry(flat, optimizer.init(flat), jnp.array(False))
    epoch = functools.partial(update._epoch, batch=batch, data=data, unravel=unravel,
                              network=network, config=config, optimizer=optimizer,
                              ent_coef=config.ent_coef, learning_rate=config.learning_rate)
    key1, key2 = jax.random.split(jax.random.key(3))
    after_1, _ = epoch(carry, (key1, jnp.array(True)))
    # Epoch 2's data: GAE recomputed by hand from the critic after epoch 1.
    tr = data.transitions
    values = network.apply(unravel(after_1.params), tr.obs, method="value")
    next_values = network.apply(unravel(after_1.params), tr.final_obs, method="value")
    adv, target = gae.batched_gae(tr.reward, values, next_values, tr.terminated,
                                  tr.truncated, config.gamma, config.gae_lambda)
    recomputed = update.training_batch(config, network, unravel(after_1.params), data)
    np.testing.assert_allclose(recomputed.advantage, adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(recomputed.target, target, rtol=1e-5, atol=1e-6)
    assert not np.allclose(recomputed.advantage, batch.advantage, atol=1e-4)
    # And epoch 2 trains on exactly that batch.
    after_2, _ = epoch(after_1, (key2, jnp.array(False)))
    by_hand = update.shuffle_minibatches(recomputed, key2, config)
    step = functools.partial(update.minibatch_step, unravel=unravel, network=network,
                             config=config, optimizer=optimizer, ent_coef=config.ent_coef,
                             learning_rate=config.learning_rate)
    expected, _ = jax.lax.scan(step, after_1, by_hand)
    chex.assert_trees_all_close(after_2.params, expected.params, rtol=1e-5, atol=1e-7)


@pytest.mark.layout
def test_update_on_flat_params_equals_a_loop_over_param_trees():
    """`update` keeps the params one flat vector through its epochs (and Adam's moments are
    flat): the same as applying the optimizer to param trees minibatch by minibatch."""
    config = TINY.replace(learning_rate=1e-2)
    network, state, data, batch = _update_inputs(config)
    optimizer = update.make_optimizer(config)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    moments = [x for x in jax.tree.leaves(state.opt_state) if x.ndim]
    assert [x.shape for x in moments] == [(n_params,), (n_params,)]  # Adam's mu and nu
    key = jax.random.key(5)
    carry = update.OptCarry(state.params, state.opt_state, jnp.array(False))
    out, info = jax.jit(update.update, static_argnums=(0, 1, 2))(
        config, network, optimizer, carry, data, batch, key)
    chex.assert_trees_all_equal_shapes_and_dtypes(out.params, state.params)
    # The loop: the update's shuffles, each minibatch's gradient on the param tree.
    params, opt_state = state.params, state.opt_state
    for epoch_key in jax.random.split(key, config.update_epochs):
        minibatches = update.shuffle_minibatches(batch, epoch_key, config)
        for m in range(config.num_minibatches):
            minibatch = jax.tree.map(lambda x, m=m: x[m], minibatches)
            grads, _ = jax.grad(update.loss, has_aux=True)(params, network, config, minibatch)
            direction, opt_state = optimizer.update(grads, opt_state)
            params = update.apply_step(params, direction, config.learning_rate)
    chex.assert_trees_all_close(out.params, params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(out.opt_state, opt_state, rtol=1e-5, atol=1e-6)
    before, after = (p["params"]["actor"]["head"]["kernel"] for p in (state.params, out.params))
    assert not np.allclose(after, before)  # the update moved them
    assert int(info.gradient_steps) == config.update_epochs * config.num_minibatches


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # ent_coef 0.1 -> 0.001 over U = 4 updates, f = k / 4.
        ("constant", [0.1, 0.1, 0.1, 0.1]),
        ("linear", [0.1, 0.07525, 0.0505, 0.02575]),  # 0.1 - 0.099 * f
        ("exponential", [0.1, 0.1 * 0.01**0.25, 0.1 * 0.01**0.5, 0.1 * 0.01**0.75]),
    ],
)
def test_entropy_schedule_follows_its_formula(schedule, expected):
    config = TINY.replace(ent_schedule=schedule, ent_coef=0.1, ent_coef_end=0.001)
    got = [float(update.entropy_coefficient(config, k)) for k in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_entropy_schedule_reaches_the_loss_inside_jit():
    config = TINY.replace(ent_schedule="linear", ent_coef=0.1, ent_coef_end=0.001)
    _, metrics = jax.jit(jaxppo.train)(config, jax.random.key(0))
    np.testing.assert_allclose(metrics.ent_coef, [0.1, 0.07525, 0.0505, 0.02575], rtol=1e-5)
    # total = policy + 0.5 * value - ent_coef * entropy, per update means.
    np.testing.assert_allclose(
        metrics.total_loss,
        metrics.policy_loss + 0.5 * metrics.value_loss - metrics.ent_coef * metrics.entropy,
        rtol=1e-4, atol=1e-5,
    )


def test_kl_early_stop_skips_the_remaining_steps():
    tripped = TINY.replace(kl_early_stop=True, target_kl=1e-9, learning_rate=1e-2)
    state, metrics = jax.jit(jaxppo.train)(tripped, jax.random.key(0))
    # The first minibatch has ratio 1 (approx_kl 0 <= 1e-9) and is taken; the second already
    # sees the changed policy, exceeds 1e-9 and stops the update: 1 of 4 steps.
    np.testing.assert_array_equal(metrics.gradient_steps, [1, 1, 1, 1])
    _, loose = jax.jit(jaxppo.train)(tripped.replace(target_kl=1e9), jax.random.key(0))
    np.testing.assert_array_equal(loose.gradient_steps, [4, 4, 4, 4])


def test_learning_rate_follows_the_updates_when_kl_early_stop_skips_steps():
    """Every update's one step is taken at lr * (1 - k / U) although the other 15 are skipped
    (a schedule on Adam's step count would still be near lr at the last update)."""
    config = jaxppo.Config(num_envs=4, num_steps=64, total_timesteps=2048, kl_early_stop=True,
                           target_kl=1e-12, learning_rate=1e-2)
    assert config.num_updates == 8
    step = jax.jit(jaxppo.step, static_argnums=0)
    state = jaxppo.init(config, jax.random.key(0))
    moved = []
    for k in range(config.num_updates):
        before = ravel_pytree(state.params)[0]
        state, metrics = step(config, state)
        assert int(metrics.gradient_steps) == 1
        rate = 1e-2 * (1 - k / 8)
        np.testing.assert_allclose(metrics.learning_rate, rate, rtol=1e-6)
        # Adam's direction after its (k + 1)-th step, from its moments:
        # m / (1 - 0.9^(k+1)) / (sqrt(v / (1 - 0.999^(k+1))) + 1e-5).
        mu, nu = (x for x in jax.tree.leaves(state.opt_state) if x.ndim)
        t = k + 1
        direction = (mu / (1 - 0.9**t)) / (jnp.sqrt(nu / (1 - 0.999**t)) + 1e-5)
        delta = ravel_pytree(state.params)[0] - before
        np.testing.assert_allclose(delta, -rate * direction, rtol=1e-3, atol=2e-7)
        moved.append(float(jnp.linalg.norm(delta)))
    # The last update moves the params about 1/8 as far as the first (Adam's direction varies).
    assert moved[-1] / moved[0] < 0.3, moved


def test_max_norm_clipping_scales_by_the_largest_entry():
    clip = update.clip_by_global_max_norm(0.5)
    grads = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5]])}
    out, _ = clip.update(grads, clip.init(grads))
    # Largest |g| is 2 -> scale 0.5 / 2 = 0.25 for every entry.
    np.testing.assert_allclose(out["a"], [0.25, -0.5])
    np.testing.assert_allclose(out["b"], [[0.125]])
    small = {"a": jnp.array([0.1, -0.2])}
    np.testing.assert_allclose(clip.update(small, clip.init(small))[0]["a"], [0.1, -0.2])


def test_bfloat16_matmuls_train_inside_jit():
    """matmul_dtype="bfloat16" is its own program and trains: after one update (2 epochs x 2
    minibatches, Adam steps of at most ~lr = 2.5e-4 each) its float32 params sit within 1e-2
    of the float32 run's, and differ from them."""
    f32_state, _ = _run(TINY, updates=1)
    state, seen = _run(TINY.replace(matmul_dtype="bfloat16"), updates=1)
    metrics = seen[0][2]
    for name in ("total_loss", "policy_loss", "value_loss", "entropy", "grad_norm"):
        assert np.isfinite(getattr(metrics, name)), name
    flat, _ = ravel_pytree(state.params)
    flat32, _ = ravel_pytree(f32_state.params)
    assert flat.dtype == jnp.float32
    gap = float(jnp.max(jnp.abs(flat - flat32)))
    assert 0.0 < gap < 1e-2, gap


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (dict(kl_early_stop=True, target_kl=0.0), r"target_kl=0\.0.*kl_early_stop"),
        (dict(shuffle="trajectories", num_envs=4, num_minibatches=8, num_steps=16),
         r"num_minibatches=8.*num_envs=4"),
        (dict(shuffle="episodes"), r"shuffle='episodes'.*transitions"),
        (dict(ent_schedule="cosine"), r"ent_schedule='cosine'"),
        (dict(ent_schedule="exponential", ent_coef_end=0.0), r"ent_coef_end=0\.0.*exponential"),
        (dict(grad_norm_type="l1"), r"grad_norm_type='l1'"),
        (dict(matmul_dtype="bf16"), r"matmul_dtype='bf16'.*\('float32', 'bfloat16'\)"),
        (dict(normalize_obs=True, obs_clip=-1.0), r"obs_clip=-1\.0"),
    ],
)
def test_bad_switch_values_are_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        jaxppo.validate(TINY.replace(**fields))
