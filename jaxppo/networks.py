"""Actor-critic networks: the only module that uses flax.

Separate actor and critic MLPs (no shared torso, the classic-control default), orthogonal
initialization with gain sqrt(2) on hidden layers, 0.01 on the policy head and 1.0 on the value
head, zero biases (Huang et al. 2022, details 2 and 3). Networks are rebuilt from the Config by
`make`; only their params are carried in the train state.

Callers go through the module-level functions, which apply every policy switch of the Config:

    dist, value = apply(network, params, config, obs, mask)   # rollout and loss
    value(network, params, config, obs)                       # critic only
    act(network, params, config, obs, key, mask)              # sample, or the mode without key

Where each switch lives:

- ``fourier_features`` (F > 0): obs [..., O] -> [cos(2 pi x B), sin(2 pi x B)] [..., 2F]
  before the MLPs (`encode`; Tancik et al. 2020). B [O, F] ~ N(0, fourier_scale^2) is drawn by
  `init` and stored as ``params["params"]["fourier_B"]``; the forward pass reads it through
  ``stop_gradient``, so its gradient is exactly zero and Adam leaves it where it is.
- ``temperature`` (dynamic): the discrete policy is softmax(logits / temperature), in rollout
  and loss alike, so the PPO ratio compares the same distribution.
- ``action_masking``: the caller's mask [..., K] sets invalid logits to a large negative value
  (`distributions.Categorical.from_logits`): probability exactly 0, finite log-probs.
- ``squash_mean`` (static): Gaussian mean = low + (tanh(raw) + 1) / 2 * (high - low), with the
  env's bounds as static module attributes set by `make`.

Every Dense layer of both MLPs multiplies by `matmul`, a custom VJP (so the networks have
reverse-mode derivatives only) whose weight gradient takes x^T from `backend.transposed`.
``matmul_dtype="bfloat16"`` (static) gives it bfloat16 operands with float32 accumulation and
result, in the forward pass and in the gradient's two matmuls (`bfloat16_matmul`); params
and everything between the matmuls stay float32. The Fourier projection stays float32.

``network.apply(params, obs)`` on the flax module alone gives the same result as `apply` for a
config with none of the dynamic switches (no Fourier features, temperature 1, no mask).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxppo import backend, distributions
from jaxppo.config import MATMUL_DTYPES, Config

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}

HIDDEN_GAIN = math.sqrt(2.0)
POLICY_GAIN = 0.01
VALUE_GAIN = 1.0

# Where `init` stores the fixed Fourier frequencies B [O, F], inside params["params"].
FOURIER_KEY = "fourier_B"


def matmul(x: jax.Array, w: jax.Array, operand_dtype: str = "float32") -> jax.Array:
    """x [..., I] @ w [I, O]: every Dense layer's product, with its gradient written out.

    The operands are cast to ``operand_dtype`` ("float32" or "bfloat16"); the products
    accumulate in float32 and come back float32, forward and in the gradient's two matmuls.
    Under bfloat16 the gradients come back float32 and unrounded: plain differentiation of the
    casts would give a float32 x bfloat16 matmul and round the weight gradient to bfloat16.

    The weight gradient x^T g takes its x^T from `backend.transposed` (a copy on CPU, where
    XLA multiplies it faster).

    Being a custom VJP, it has reverse-mode derivatives only (`jax.grad`, `jax.vjp`), not
    forward-mode ones (`jax.jvp`, `jax.jacfwd`). A custom JVP written the same way lost the
    copy: under vmap, JAX's transpose of the tangent's product gave XLA the x^T g dot again.
    """
    if operand_dtype not in MATMUL_DTYPES:
        raise ValueError(f"operand_dtype={operand_dtype!r} is invalid: must be one of "
                         f"{MATMUL_DTYPES}")
    return _matmul(x, w, operand_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x, w, operand_dtype):
    return _matmul_forward(x, w, operand_dtype)[0]


def _matmul_forward(x, w, operand_dtype):
    x, w = x.astype(operand_dtype), w.astype(operand_dtype)
    return jnp.matmul(x, w, preferred_element_type=jnp.float32), (x, w)


def _matmul_backward(operand_dtype, saved, g):
    x, w = saved
    g = g.astype(operand_dtype)
    dx = jnp.matmul(g, w.T, preferred_element_type=jnp.float32)
    rows = backend.transposed(x.reshape(-1, x.shape[-1]))
    dw = jnp.matmul(rows, g.reshape(-1, g.shape[-1]), preferred_element_type=jnp.float32)
    return dx, dw


_matmul.defvjp(_matmul_forward, _matmul_backward)


def bfloat16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """`matmul` with bfloat16 operands, float32 accumulation and result."""
    return matmul(x, w, "bfloat16")


def _dot_general(operand_dtype: str):
    """`matmul` in the place of flax Dense's ``lax.dot_general``."""

    def dot_general(lhs, rhs, dimension_numbers, precision=None,
                    preferred_element_type=None):
        if dimension_numbers != (((lhs.ndim - 1,), (0,)), ((), ())):
            raise NotImplementedError(f"jaxppo's matmul is the Dense layer's x @ w only, got "
                                      f"dimension numbers {dimension_numbers}")
        return matmul(lhs, rhs, operand_dtype)

    return dot_general


