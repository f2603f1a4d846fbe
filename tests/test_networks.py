"""Tests of `jaxppo.networks`: initialization (Huang et al. 2022, details 2-3) and shapes."""

import functools
import math
import re

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
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


def _numpy_mlp(p, x, activation):
    """Two hidden layers with ``activation`` and a linear head, in float64."""
    for layer in ("hidden_0", "hidden_1"):
        x = activation(x @ np.float64(p[layer]["kernel"]) + np.float64(p[layer]["bias"]))
    return x @ np.float64(p["head"]["kernel"]) + np.float64(p["head"]["bias"])


def test_cartpole_forward_pass_matches_numpy_mlp_and_shapes():
    config, env, params = _setup("CartPole-v1")
    network = networks.make(config, env)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    dist, value = network.apply(params, jnp.asarray(obs))
    assert isinstance(dist, distributions.Categorical)
    chex.assert_shape(dist.logits, (5, 2))
    chex.assert_shape(value, (5,))

    inner = params["params"]
    expected_logits = _numpy_mlp(inner["actor"], np.float64(obs), np.tanh)
    expected_value = _numpy_mlp(inner["critic"], np.float64(obs), np.tanh)[:, 0]
    chex.assert_trees_all_close(dist.logits, np.float32(expected_logits), rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(value, np.float32(expected_value), rtol=1e-4, atol=1e-5)
    # Policy gain 0.01 makes the initial policy near uniform: |logits| stay well below 0.1.
    assert float(jnp.max(jnp.abs(dist.logits))) < 0.1


def test_relu_forward_pass_matches_numpy_mlp():
    config, env, params = _setup("CartPole-v1", activation="relu")
    network = networks.make(config, env)
    obs = np.random.default_rng(1).normal(scale=2.0, size=(16, 4)).astype(np.float32)
    dist, value = network.apply(params, jnp.asarray(obs))
    inner = params["params"]

    def relu(x):
        return np.maximum(x, 0.0)

    expected_value = _numpy_mlp(inner["critic"], np.float64(obs), relu)[:, 0]
    chex.assert_trees_all_close(dist.logits, np.float32(
        _numpy_mlp(inner["actor"], np.float64(obs), relu)), rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(value, np.float32(expected_value), rtol=1e-4, atol=1e-5)
    # Not the tanh network of the same params: relu is unbounded and cuts negatives to 0.
    assert not np.allclose(value, _numpy_mlp(inner["critic"], np.float64(obs), np.tanh)[:, 0],
                           atol=1e-3)


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


# ---------------------------------------------------------------------------------------------
# bfloat16 matmuls (Config.matmul_dtype="bfloat16").


def _bf16(a) -> np.ndarray:
    """float64 copy of ``a`` rounded to bfloat16 (nearest, ties to even), by ml_dtypes."""
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def test_bfloat16_matmul_rounds_the_operands_only():
    # bfloat16 keeps 8 significant bits: 1 + 2^-9 rounds to 1, while 1 + 2^-7 and 3 are exact.
    x = jnp.array([[1.0 + 2.0**-9, 3.0]])
    w = jnp.array([[1.0], [1.0 + 2.0**-7]])
    out = networks.bfloat16_matmul(x, w)
    assert out.dtype == jnp.float32
    # 1 x 1 + 3 x (1 + 2^-7) = 4 + 3/128 = 4.0234375, accumulated in float32 exactly.
    np.testing.assert_array_equal(out, [[4.0234375]])
    # In float32: (1 + 2^-9) + 3 (1 + 2^-7) = 4.025390625.
    np.testing.assert_array_equal(x @ w, [[4.025390625]])


def test_bfloat16_matmul_equals_a_float64_product_of_rounded_operands():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 5, 7)), rng.normal(size=(7, 3))
    out = networks.bfloat16_matmul(jnp.float32(x), jnp.float32(w))
    np.testing.assert_allclose(out, _bf16(x) @ _bf16(w), rtol=1e-5, atol=1e-6)
    # ... and not the float32 product: rounding 8-bit operands moves it by ~1e-3.
    assert np.max(np.abs(np.asarray(out) - x @ w)) > 1e-3


