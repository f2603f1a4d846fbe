"""Tests of `jaxppo.policy`: observations in (normalized, clipped), values out (return units),
and `act`'s sample, log-prob and value."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import distributions, envs, networks, normalize
from jaxppo import policy as policy_lib

CONFIG = jaxppo.Config(hidden_sizes=(8,))

# Observation statistics of CartPole's 4 features: std [2, 1, 0.5, 3] exactly in float32.
OBS_STATS = normalize.RunningStats(jnp.float32([1.0, -1.0, 0.0, 2.0]),
                                   jnp.float32([4.0, 1.0, 0.25, 9.0]), jnp.float32(10.0))
# Value statistics mean 5, var 4: return units are 2 V + 5.
VALUE_STATS = normalize.RunningStats(jnp.float32(5.0), jnp.float32(4.0), jnp.float32(50.0))

# Jitted once for the module: one compile per env is cheaper than dispatching every op
# eagerly (the network and env are static arguments).
_init = jax.jit(networks.init, static_argnums=1)
_act = jax.jit(policy_lib.act, static_argnums=1)


def _normalizers():
    return normalize.Normalizers.create(4, 2).replace(obs=OBS_STATS, value=VALUE_STATS)


@pytest.fixture(scope="module", params=["CartPole-v1", "Pendulum-v1"])
def actor_critic(request):
    """(config with normalize_values, env, network, Policy with value statistics mean 5,
    var 4)."""
    config = CONFIG.replace(env_id=request.param, normalize_values=True)
    env = envs.make(config.env_id)
    params = _init(config, env, jax.random.key(0))
    normalizers = normalize.Normalizers.create(env.observation_size, 2).replace(
        value=VALUE_STATS)
    return config, env, networks.make(config, env), policy_lib.Policy(params, normalizers)


def test_observe_is_the_raw_observation_when_normalize_obs_is_off():
    x = jnp.float32([[5.0, -1.0, 3.0, 2.0]])
    assert policy_lib.observe(CONFIG, _normalizers(), x) is x


def test_observe_normalizes_with_the_obs_statistics_and_clips_to_obs_clip():
    config = CONFIG.replace(normalize_obs=True, obs_clip=3.0)
    x = jnp.float32([[5.0, -1.0, 3.0, 2.0], [-100.0, 0.0, -1.0, 50.0]])
    # (x - mean) / std: [2, 0, 6, 0] and [-50.5, 1, -2, 16], clipped to [-3, 3].
    expected = [[2.0, 0.0, 3.0, 0.0], [-3.0, 1.0, -2.0, 3.0]]
    np.testing.assert_array_equal(policy_lib.observe(config, _normalizers(), x), expected)
    # obs_clip is a traced leaf: another value, the same program.
    observe = jax.jit(policy_lib.observe)
    np.testing.assert_array_equal(observe(config, _normalizers(), x), expected)
    np.testing.assert_array_equal(observe(config.replace(obs_clip=1.0), _normalizers(), x),
                                  [[1.0, 0.0, 1.0, 0.0], [-1.0, 1.0, -1.0, 1.0]])


def test_in_return_units_denormalizes_only_when_normalize_values():
    policy = policy_lib.Policy({}, _normalizers())
    v = jnp.float32([-1.0, 0.0, 0.25])
    assert policy_lib.in_return_units(CONFIG, policy, v) is v
    # std sqrt(4 + 1e-8) = 2 in float32: 2 v + 5.
    np.testing.assert_array_equal(
        policy_lib.in_return_units(CONFIG.replace(normalize_values=True), policy, v),
        [3.0, 5.0, 5.5])


def test_critic_value_is_the_critic_in_return_units(actor_critic):
    config, env, network, policy = actor_critic
    obs = jax.random.normal(jax.random.key(1), (3, 5, env.observation_size))
    raw = networks.value(network, policy.params, config, obs)
    chex.assert_shape(raw, (3, 5))
    np.testing.assert_allclose(policy_lib.critic_value(config, network, policy, obs),
                               2.0 * raw + 5.0, rtol=1e-6, atol=1e-6)
    off = config.replace(normalize_values=False)
    np.testing.assert_array_equal(policy_lib.critic_value(off, network, policy, obs), raw)


def _log_prob_by_hand(dist, action):
    """log pi(a) in float64: log softmax(logits)[a], or the sum over D of log N(a; mu, sigma)."""
    if isinstance(dist, distributions.Categorical):
        logits = np.float64(dist.logits)
        shifted = logits - logits.max(-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        return np.take_along_axis(log_p, np.asarray(action)[..., None], -1)[..., 0]
    mean, log_std = np.float64(dist.mean), np.float64(dist.log_std)
    z = (np.float64(action) - mean) / np.exp(log_std)
    return np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def test_act_samples_the_policy_and_scores_its_own_action(actor_critic):
    config, env, network, policy = actor_critic
    obs = jax.random.normal(jax.random.key(2), (6, env.observation_size))
    key = jax.random.key(3)
    _, action, log_prob, value = _act(config, network, policy, obs, None, key)
    dist, raw_value = jax.jit(networks.apply, static_argnums=0)(network, policy.params, config,
                                                                obs)
    chex.assert_trees_all_close(action, dist.sample(key), rtol=1e-6, atol=1e-6)
    chex.assert_shape(log_prob, (6,))
    np.testing.assert_allclose(log_prob, dist.log_prob(action), rtol=1e-6)
    np.testing.assert_allclose(log_prob, _log_prob_by_hand(dist, action), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, 2.0 * raw_value + 5.0, rtol=1e-6, atol=1e-6)


def test_act_with_a_mask_samples_valid_actions_only():
    # ProbeMasked-v0 allows 2 of its 4 actions, by the sign of the observation.
    config = CONFIG.replace(env_id="ProbeMasked-v0", action_masking=True)
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    policy = policy_lib.Policy(_init(config, env, jax.random.key(0)),
                               normalize.Normalizers.create(1, 64))
    obs, states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(1), 64))
    mask = jax.vmap(env.action_mask)(states)
    _, action, log_prob, _ = _act(config, network, policy, obs, mask, jax.random.key(2))
    assert bool(jnp.take_along_axis(mask, action[:, None], axis=-1).all())
    # Near-uniform initial logits over the 2 valid actions: log pi ~ log 1/2.
    np.testing.assert_allclose(log_prob, np.log(0.5), atol=0.05)


def test_eager_act_equals_jitted_act():
    config = CONFIG.replace(normalize_values=True)
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    policy = policy_lib.Policy(_init(config, env, jax.random.key(0)), _normalizers())
    obs = jax.random.normal(jax.random.key(4), (5, 4))
    key = jax.random.key(5)
    chex.assert_trees_all_close(policy_lib.act(config, network, policy, obs, None, key),
                                _act(config, network, policy, obs, None, key),
                                rtol=1e-5, atol=1e-6)