_DOT_GENERALS = {dtype: _dot_general(dtype) for dtype in MATMUL_DTYPES}


def _dense(features: int, name: str, matmul_dtype: str = "float32") -> nn.Dense:
    # No initializers here: `init` draws every kernel (orthogonal, gains by `_kernel_gain`).
    return nn.Dense(features, dot_general=_DOT_GENERALS[matmul_dtype], name=name)


class MLP(nn.Module):
    """Hidden layers of ``hidden_sizes`` with ``activation``, then a linear head."""

    hidden_sizes: Sequence[int]
    activation: str
    out_features: int
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        for i, width in enumerate(self.hidden_sizes):
            x = act(_dense(width, f"hidden_{i}", self.matmul_dtype)(x))
        return _dense(self.out_features, "head", self.matmul_dtype)(x)


class ActorCritic(nn.Module):
    """Network input [..., I] -> (action distribution over [...], value [...]).

    The input is the observation, or its Fourier encoding ([..., 2F]) when the config has
    Fourier features; use the module-level `apply`, which encodes and applies temperature and
    masks.

    Attributes:
        hidden_sizes: widths of the hidden layers of each MLP.
        activation: "tanh" or "relu".
        num_actions: K for a Categorical policy; 0 for a Gaussian one.
        action_size: D for a Gaussian policy (ignored when ``num_actions`` > 0).
        squash_mean: Gaussian mean = low + (tanh(raw) + 1) / 2 * (high - low).
        action_low, action_high: the D action bounds (floats; needed by ``squash_mean``).
        matmul_dtype: "float32", or "bfloat16" for every layer's matmul (`bfloat16_matmul`).
    """

    hidden_sizes: Sequence[int]
    activation: str
    num_actions: int
    action_size: int = 0
    squash_mean: bool = False
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    matmul_dtype: str = "float32"

    def setup(self) -> None:
        self.critic = MLP(self.hidden_sizes, self.activation, 1, self.matmul_dtype)
        out = self.num_actions or self.action_size
        self.actor = MLP(self.hidden_sizes, self.activation, out, self.matmul_dtype)
        if not self.num_actions:
            # State-independent log std, a free parameter (set to Config.init_log_std by init).
            self.log_std = self.param("log_std", nn.initializers.zeros, (self.action_size,))

    def __call__(self, x: jax.Array):
        return self.policy(x), self.value(x)

    def value(self, x: jax.Array) -> jax.Array:
        """V at the input, shape [...]."""
        return self.critic(x)[..., 0]

    def policy(self, x: jax.Array):
        """The action distribution at the input, batched over [...] (temperature 1, no mask)."""
        out = self.actor(x)
        if self.num_actions:
            return distributions.Categorical.from_logits(out)
        if self.squash_mean:
            out = squash(out, self.action_low, self.action_high)
        return distributions.DiagGaussian(out, self.log_std)