def test_bfloat16_matmul_gradients_are_float32_products_of_rounded_operands():
    rng = np.random.default_rng(1)
    x, w, c = rng.normal(size=(2, 5, 7)), rng.normal(size=(7, 3)), rng.normal(size=(2, 5, 3))

    def loss(x, w):
        return jnp.sum(networks.bfloat16_matmul(x, w) * jnp.float32(c))

    dx, dw = jax.grad(loss, argnums=(0, 1))(jnp.float32(x), jnp.float32(w))
    assert dx.dtype == dw.dtype == jnp.float32
    # dL/dy = c: dx = c w^T and dw = sum over the leading axes of x^T c, all rounded operands.
    np.testing.assert_allclose(dx, _bf16(c) @ _bf16(w).T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dw, np.einsum("abi,abo->io", _bf16(x), _bf16(c)), rtol=1e-5,
                               atol=1e-6)
    # The weight gradient keeps float32's precision (not rounded to bfloat16 on its way back).
    assert np.any(np.asarray(dw, np.float64) != _bf16(dw))


@pytest.mark.parametrize("operand_dtype", ["float32", "bfloat16"])
def test_matmul_vmap_equals_a_loop(operand_dtype):
    rng = np.random.default_rng(2)
    x, w = jnp.float32(rng.normal(size=(3, 5, 7))), jnp.float32(rng.normal(size=(3, 7, 4)))

    def grads(x, w):
        return jax.grad(lambda x, w: jnp.sum(jnp.tanh(networks.matmul(x, w, operand_dtype))),
                        argnums=(0, 1))(x, w)

    batched = jax.vmap(grads)(x, w)
    looped = [grads(x[i], w[i]) for i in range(3)]
    chex.assert_trees_all_close(batched, jax.tree.map(lambda *a: jnp.stack(a), *looped),
                                rtol=1e-6, atol=1e-6)


def test_float32_matmul_gradients_equal_those_of_the_plain_product():
    rng = np.random.default_rng(3)
    x, w, c = rng.normal(size=(2, 5, 7)), rng.normal(size=(7, 3)), rng.normal(size=(2, 5, 3))

    def loss(product, x, w):
        return jnp.sum(product(x, w) * jnp.float32(c))

    ours = jax.grad(functools.partial(loss, networks.matmul), argnums=(0, 1))(
        jnp.float32(x), jnp.float32(w))
    plain = jax.grad(functools.partial(loss, jnp.matmul), argnums=(0, 1))(
        jnp.float32(x), jnp.float32(w))
    chex.assert_trees_all_close(ours, plain, rtol=1e-6, atol=1e-6)
    # dL/dy = c: dx = c w^T, dw = the sum over the leading axes of x^T c (float64 here).
    np.testing.assert_allclose(ours[0], c @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours[1], np.einsum("abi,abo->io", x, c), rtol=1e-5, atol=1e-5)


@pytest.mark.layout
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU backend's program")
def test_weight_gradients_on_cpu_are_plain_products_of_a_transposed_copy():
    # XLA's CPU backend runs x^T g (a dot contracting the rows of both operands) as an Eigen
    # dot, slower than the YNNPACK kernel of a plain product. `networks.matmul` hands the dot
    # a transposed copy of x; without its optimization barrier XLA folds the transpose back.
    text = _traced_gradient("CartPole-v1", rows=128).lower().compile().as_text()
    dots = re.findall(r"= f32\[[\d,]*\]\{[\d,]*\} dot\(.*?lhs_contracting_dims=\{(\d)\}", text)
    # 6 forward products (3 layers x 2 MLPs), 6 weight gradients and 4 input gradients, less
    # what XLA turns into elementwise work (the 1-column value head's input gradient).
    assert len(dots) >= 14, dots
    assert set(dots) == {"1"}, "a weight gradient contracts the rows of x in place"


