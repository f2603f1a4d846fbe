"""The policy switches of `networks.apply`: action masks, temperature, squashed Gaussian mean,
Fourier features, deterministic `act`, and the Config validation that guards them."""

import functools
import math
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxppo
from jaxppo import distributions, envs, networks

HIDDEN_SIZES = (16, 16)
NUM_DRAWS = 4000

# Jitted once per config: one compile is cheaper than dispatching every op of a flax init
# eagerly (the config is a pytree argument, the env a static one).
_init = networks.init


@functools.cache
def _setup(env_id, **overrides):
    """Config, env, network and initial params (cached: params are immutable)."""
    config = jaxppo.validate(jaxppo.Config(env_id=env_id, hidden_sizes=HIDDEN_SIZES, **overrides))
    env = envs.make(env_id)
    return config, env, networks.make(config, env), _init(config, env, jax.random.key(0))


def _scale_actor_head(params, factor):
    """Params with the policy head kernel times ``factor``.

    The 0.01 head gain makes initial logits (or raw means) ~1e-2; scaling gives a policy far
    from uniform, so temperature, masks and squashing have something to act on.
    """
    inner = dict(params["params"])
    actor = dict(inner["actor"])
    actor["head"] = {**actor["head"], "kernel": actor["head"]["kernel"] * factor}
    inner["actor"] = actor
    return {"params": inner}


def _softmax(logits):
    z = np.float64(logits)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _probs(dist):
    return jnp.exp(jax.nn.log_softmax(dist.logits, axis=-1))


def _obs(env, batch, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(scale=scale, size=(batch, env.observation_size)), jnp.float32)


# --- no switches: the module-level functions are the flax module -------------------------------


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_no_switches_matches_the_flax_module_exactly(env_id):
    config, env, network, params = _setup(env_id)
    obs = _obs(env, 5)
    dist, value = networks.apply(network, params, config, obs)
    raw_dist, raw_value = network.apply(params, obs)
    # Temperature 1 divides by exactly 1.0: bit-identical to the module.
    chex.assert_trees_all_equal((dist, value), (raw_dist, raw_value))
    chex.assert_trees_all_equal(networks.value(network, params, config, obs), raw_value)
    chex.assert_trees_all_equal(networks.policy(network, params, config, obs), raw_dist)
    assert networks.FOURIER_KEY not in params["params"]


# --- action masking --------------------------------------------------------------------------


def _masked_probe(temperature=1.0):
    """ProbeMasked-v0: 64 reset envs, their obs [64, 1] and masks [64, 4], scaled logits."""
    config, env, network, params = _setup(
        "ProbeMasked-v0", action_masking=True, temperature=temperature
    )
    obs, states = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), 64))
    mask = jax.vmap(env.action_mask)(states)
    return config, env, network, _scale_actor_head(params, 300.0), obs, mask


def test_probe_masked_mask_comes_from_the_env_state():
    _, _, _, _, obs, mask = _masked_probe()
    positive = obs[:, 0] > 0
    assert positive.any() and (~positive).any()  # both signs occur in 64 resets
    expected = jnp.where(positive[:, None], jnp.array([[True, False, True, False]]),
                         jnp.array([[False, True, False, True]]))
    chex.assert_trees_all_equal(mask, expected)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_masked_actions_are_never_sampled_and_have_zero_probability(temperature):
    config, _, network, params, obs, mask = _masked_probe(temperature)
    dist, _ = networks.apply(network, params, config, obs, mask)
    probs = _probs(dist)
    chex.assert_trees_all_equal(probs * ~mask, jnp.zeros((64, 4)))  # exactly 0
    chex.assert_trees_all_close(probs.sum(axis=-1), jnp.ones(64), rtol=1e-6)
    # The unmasked policy puts real mass on the invalid actions (so masking has work to do).
    raw_probs = _probs(networks.apply(network, params, config, obs)[0])
    assert float(jnp.min(jnp.sum(raw_probs * ~mask, axis=-1))) > 0.01

    # NUM_DRAWS draws for each of the 64 envs: [NUM_DRAWS, 64] actions.
    many_obs = jnp.broadcast_to(obs, (NUM_DRAWS, 64, 1))
    many_mask = jnp.broadcast_to(mask, (NUM_DRAWS, 64, 4))
    actions = networks.act(network, params, config, many_obs, jax.random.key(2), many_mask)
    chex.assert_shape(actions, (NUM_DRAWS, 64))
    taken_valid = jnp.take_along_axis(many_mask, actions[..., None], axis=-1)[..., 0]
    assert bool(taken_valid.all())
    # Frequencies of env 0 follow its masked policy (standard error <= 0.008 per action).
    frequencies = jnp.stack([jnp.mean(actions[:, 0] == k) for k in range(4)])
    chex.assert_trees_all_close(frequencies, probs[0], atol=0.03)