def squash(raw: jax.Array, low: Sequence[float], high: Sequence[float]) -> jax.Array:
    """low + (tanh(raw) + 1) / 2 * (high - low): raw [..., D] mapped into [low, high] [D].

    tanh saturates to exactly +-1 in float32 for |raw| > ~9, so the mean reaches the bounds but
    never leaves them, however large ``raw`` grows.
    """
    low = jnp.broadcast_to(jnp.asarray(low, raw.dtype), raw.shape)
    high = jnp.broadcast_to(jnp.asarray(high, raw.dtype), raw.shape)
    return low + 0.5 * (jnp.tanh(raw) + 1.0) * (high - low)


def _bounds(space) -> tuple[tuple[float, ...], tuple[float, ...]]:
    low = tuple(float(x) for x in np.ravel(space.low))
    high = tuple(float(x) for x in np.ravel(space.high))
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            f"squash_mean needs finite action bounds; the env has low={low}, high={high}"
        )
    return low, high


def make(config: Config, env) -> ActorCritic:
    """The network for ``config`` on ``env`` (a `jaxppo.envs` env).

    Only static fields are read, so the module is hashable and the same for every value of the
    dynamic leaves.
    """
    space = env.action_space
    squash_mean = bool(config.squash_mean) and not space.discrete
    low, high = _bounds(space) if squash_mean else (None, None)
    return ActorCritic(
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        num_actions=space.num_actions if space.discrete else 0,
        action_size=0 if space.discrete else math.prod(space.shape),
        squash_mean=squash_mean,
        action_low=low,
        action_high=high,
        matmul_dtype=config.matmul_dtype,
    )


def input_size(config: Config, env) -> int:
    """Width of the MLPs' input: 2F with Fourier features, else the observation size O."""
    return 2 * config.fourier_features if config.fourier_features else env.observation_size


def init(config: Config, env, key: jax.Array):
    """Initial params: orthogonal weights, zero biases, log_std = config.init_log_std and,
    with Fourier features, B = fourier_scale * N(0, 1) [O, F] at ``params["params"]["fourier_B"]``.

    Pure in the dynamic leaves (init_log_std and fourier_scale may be traced or vmapped). The
    network weights use ``key`` itself, so they do not depend on the Fourier switch; B uses
    ``fold_in(key, 1)``.

    Every kernel is orthogonal as ``jax.nn.initializers.orthogonal`` makes it (the Q of a
    Gaussian matrix's QR, signs fixed by R's diagonal), but the Gaussian samples of all kernels
    come from one normal draw, cut in order: one random-number kernel for XLA to compile
    instead of one per layer.
    """
    network = make(config, env)
    dummy = jnp.zeros((input_size(config, env),), jnp.float32)
    shapes = jax.eval_shape(network.init, jax.random.key(0), dummy)

    # Under a vmap on CPU, one run at a time: a batched LAPACK QR can hang XLA's thread pool.
    params = backend.one_run_at_a_time(functools.partial(_orthogonal_params, shapes))(key)
    inner = dict(params["params"])
    if not env.action_space.discrete:
        inner["log_std"] = jnp.full_like(inner["log_std"], config.init_log_std)
    if config.fourier_features:
        shape = (env.observation_size, config.fourier_features)
        normal = jax.random.normal(jax.random.fold_in(key, 1), shape, jnp.float32)
        inner[FOURIER_KEY] = jnp.asarray(config.fourier_scale, jnp.float32) * normal
    return {"params": inner}


def _kernel_gain(path) -> float:
    """Gain of the kernel at ``path`` (.../actor|critic/hidden_i|head/kernel)."""
    network, layer = path[-3].key, path[-2].key
    if layer.startswith("hidden_"):
        return HIDDEN_GAIN
    return POLICY_GAIN if network == "actor" else VALUE_GAIN