@pytest.mark.layout
def test_the_transposed_copy_is_made_on_cpu_only():
    # `lax.platform_dependent` picks the copy for CPU programs; a program lowered for an
    # accelerator (which this CPU-only machine can lower, not run) takes the plain transpose.
    traced = _traced_gradient("CartPole-v1", rows=8)
    # One copy per Dense layer's weight gradient: 3 layers x 2 MLPs.
    assert traced.lower(lowering_platforms=("cpu",)).as_text().count(
        "optimization_barrier") == 6
    for platform in ("cuda", "rocm", "tpu"):
        text = traced.lower(lowering_platforms=(platform,)).as_text()
        assert "optimization_barrier" not in text, platform
        assert text.count("stablehlo.dot_general") >= 14, platform


def test_matmul_refuses_an_unknown_operand_dtype():
    with pytest.raises(ValueError, match=r"operand_dtype='float16' is invalid: must be one of "
                                         r"\('float32', 'bfloat16'\)"):
        networks.matmul(jnp.ones((2, 3)), jnp.ones((3, 4)), "float16")


_DOT = re.compile(r"stablehlo\.dot_general .*: \(tensor<[\dx]*(\w+)>, tensor<[\dx]*(\w+)>\) "
                  r"-> tensor<[\dx]*(\w+)>")


def _traced_gradient(env_id, rows, matmul_dtype="float32", **overrides):
    """The traced gradient, with respect to its params, of a loss of the network's outputs
    on ``rows`` observations (``overrides``: more Config fields)."""
    config, env, params = _setup(env_id, matmul_dtype=matmul_dtype, **overrides)
    network = networks.make(config, env)
    obs = jnp.ones((rows, env.observation_size))
    actions = (jnp.zeros((rows,), jnp.int32) if env.action_space.discrete
               else jnp.zeros((rows, 1)))

    def loss(params):
        dist, value = networks.apply(network, params, config, obs)
        return jnp.sum(dist.log_prob(actions)) + jnp.sum(value**2)

    return jax.jit(jax.grad(loss)).trace(params)


def _dot_dtypes(matmul_dtype, env_id, **overrides):
    """(lhs, rhs, result) element types of every matmul in the gradient of the network's
    outputs with respect to its params."""
    text = _traced_gradient(env_id, rows=6, matmul_dtype=matmul_dtype,
                            **overrides).lower().as_text()
    return [match.groups() for match in _DOT.finditer(text)]


@pytest.mark.layout
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_bfloat16_config_runs_every_matmul_of_forward_and_gradient_in_bfloat16(env_id):
    dots = _dot_dtypes("bfloat16", env_id)
    # Per MLP (actor, critic): 3 layers forward, 3 weight gradients, 2 input gradients (the
    # observation's is not needed): 8 x 2 = 16, as in float32.
    assert len(dots) == 16, dots
    assert set(dots) == {("bf16", "bf16", "f32")}
    dots = _dot_dtypes("float32", env_id)
    assert len(dots) == 16 and set(dots) == {("f32", "f32", "f32")}


@pytest.mark.layout
def test_bfloat16_config_keeps_the_fourier_projection_in_float32():
    # The MLPs' 16 matmuls as above in bfloat16; the projection x B of the Fourier features is
    # one more, forward only (B is read through stop_gradient), in float32: its phase
    # 2 pi x B (fourier_scale 10) would be ~1e-2 off with bfloat16 operands.
    dots = _dot_dtypes("bfloat16", "CartPole-v1", fourier_features=8, fourier_scale=10.0)
    assert len(dots) == 17, dots
    assert dots.count(("bf16", "bf16", "f32")) == 16
    assert dots.count(("f32", "f32", "f32")) == 1