def test_masked_log_probs_entropy_and_gradients_are_finite():
    config, _, network, params, obs, mask = _masked_probe(temperature=0.5)
    all_actions = jnp.broadcast_to(jnp.arange(4), (64, 4))

    def objective(p):
        dist, value = networks.apply(network, p, config, obs, mask)
        log_probs = jax.vmap(dist.log_prob, in_axes=1, out_axes=1)(all_actions)  # [64, 4]
        return jnp.sum(log_probs) + jnp.sum(dist.entropy()) + jnp.sum(value), (dist, log_probs)

    grads, (dist, log_probs) = jax.jit(jax.grad(objective, has_aux=True))(params)
    chex.assert_tree_all_finite((grads, log_probs, dist.entropy()))
    assert float(jnp.max(jnp.where(mask, -jnp.inf, log_probs))) < -1e8  # masked: ~ -1e9 / 1
    # The entropy is that of softmax(logits / T) over the two valid actions alone.
    raw_logits = np.float64(network.apply(params, obs)[0].logits)
    valid_logits = raw_logits[np.asarray(mask)].reshape(64, 2) / 0.5
    p = _softmax(valid_logits)
    chex.assert_trees_all_close(dist.entropy(), np.float32(-(p * np.log(p)).sum(-1)), rtol=1e-5,
                                atol=1e-6)
    assert float(jnp.abs(grads["params"]["actor"]["head"]["kernel"]).max()) > 0


def test_mask_on_a_gaussian_policy_is_an_error():
    config, env, network, params = _setup("Pendulum-v1")
    with pytest.raises(ValueError, match="discrete"):
        networks.apply(network, params, config, _obs(env, 2), jnp.ones((2, 1), jnp.bool_))