def _orthogonal_params(shapes, key: jax.Array):
    """Params of the tree ``shapes``: orthogonal kernels with the detail gains, zeros
    elsewhere; the kernels' Gaussian samples are consecutive pieces of one normal draw."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    sizes = [math.prod(leaf.shape) for path, leaf in leaves if path[-1].key == "kernel"]
    normal = jax.random.normal(key, (sum(sizes),), jnp.float32)
    out, offset = [], 0
    for path, leaf in leaves:
        if path[-1].key != "kernel":
            out.append(jnp.zeros(leaf.shape, leaf.dtype))
            continue
        rows, cols = leaf.shape
        tall = (max(rows, cols), min(rows, cols))
        z = normal[offset:offset + math.prod(tall)].reshape(tall)
        offset += math.prod(tall)
        q, r = jnp.linalg.qr(z)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        out.append(_kernel_gain(path) * (q.T if rows < cols else q))
    return jax.tree_util.tree_unflatten(treedef, out)


def encode(params, config: Config, obs: jax.Array) -> jax.Array:
    """The network input for obs [..., O]: obs itself, or its Fourier features [..., 2F].

    gamma(x) = [cos(2 pi x B), sin(2 pi x B)] with the fixed B [O, F] of ``params``, read
    through ``stop_gradient`` so that B is never trained (Tancik et al. 2020, "Fourier Features
    Let Networks Learn High Frequency Functions in Low Dimensional Domains").
    """
    if not config.fourier_features:
        return obs
    b = jax.lax.stop_gradient(params["params"][FOURIER_KEY])
    if obs.shape[-1] != b.shape[0]:
        raise ValueError(f"obs [..., {obs.shape[-1]}] does not match fourier_B {b.shape}")
    projected = 2.0 * math.pi * jnp.matmul(obs, b)
    return jnp.concatenate([jnp.cos(projected), jnp.sin(projected)], axis=-1)


def _module_params(params):
    """The variables the flax module declares (everything but the Fourier matrix)."""
    inner = {k: v for k, v in params["params"].items() if k != FOURIER_KEY}
    return {"params": inner}


def _adjust(dist, config: Config, mask: jax.Array | None):
    """Apply temperature and mask to the module's distribution (Categorical only)."""
    if isinstance(dist, distributions.Categorical):
        return distributions.Categorical.from_logits(dist.logits / config.temperature, mask)
    if mask is not None:
        raise ValueError("action masks apply to discrete (Categorical) policies only; got a "
                         "mask for a Gaussian policy")
    return dist


def apply(network: ActorCritic, params, config: Config, obs: jax.Array,
          mask: jax.Array | None = None):
    """The policy and value at obs, with every switch of ``config`` applied.

    Discrete: ``Categorical.from_logits(logits / temperature, mask)``, i.e. the policy is
    softmax(logits / temperature) over the valid actions. Continuous: DiagGaussian(mean,
    log_std), mean squashed into the bounds when ``squash_mean``.

    Args:
        network: `make(config, env)`.
        params: `init(config, env, key)` (or trained params of the same layout).
        config: the run's Config; ``temperature`` may be traced.
        obs: observations [..., O] (already normalized by the caller).
        mask: valid actions [..., K] (True = allowed), or None; Categorical policies only.

    Returns:
        (dist, value): a distribution batched over [...] and V(obs) [...].
    """
    dist, value_ = network.apply(_module_params(params), encode(params, config, obs))
    return _adjust(dist, config, mask), value_


def value(network: ActorCritic, params, config: Config, obs: jax.Array) -> jax.Array:
    """V(obs) [...] for obs [..., O], the critic alone (Fourier-encoded when configured)."""
    return network.apply(_module_params(params), encode(params, config, obs), method="value")


def policy(network: ActorCritic, params, config: Config, obs: jax.Array,
           mask: jax.Array | None = None):
    """The action distribution of `apply` without evaluating the critic."""
    dist = network.apply(_module_params(params), encode(params, config, obs), method="policy")
    return _adjust(dist, config, mask)


def act(network: ActorCritic, params, config: Config, obs: jax.Array,
        key: jax.Array | None = None, mask: jax.Array | None = None,
        deterministic: bool | None = None) -> jax.Array:
    """Actions at obs [..., O]: the mode, or a sample of the policy of `apply`.

    Args:
        key: PRNG key for sampling; None means deterministic.
        mask: valid actions [..., K] or None (Categorical policies only).
        deterministic: True gives the mode (key ignored), False a sample (needs a key);
            None (default) means a sample when a key is given, else the mode.

    Returns:
        Integer actions [...] (discrete) or actions [..., D] (continuous, not clipped; the env
        clips them to its bounds).
    """
    if deterministic is None:
        deterministic = key is None
    if not deterministic and key is None:
        raise ValueError("act(deterministic=False) samples and needs a PRNG key")
    dist = policy(network, params, config, obs, mask)
    return dist.mode() if deterministic else dist.sample(key)
