"""Tests of `jaxppo.networks`: initialization (Huang et al. 2022, details 2-3) and shapes."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import distributions, networks

ENV_IDS = ["CartPole-v1", "Pendulum-v1"]
# (4 or 3, 32) is wide, (32, 16) tall: both orientations of the orthogonal init occur.
HIDDEN_SIZES = (32, 16)


@functools.cache
def _setup(env_id, **overrides):
    """Config, env and initial params (cached: init is the slow part and params are immutable)."""
    config = jaxppo.Config(env_id=env_id, hidden_sizes=HIDDEN_SIZES, **overrides)
    env = jaxppo.envs.make(env_id)
    return config, env, networks.init(config, env, jax.random.key(0))


def _assert_orthogonal(kernel, gain):
    """Orthogonal columns (tall or square kernel) or rows (wide kernel), scaled by ``gain``.

    For W [in, out]: W^T W = gain^2 I_out when in >= out, else W W^T = gain^2 I_in.
    """
    w = np.float64(kernel)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    chex.assert_trees_all_close(gram, gain**2 * np.eye(gram.shape[0]), atol=1e-5)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_biases_are_zero(env_id):
    _, _, params = _setup(env_id)
    biases = {
        "/".join(str(k.key) for k in path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if path[-1].key == "bias"
    }
    assert len(biases) == 6  # (2 hidden + head) x (actor, critic)
    chex.assert_trees_all_equal(biases, jax.tree.map(jnp.zeros_like, biases))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_kernels_orthogonal_with_detail_gains(env_id):
    _, env, params = _setup(env_id)
    inner = params["params"]
    num_outputs = env.action_space.num_actions or math.prod(env.action_space.shape)
    for net in ("actor", "critic"):
        chex.assert_shape(inner[net]["hidden_0"]["kernel"], (env.observation_size, 32))
        chex.assert_shape(inner[net]["hidden_1"]["kernel"], (32, 16))
        # Hidden layers: gain sqrt(2), so W^T W (or W W^T) = 2 I.
        _assert_orthogonal(inner[net]["hidden_0"]["kernel"], math.sqrt(2.0))
        _assert_orthogonal(inner[net]["hidden_1"]["kernel"], math.sqrt(2.0))
    # Policy head [16, K or D]: gain 0.01, W^T W = 1e-4 I. Value head [16, 1]: gain 1, |w| = 1.
    chex.assert_shape(inner["actor"]["head"]["kernel"], (16, num_outputs))
    _assert_orthogonal(inner["actor"]["head"]["kernel"], 0.01)
    chex.assert_shape(inner["critic"]["head"]["kernel"], (16, 1))
    _assert_orthogonal(inner["critic"]["head"]["kernel"], 1.0)


def test_default_square_hidden_layer_is_orthogonal():
    config = jaxppo.Config()  # hidden_sizes (64, 64)
    params = networks.init(config, jaxppo.envs.make("CartPole-v1"), jax.random.key(1))
    kernel = params["params"]["actor"]["hidden_1"]["kernel"]
    chex.assert_shape(kernel, (64, 64))
    _assert_orthogonal(kernel, math.sqrt(2.0))


def test_actor_and_critic_do_not_share_weights():
    _, _, params = _setup("CartPole-v1")
    inner = params["params"]
    actor, critic = inner["actor"]["hidden_0"]["kernel"], inner["critic"]["hidden_0"]["kernel"]
    assert not np.allclose(actor, critic)


@pytest.mark.parametrize("init_log_std", [0.0, -0.5])
def test_log_std_initialized_from_config(init_log_std):
    _, _, params = _setup("Pendulum-v1", init_log_std=init_log_std)
    chex.assert_trees_all_equal(params["params"]["log_std"], jnp.full((1,), init_log_std))


def test_categorical_network_has_no_log_std():
    _, _, params = _setup("CartPole-v1")
    assert "log_std" not in params["params"]


def test_cartpole_forward_pass_matches_numpy_mlp_and_shapes():
    config, env, params = _setup("CartPole-v1")
    network = networks.make(config, env)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    dist, value = network.apply(params, jnp.asarray(obs))
    assert isinstance(dist, distributions.Categorical)
    chex.assert_shape(dist.logits, (5, 2))
    chex.assert_shape(value, (5,))

    def mlp(p, x):
        for layer in ("hidden_0", "hidden_1"):
            x = np.tanh(x @ np.float64(p[layer]["kernel"]) + np.float64(p[layer]["bias"]))
        return x @ np.float64(p["head"]["kernel"]) + np.float64(p["head"]["bias"])

    inner = params["params"]
    expected_logits = mlp(inner["actor"], np.float64(obs))
    expected_value = mlp(inner["critic"], np.float64(obs))[:, 0]
    chex.assert_trees_all_close(dist.logits, np.float32(expected_logits), rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(value, np.float32(expected_value), rtol=1e-4, atol=1e-5)
    # Policy gain 0.01 makes the initial policy near uniform: |logits| stay well below 0.1.
    assert float(jnp.max(jnp.abs(dist.logits))) < 0.1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_output_shapes_for_batched_obs(env_id):
    config, env, params = _setup(env_id)
    network = networks.make(config, env)
    obs = jnp.zeros((3, 5, env.observation_size))
    dist, value = network.apply(params, obs)
    chex.assert_shape(value, (3, 5))
    chex.assert_shape(network.apply(params, obs[0, 0], method="value"), ())
    if env.action_space.discrete:
        chex.assert_shape(dist.logits, (3, 5, 2))
        chex.assert_shape(dist.log_prob(jnp.zeros((3, 5), jnp.int32)), (3, 5))
    else:
        assert isinstance(dist, distributions.DiagGaussian)
        chex.assert_shape(dist.mean, (3, 5, 1))
        chex.assert_shape(dist.log_std, (1,))
        chex.assert_shape(dist.entropy(), (3, 5))


def test_init_depends_on_key():
    config, env, _ = _setup("CartPole-v1")
    first = networks.init(config, env, jax.random.key(3))
    chex.assert_trees_all_equal(first, networks.init(config, env, jax.random.key(3)))
    other = networks.init(config, env, jax.random.key(4))
    assert not np.allclose(
        first["params"]["actor"]["hidden_0"]["kernel"],
        other["params"]["actor"]["hidden_0"]["kernel"],
    )


def test_gaussian_policy_samples_and_scores_batched_obs():
    """The rollout path: DiagGaussian(mean [B, D], log_std [D]) sampled and scored."""
    config, env, params = _setup("Pendulum-v1", init_log_std=-0.5)
    dist, _ = networks.make(config, env).apply(params, jnp.zeros((4, env.observation_size)))
    action = dist.sample(jax.random.key(0))
    chex.assert_shape(action, (4, 1))
    # Per sample: log N(a; mu, e^-0.5) = -z^2 / 2 + 0.5 - log(2 pi) / 2.
    z = (action - dist.mean) / math.exp(-0.5)
    expected = -0.5 * z[:, 0] ** 2 + 0.5 - 0.5 * math.log(2 * math.pi)
    chex.assert_trees_all_close(dist.log_prob(action), expected, rtol=1e-5)