# --- temperature -----------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_policy_is_softmax_of_logits_over_temperature(temperature):
    config, env, network, params = _setup("CartPole-v1", temperature=temperature)
    params = _scale_actor_head(params, 300.0)
    obs = _obs(env, 16)
    raw_dist, raw_value = network.apply(params, obs)
    dist, value = networks.apply(network, params, config, obs)
    expected = _softmax(np.float64(raw_dist.logits) / temperature)
    chex.assert_trees_all_close(_probs(dist), np.float32(expected), rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_equal(value, raw_value)  # the critic ignores temperature
    # The logits are far from uniform, so T visibly changes the policy.
    assert np.abs(expected - _softmax(raw_dist.logits)).max() > 0.05


def test_entropy_increases_with_temperature_towards_uniform():
    temperatures = [0.25, 0.5, 1.0, 2.0, 4.0, 1e4]
    configs = [_setup("CartPole-v1", temperature=t)[0] for t in temperatures]
    _, env, network, params = _setup("CartPole-v1")
    params = _scale_actor_head(params, 300.0)
    obs = _obs(env, 16)
    entropies = np.stack([networks.apply(network, params, c, obs)[0].entropy() for c in configs])
    assert np.all(np.diff(entropies, axis=0) > 0)  # strictly increasing in T, every obs
    # T = 1e4: |logit difference| / T < 1e-3, so p is within 2.5e-4 of uniform, H ~ log 2.
    hot = _probs(networks.apply(network, params, configs[-1], obs)[0])
    chex.assert_trees_all_close(hot, jnp.full((16, 2), 0.5), atol=1e-3)
    chex.assert_trees_all_close(entropies[-1], np.full(16, math.log(2.0), np.float32), atol=1e-6)


def test_temperature_is_traced_compiles_once_and_vmaps():
    _, env, network, params = _setup("CartPole-v1")
    params = _scale_actor_head(params, 300.0)
    obs = _obs(env, 8)
    traces = []

    @jax.jit
    def logits(config):
        traces.append(1)  # runs once per trace
        return networks.apply(network, params, config, obs)[0].logits

    cold = jaxppo.Config(hidden_sizes=HIDDEN_SIZES, temperature=0.5)
    hot = cold.replace(temperature=2.0)
    first, second = logits(cold), logits(hot)
    assert len(traces) == 1
    chex.assert_trees_all_close(first, 4.0 * second, rtol=1e-5)  # (l / 0.5) = 4 (l / 2)
    stacked = jax.vmap(logits)(jaxppo.stack_configs([cold, hot]))
    chex.assert_trees_all_close(stacked, jnp.stack([first, second]), rtol=1e-6)


# --- squashed Gaussian mean ------------------------------------------------------------------


@pytest.mark.parametrize("factor", [300.0, 1e7])
def test_squash_mean_stays_in_bounds_and_matches_numpy(factor):
    config, env, network, params = _setup("Pendulum-v1", squash_mean=True)
    plain_config, _, plain, _ = _setup("Pendulum-v1")
    assert (network.action_low, network.action_high) == ((-2.0,), (2.0,))
    params = _scale_actor_head(params, factor)
    obs = _obs(env, 256, seed=1, scale=3.0)
    raw = np.float64(networks.apply(plain, params, plain_config, obs)[0].mean)  # same layout
    dist, _ = networks.apply(network, params, config, obs)
    chex.assert_shape(dist.mean, (256, 1))
    # low + (tanh(raw) + 1) / 2 * (high - low) with low = -2, high = 2: 2 tanh(raw).
    expected = -2.0 + (np.tanh(raw) + 1.0) / 2.0 * 4.0
    chex.assert_trees_all_close(dist.mean, np.float32(expected), rtol=1e-5, atol=1e-6)
    assert bool(jnp.all((dist.mean >= -2.0) & (dist.mean <= 2.0)))
    if factor > 1e6:
        assert np.abs(raw).max() > 1e3 and np.abs(raw).min() > 20  # every raw mean saturates
        chex.assert_trees_all_equal(jnp.abs(dist.mean), jnp.full((256, 1), 2.0))
    else:
        assert np.abs(raw).max() > 0.5  # a range where tanh bends


def test_squash_maps_asymmetric_bounds_per_dimension():
    raw = jnp.float32([[0.0, 0.0], [1.0, -1.0], [1e9, -1e9], [-1e9, 1e9]])
    low, high = (-1.0, 0.0), (3.0, 5.0)
    # tanh(0) = 0: the midpoints [1, 2.5]; tanh(1) = 0.76159416: -1 + 1.76159416 / 2 * 4 =
    # 2.52318831 and 0 + 0.23840584 / 2 * 5 = 0.59601460; +-1e9 reaches the bounds exactly.
    expected = np.float32([[1.0, 2.5], [2.52318831, 0.5960146], [3.0, 0.0], [-1.0, 5.0]])
    chex.assert_trees_all_close(networks.squash(raw, low, high), expected, rtol=1e-6)


def test_squash_mean_needs_finite_bounds():
    space = envs.ActionSpace(discrete=False, shape=(1,), low=np.float32([-np.inf]),
                             high=np.float32([np.inf]))
    env = types.SimpleNamespace(action_space=space, observation_size=3)
    with pytest.raises(ValueError, match="finite action bounds"):
        networks.make(jaxppo.Config(env_id="Pendulum-v1", squash_mean=True), env)


# --- Fourier features ------------------------------------------------------------------------


def test_fourier_matrix_shape_scale_and_network_input_size():
    num_features, scale = 512, 3.0
    _, env, _, params = _setup("CartPole-v1", fourier_features=num_features, fourier_scale=scale)
    b = np.float64(params["params"]["fourier_B"])
    assert b.shape == (4, num_features)
    # 2048 draws of N(0, 3^2): the sample std has relative standard error 1 / sqrt(2 * 2048)
    # = 0.016, the mean a standard error of 3 / sqrt(2048) = 0.066; allow ~5 of each.
    assert abs(b.std() / scale - 1.0) < 0.08
    assert abs(b.mean()) < 0.33
    for net in ("actor", "critic"):
        chex.assert_shape(params["params"][net]["hidden_0"]["kernel"], (2 * num_features, 16))
    assert networks.input_size(_setup("CartPole-v1", fourier_features=8)[0], env) == 16
    assert networks.input_size(_setup("CartPole-v1")[0], env) == 4


@pytest.mark.layout
def test_fourier_matrix_is_scale_times_the_normal_draw_of_fold_in_key_1():
    """B = fourier_scale * N(0, 1) [O, F] drawn from fold_in(init key, 1), exactly."""
    _, _, _, params = _setup("CartPole-v1", fourier_features=8, fourier_scale=3.0)
    normal = jax.random.normal(jax.random.fold_in(jax.random.key(0), 1), (4, 8), jnp.float32)
    chex.assert_trees_all_equal(params["params"]["fourier_B"], jnp.float32(3.0) * normal)


def test_fourier_encoding_matches_numpy_and_feeds_the_module():
    config, env, network, params = _setup("CartPole-v1", fourier_features=3)
    b = np.float32([[1.0, 0.5, 2.0], [0.3, -1.2, 0.0], [0.0, 0.7, -0.4], [2.5, 0.1, 1.1]])
    params = {"params": {**params["params"], "fourier_B": jnp.asarray(b)}}
    obs = np.float32([[0.25, 0.0, 0.0, 0.0], [0.1, -0.4, 1.3, 0.05]])
    encoded = networks.encode(params, config, jnp.asarray(obs))
    # Row 0: 2 pi * 0.25 * [1, 0.5, 2] = [pi / 2, pi / 4, pi]: cos = [0, 0.70710678, -1],
    # sin = [1, 0.70710678, 0].
    chex.assert_trees_all_close(
        encoded[0], np.float32([0.0, 0.70710678, -1.0, 1.0, 0.70710678, 0.0]), atol=1e-6
    )
    projected = 2.0 * np.pi * np.float64(obs) @ np.float64(b)
    expected = np.concatenate([np.cos(projected), np.sin(projected)], axis=-1)
    chex.assert_trees_all_close(encoded, np.float32(expected), atol=1e-5)
    # apply = the flax module on the encoded input; batch axes [..., O] -> [..., 2F].
    dist, value = networks.apply(network, params, config, jnp.asarray(obs))
    chex.assert_trees_all_equal((dist, value), network.apply(params, encoded))
    chex.assert_shape(networks.encode(params, config, jnp.zeros((3, 5, 4))), (3, 5, 6))
    chex.assert_shape(networks.value(network, params, config, jnp.zeros((3, 5, 4))), (3, 5))


def test_fourier_encoding_stays_float32_under_bfloat16_matmuls():
    # matmul_dtype="bfloat16" rounds the MLPs' operands only. With fourier_scale 10 and obs of
    # scale 0.1 the phases 2 pi x B reach ~60 rad, where bfloat16's relative 2^-9 on x alone
    # moves the encoding by up to ~0.08; in float32 it is ~3e-6 off the float64 reference.
    config, env, network, params = _setup("CartPole-v1", fourier_features=8,
                                          fourier_scale=10.0, matmul_dtype="bfloat16")
    obs = _obs(env, 16, seed=3, scale=0.1)
    encoded = networks.encode(params, config, obs)
    assert encoded.dtype == jnp.float32
    projected = 2.0 * np.pi * np.float64(obs) @ np.float64(params["params"]["fourier_B"])
    assert np.abs(projected).max() > 20.0  # large phases: a rounded operand would show
    expected = np.concatenate([np.cos(projected), np.sin(projected)], axis=-1)
    np.testing.assert_allclose(encoded, expected, atol=1e-4)
    # ... and that float32 encoding is the bfloat16 MLPs' input.
    dist, value = networks.apply(network, params, config, obs)
    chex.assert_trees_all_equal((dist, value), network.apply(params, encoded))


def test_fourier_matrix_gets_zero_gradient_and_stays_fixed_after_a_step():
    config, env, network, params = _setup(
        "Pendulum-v1", fourier_features=32, squash_mean=True, init_log_std=-0.7
    )
    obs = _obs(env, 8)
    actions = jnp.ones((8, 1))

    def objective(p):
        dist, value = networks.apply(network, p, config, obs)
        return -jnp.mean(dist.log_prob(actions)) + jnp.mean((value - 1.0) ** 2)

    optimizer = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2, eps=1e-5))

    @jax.jit
    def gradient_step(p):
        grads = jax.grad(objective)(p)
        updates, _ = optimizer.update(grads, optimizer.init(p), p)
        return grads, optax.apply_updates(p, updates)

    grads, stepped = gradient_step(params)
    chex.assert_trees_all_equal(grads["params"]["fourier_B"], jnp.zeros((3, 32)))
    assert float(jnp.abs(grads["params"]["actor"]["hidden_0"]["kernel"]).max()) > 0
    chex.assert_trees_all_equal(stepped["params"]["fourier_B"], params["params"]["fourier_B"])
    assert not np.allclose(stepped["params"]["actor"]["hidden_0"]["kernel"],
                           params["params"]["actor"]["hidden_0"]["kernel"])


def test_fourier_scale_and_init_log_std_are_traced_init_leaves():
    env = envs.make("Pendulum-v1")
    base = jaxppo.Config(env_id="Pendulum-v1", hidden_sizes=HIDDEN_SIZES, fourier_features=16)
    stacked = jaxppo.stack_configs(
        [base, base.replace(fourier_scale=2.0, init_log_std=-1.0)]
    )
    batched_init = jax.vmap(networks.init, in_axes=(0, None, None))
    params = jax.jit(batched_init, static_argnums=1)(stacked, env, jax.random.key(5))
    b = params["params"]["fourier_B"]
    chex.assert_shape(b, (2, 3, 16))
    # Same key, so B(scale 2) = 2 B(scale 1); the network weights are the same.
    chex.assert_trees_all_close(b[1], 2.0 * b[0], rtol=1e-6)
    chex.assert_trees_all_equal(params["params"]["log_std"], jnp.float32([[0.0], [-1.0]]))
    kernel = params["params"]["actor"]["hidden_0"]["kernel"]
    chex.assert_trees_all_equal(kernel[0], kernel[1])
    other = _init(base, env, jax.random.key(6))["params"]["fourier_B"]
    assert not np.allclose(other, b[0])


# --- act and init_log_std --------------------------------------------------------------------


def test_act_gives_the_mode_without_key_and_samples_with_one():
    config, env, network, params = _setup("CartPole-v1", temperature=2.0)
    params = _scale_actor_head(params, 300.0)
    obs = _obs(env, 4)
    dist = networks.policy(network, params, config, obs)
    mode = networks.act(network, params, config, obs)
    chex.assert_trees_all_equal(mode, jnp.argmax(dist.logits, axis=-1))
    key = jax.random.key(3)
    chex.assert_trees_all_equal(networks.act(network, params, config, obs, key,
                                             deterministic=True), mode)
    chex.assert_trees_all_equal(networks.act(network, params, config, obs, key),
                                dist.sample(key))
    samples = networks.act(network, params, config, jnp.broadcast_to(obs, (NUM_DRAWS, 4, 4)),
                           key)
    frequencies = jnp.mean(samples == 1, axis=0)  # standard error <= 0.008
    chex.assert_trees_all_close(frequencies, _probs(dist)[:, 1], atol=0.03)
    assert bool(jnp.any(samples != mode[None]))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        networks.act(network, params, config, obs, deterministic=False)


def test_act_mode_respects_the_mask():
    config, _, network, params, obs, mask = _masked_probe()
    raw_mode = networks.act(network, params, config, obs)
    masked_mode = networks.act(network, params, config, obs, mask=mask)
    assert bool(jnp.take_along_axis(mask, masked_mode[:, None], axis=-1).all())
    assert bool(jnp.any(raw_mode != masked_mode))  # the raw argmax is often an invalid action


def test_act_gaussian_mode_is_the_mean_and_samples_spread_by_init_log_std():
    config, env, network, params = _setup("Pendulum-v1", init_log_std=-0.5)
    obs = _obs(env, 2)
    dist = networks.policy(network, params, config, obs)
    chex.assert_trees_all_equal(networks.act(network, params, config, obs), dist.mean)
    chex.assert_trees_all_equal(dist.log_std, jnp.float32([-0.5]))
    samples = networks.act(network, params, config, jnp.broadcast_to(obs, (NUM_DRAWS, 2, 3)),
                           jax.random.key(4))
    chex.assert_shape(samples, (NUM_DRAWS, 2, 1))
    # Sample std e^-0.5 = 0.60653066, relative standard error 1 / sqrt(8000) = 0.011.
    std = jnp.std(samples - dist.mean[None], axis=0)
    chex.assert_trees_all_close(std, jnp.full((2, 1), math.exp(-0.5)), rtol=0.05)


@pytest.mark.parametrize("overrides", [{}, {"squash_mean": True, "fourier_features": 8}])
def test_log_std_is_init_log_std_with_any_switches(overrides):
    config, env, network, params = _setup("Pendulum-v1", init_log_std=-1.3, **overrides)
    chex.assert_trees_all_equal(params["params"]["log_std"], jnp.float32([-1.3]))
    dist, _ = networks.apply(network, params, config, _obs(env, 3))
    assert isinstance(dist, distributions.DiagGaussian)
    # H = log sigma + (1 + log 2 pi) / 2 = -1.3 + 1.41893853 = 0.11893853 per state.
    chex.assert_trees_all_close(dist.entropy(), jnp.full(3, 0.11893853), rtol=1e-5)


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"action_masking": True}, r"action_masking=True.*CartPole-v1 provides no action masks"),
        ({"squash_mean": True}, r"squash_mean=True.*continuous actions only"),
        ({"env_id": "Pendulum-v1", "temperature": 2.0}, r"temperature=2\.0.*must stay 1\.0"),
        ({"temperature": 0.0}, r"temperature=0\.0.*must be > 0"),
        ({"fourier_features": -1}, r"fourier_features=-1.*integer >= 0"),
        ({"fourier_features": 4, "fourier_scale": 0.0}, r"fourier_scale=0\.0.*must be > 0"),
    ],
    ids=["masking-cartpole", "squash-cartpole", "temperature-pendulum", "temperature-zero",
         "fourier-negative", "fourier-scale-zero"],
)
def test_validation_rejects_switches_that_do_not_apply(overrides, message):
    config = jaxppo.Config(**{"env_id": "CartPole-v1", **overrides})
    with pytest.raises(ValueError, match=message):
        jaxppo.validate(config)


def test_validation_accepts_masks_where_the_env_has_them():
    config = jaxppo.Config(env_id="ProbeMasked-v0", action_masking=True, temperature=0.5)
    assert jaxppo.validate(config) is config
