"""Actor-critic networks: the only module that uses flax.

A network is a family chosen by static Config fields: an ``encoder`` ("mlp" on the flattened
observation; "cnn", MinAtar's one 3x3 conv; "nature_cnn", the Nature-DQN torso), then the
``hidden_sizes`` layers, then an optional recurrent ``core`` (GRU or LSTM of ``core_size``),
then heads picked from the env's action space (Categorical, multi-discrete as a product of
Categoricals, diagonal Gaussian). Actor and critic are two separate towers (the default), or
share encoder, hidden layers and core under two linear heads (``shared_encoder``).
Initialization is orthogonal: gain sqrt(2) on conv and hidden layers, 1 on the core's
kernels, 0.01 on the policy head, 1.0 on the value head, zero biases (Huang et al. 2022,
details 2 and 3). Networks are rebuilt from the Config by `make`; only their params are
carried in the train state.

Callers go through the module-level functions, which apply every policy switch of the Config:

    dist, value = apply(network, params, config, obs, mask)   # a feed-forward step
    value(network, params, config, obs)                       # critic only
    act(network, params, config, obs, key, mask)              # sample, or the mode without key

Every network has a carry, None without a recurrent core. The rollout steps it with `step`
(the carry zeroed where an episode starts), the update replays whole sequences with
`sequence` from the carries the rollout started from, recomputed values use
`critic_sequence`, and a final observation is valued by `next_value` from the carry that saw
its episode. Without a core these reduce to `apply` and `value`.

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

Every Dense layer, every conv (as windows times a matrix, `Conv`) and both products of a
recurrent cell multiply by `matmul`, a custom VJP (so the networks have reverse-mode
derivatives only) whose weight gradient takes x^T from `backend.transposed`.
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
from jaxppo.config import MATMUL_DTYPES, Config, fail

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}

HIDDEN_GAIN = math.sqrt(2.0)
CORE_GAIN = 1.0
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


CONV_LAYERS = {
    # (features, kernel, stride) per layer, VALID padding, relu after each.
    # MinAtar's network (Young & Tian 2019): one 3x3 conv of 16 channels on the 10x10 grid.
    "cnn": ((16, 3, 1),),
    # The Nature-DQN torso (Mnih et al. 2015) for 84x84 frames.
    "nature_cnn": ((32, 8, 4), (64, 4, 2), (64, 3, 1)),
}


def conv_output_shape(encoder: str, observation_shape: Sequence[int]) -> tuple[int, ...]:
    """The shape [H', W', C'] the CNN ``encoder`` gives for one observation [H, W, C]; a
    side with no room left for a kernel comes out as 0 or less."""
    height, width = observation_shape[0], observation_shape[1]
    channels = observation_shape[2]
    for features, kernel, stride in CONV_LAYERS[encoder]:
        height = (height - kernel) // stride + 1
        width = (width - kernel) // stride + 1
        channels = features
    return height, width, channels


def patches(x: jax.Array, kernel: int, stride: int) -> jax.Array:
    """The kernel x kernel windows of x [B, H, W, C] at ``stride`` (VALID), side by side:
    [B, H', W', kernel * kernel * C], window entries ordered (row, col, channel) like a
    conv kernel [kh, kw, C, C'] reshaped to [kh kw C, C']."""
    height = (x.shape[1] - kernel) // stride + 1
    width = (x.shape[2] - kernel) // stride + 1
    windows = [x[:, i:i + stride * (height - 1) + 1:stride, j:j + stride * (width - 1) + 1:stride]
               for i in range(kernel) for j in range(kernel)]
    return jnp.concatenate(windows, axis=-1)


class Conv(nn.Module):
    """A VALID convolution as windows times a matrix: `patches`, then `matmul` with the
    kernel [k, k, C, C'] viewed as [k k C, C'], plus a bias.

    The same numbers as ``lax.conv`` up to float rounding, but the product, forward and
    backward, is the Dense layers' `matmul`: on a CPU, XLA's own convolution gradients are
    several times slower than this matmul, and ``matmul_dtype`` applies to convs too.
    """

    features: int
    kernel: int
    stride: int
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.zeros,
                            (self.kernel, self.kernel, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        windows = patches(x, self.kernel, self.stride)
        flat = kernel.reshape(self.kernel * self.kernel * channels, self.features)
        out = matmul(windows, flat, self.matmul_dtype)
        return out + jnp.reshape(bias, (1,) * (out.ndim - 1) + (self.features,))


class GRU(nn.Module):
    """A GRU cell; carry h [..., H].

    r = sigmoid(x W_r + h U_r + b_r), z = sigmoid(x W_z + h U_z + b_z),
    n = tanh(x W_n + b_n + r * (h U_n + c_n)), h' = (1 - z) * n + z * h.
    The input and recurrent products are one matmul each ([I, 3H] and [H, 3H]).
    """

    size: int
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        gx = _dense(3 * self.size, "input", self.matmul_dtype)(x)
        gh = _dense(3 * self.size, "recurrent", self.matmul_dtype)(h)
        xr, xz, xn = jnp.split(gx, 3, axis=-1)
        hr, hz, hn = jnp.split(gh, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1.0 - z) * n + z * h
        return h, h


class LSTM(nn.Module):
    """An LSTM cell; carry (c, h), each [..., H].

    [i, f, g, o] = x W + h U + b (one matmul each, [I, 4H] and [H, 4H]);
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g), h' = sigmoid(o) * tanh(c').
    """

    size: int
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, carry, x: jax.Array):
        c, h = carry
        gates = (_dense(4 * self.size, "input", self.matmul_dtype)(x)
                 + _dense(4 * self.size, "recurrent", self.matmul_dtype)(h))
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


_CORES = {"gru": GRU, "lstm": LSTM}


def zero_carry(core: str, size: int, batch_shape: tuple[int, ...]):
    """The carry of a fresh episode: zeros, h [*batch, H] (GRU) or (c, h) (LSTM); None
    without a recurrent core."""
    if core == "none":
        return None
    zeros = jnp.zeros((*batch_shape, size), jnp.float32)
    return (zeros, zeros) if core == "lstm" else zeros


def reset_carry(carry, start: jax.Array):
    """``carry`` with zeros where ``start`` [*batch] is True (an episode begins there)."""
    return jax.tree.map(lambda x: jnp.where(start[..., None], jnp.zeros_like(x), x), carry)


class Tower(nn.Module):
    """Observation [*batch, *obs] -> encoder -> hidden layers -> optional core -> head.

    The encoder is "mlp" (the observation flattened), or a CNN over the last three axes
    [H, W, C] ("cnn", "nature_cnn"; relu after every conv) whose output is flattened (with a
    ``grid``, the CNN reads the first H W C values of a flat observation as that grid and the
    rest joins its flattened output); then
    ``hidden_sizes`` Dense layers with ``activation``; then, with a recurrent ``core``, a
    GRU or LSTM of ``core_size`` whose carry is zeroed where ``start`` is True; then a linear
    head of ``out_features`` (none when 0: the tower gives its features).

    Layer names (what `init` reads the gains from): conv_i, hidden_i, core, head.
    """

    hidden_sizes: Sequence[int]
    activation: str
    out_features: int
    obs_ndim: int = 1
    encoder: str = "mlp"
    core: str = "none"
    core_size: int = 128
    matmul_dtype: str = "float32"
    grid: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, carry, x: jax.Array, start: jax.Array | None = None,
                 stage: str = "all"):
        """The tower on x, or one stage of it: "features" (encoder and hidden layers, no
        carry), "core" (x: features; the core's step), "body" (all but the head: (carry,
        the head's input)), "head" (x: the head's input)."""
        if stage in ("all", "body", "features"):
            x = self._features(x)
            if stage == "features":
                return x
        if stage in ("all", "body", "core") and self.core != "none":
            if start is not None:
                carry = reset_carry(carry, start)
            carry, x = _CORES[self.core](self.core_size, self.matmul_dtype, name="core")(carry, x)
            if stage == "core":
                return carry, x
        if stage == "body":
            return carry, x
        if self.out_features:
            x = _dense(self.out_features, "head", self.matmul_dtype)(x)
        return carry, x

    def _features(self, x: jax.Array) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        batch = x.shape[:x.ndim - self.obs_ndim]
        if self.encoder == "mlp":
            x = jnp.reshape(x, (*batch, -1))
        else:
            rest = None
            if self.grid:
                size = math.prod(self.grid)
                x, rest = jnp.reshape(x[..., :size], (*batch, *self.grid)), x[..., size:]
            x = jnp.reshape(x, (-1, *x.shape[x.ndim - 3:]))
            for i, (features, kernel, stride) in enumerate(CONV_LAYERS[self.encoder]):
                x = nn.relu(Conv(features, kernel, stride, self.matmul_dtype,
                                 name=f"conv_{i}")(x))
            x = jnp.reshape(x, (*batch, -1))
            if rest is not None:
                x = jnp.concatenate([x, rest], axis=-1)
        for i, width in enumerate(self.hidden_sizes):
            x = act(_dense(width, f"hidden_{i}", self.matmul_dtype)(x))
        return x


class Head(nn.Module):
    """A linear head named "head" (the policy or value head over a shared torso)."""

    out_features: int
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _dense(self.out_features, "head", self.matmul_dtype)(x)


class ActorCritic(nn.Module):
    """Network input [*batch, *obs] -> (action distribution over [*batch], value [*batch]).

    The input is the observation, or its Fourier encoding ([..., 2F]) when the config has
    Fourier features; use the module-level functions, which encode and apply temperature and
    masks.

    The actor and the critic are two `Tower`s ("actor", "critic"), or, with
    ``shared_encoder``, one torso ("torso": encoder, hidden layers, core) under two linear
    heads. A recurrent network's carry is the torso's, or (actor's, critic's) for two towers.

    Methods: ``step(carry, x, start) -> (carry, dist, value)`` for one time step;
    ``critic_step(carry, x, start) -> (carry, value)`` (only the critic's part of the carry
    changes); ``__call__(x)``, ``value(x)``, ``policy(x)`` from a fresh carry (the first step
    of an episode; for a network without a core, simply the network at x).

    Attributes:
        hidden_sizes: widths of the hidden layers of each tower (or of the torso).
        activation: "tanh" or "relu".
        num_actions: K for a Categorical policy (the sum of ``nvec`` for a multi-discrete one);
            0 for a Gaussian one.
        action_size: D for a Gaussian policy (ignored when ``num_actions`` > 0).
        squash_mean: Gaussian mean = low + (tanh(raw) + 1) / 2 * (high - low).
        action_low, action_high: the D action bounds (floats; needed by ``squash_mean``).
        matmul_dtype: "float32", or "bfloat16" for every layer's matmul (`bfloat16_matmul`).
        nvec: component sizes of a multi-discrete policy; () otherwise.
        obs_ndim: axes of one network input (1 for vectors, 3 for [H, W, C] grids).
        grid: [H, W, C] at the front of a flat input, for a CNN encoder (the env's
            ``observation_grid``); () otherwise.
        encoder, core, core_size, shared_encoder: as the Config fields.
        sde_size: L > 0 makes a Gaussian policy gSDE's (`distributions.StateDependentGaussian`)
            over the actor's last L features, with log_std [L, D]; 0: log_std [D].
    """

    hidden_sizes: Sequence[int]
    activation: str
    num_actions: int
    action_size: int = 0
    squash_mean: bool = False
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    matmul_dtype: str = "float32"
    nvec: tuple[int, ...] = ()
    obs_ndim: int = 1
    encoder: str = "mlp"
    core: str = "none"
    core_size: int = 128
    shared_encoder: bool = False
    grid: tuple[int, ...] = ()
    sde_size: int = 0

    def setup(self) -> None:
        out = self.num_actions or self.action_size
        tower = functools.partial(Tower, tuple(self.hidden_sizes), self.activation,
                                  obs_ndim=self.obs_ndim, encoder=self.encoder, core=self.core,
                                  core_size=self.core_size, matmul_dtype=self.matmul_dtype,
                                  grid=tuple(self.grid))
        if self.shared_encoder:
            self.torso = tower(0)
            self.actor = Head(out, self.matmul_dtype)
            self.critic = Head(1, self.matmul_dtype)
        else:
            self.actor = tower(out)
            self.critic = tower(1)
        if not self.num_actions:
            # A free parameter (set to Config.init_log_std by init): the log std of each action,
            # or with gSDE of each (feature, action) pair.
            shape = (self.sde_size, self.action_size) if self.sde_size else (self.action_size,)
            self.log_std = self.param("log_std", nn.initializers.zeros, shape)

    @property
    def recurrent(self) -> bool:
        return self.core != "none"

    def initial_carry(self, batch_shape: tuple[int, ...]):
        """Zeros for every env of ``batch_shape``; None without a recurrent core."""
        one = zero_carry(self.core, self.core_size, batch_shape)
        if one is None or self.shared_encoder:
            return one
        return (one, one)

    def _first(self, x: jax.Array):
        """(carry, x, start) of the first step of an episode at x."""
        batch = x.shape[:x.ndim - self.obs_ndim]
        start = jnp.ones(batch, jnp.bool_) if self.recurrent else None
        return self.initial_carry(batch), x, start

    def __call__(self, x: jax.Array):
        _, dist, value = self.step(*self._first(x))
        return dist, value

    def value(self, x: jax.Array) -> jax.Array:
        """V at the input, shape [*batch]."""
        return self.critic_step(*self._first(x))[1]

    def policy(self, x: jax.Array):
        """The action distribution at the input, batched over [*batch] (temperature 1, no
        mask)."""
        return self.step(*self._first(x))[1]

    def step(self, carry, x: jax.Array, start: jax.Array | None):
        """One time step: (carry, distribution, value)."""
        if self.shared_encoder:
            carry, latent = self.torso(carry, x, start)
            logits, value = self.actor(latent), self.critic(latent)[..., 0]
        else:
            actor_carry, critic_carry = (None, None) if carry is None else carry
            # The head's input apart, for gSDE's noise; the same numbers as the whole tower.
            actor_carry, latent = self.actor(actor_carry, x, start, stage="body")
            logits = self.actor(None, latent, stage="head")[1]
            critic_carry, value = self.critic(critic_carry, x, start)
            value = value[..., 0]
            carry = None if carry is None else (actor_carry, critic_carry)
        return carry, self._distribution(logits, latent), value

    def critic_step(self, carry, x: jax.Array, start: jax.Array | None):
        """One time step of the critic alone: (carry, value)."""
        if self.shared_encoder:
            carry, features = self.torso(carry, x, start)
            return carry, self.critic(features)[..., 0]
        actor_carry, critic_carry = (None, None) if carry is None else carry
        critic_carry, value = self.critic(critic_carry, x, start)
        return (None if carry is None else (actor_carry, critic_carry)), value[..., 0]

    # The stages of `step`, so that a sequence runs the encoder, hidden layers and heads
    # batched over all its time steps and scans only the core.

    def features(self, x: jax.Array, critic_only: bool = False):
        """Encoder and hidden layers: the torso's features, or (actor's, critic's)."""
        if self.shared_encoder:
            return self.torso(None, x, stage="features")
        critic = self.critic(None, x, stage="features")
        return (None if critic_only else self.actor(None, x, stage="features")), critic

    def core_step(self, carry, features, start: jax.Array, critic_only: bool = False):
        """One step of the core(s) on features: (carry, the core's output)."""
        if self.shared_encoder:
            return self.torso(carry, features, start, stage="core")
        actor_carry, critic_carry = carry
        critic_carry, critic = self.critic(critic_carry, features[1], start, stage="core")
        if critic_only:
            return (actor_carry, critic_carry), (None, critic)
        actor_carry, actor = self.actor(actor_carry, features[0], start, stage="core")
        return (actor_carry, critic_carry), (actor, critic)

    def heads(self, outputs, critic_only: bool = False):
        """The heads on the cores' outputs: (distribution, value), or the value alone."""
        if self.shared_encoder:
            value = self.critic(outputs)[..., 0]
            if critic_only:
                return value
            return self._distribution(self.actor(outputs), outputs), value
        value = self.critic(None, outputs[1], stage="head")[1][..., 0]
        if critic_only:
            return value
        logits = self.actor(None, outputs[0], stage="head")[1]
        return self._distribution(logits, outputs[0]), value

    def _distribution(self, out: jax.Array, latent: jax.Array):
        """The policy from the actor head's output and its input ``latent`` (gSDE's
        features)."""
        if self.nvec:
            return distributions.MultiCategorical.from_logits(out, self.nvec)
        if self.num_actions:
            return distributions.Categorical.from_logits(out)
        if self.squash_mean:
            out = squash(out, self.action_low, self.action_high)
        if self.sde_size:
            return distributions.StateDependentGaussian(out, latent, self.log_std)
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


def check(config: Config, env) -> None:
    """Check the network fields of ``config`` against ``env``; a `ValueError` names the field:
    a CNN needs [H, W, C] observations, or flat ones that begin with such a grid (the env's
    ``observation_grid``), which its convolutions fit; Fourier features need flat ones; gSDE
    needs continuous actions."""
    shape = tuple(env.observation_shape)
    if config.encoder != "mlp":
        shape = _grid(env) or shape
        if len(shape) != 3:
            fail("encoder", config.encoder,
                 f"needs image observations [H, W, C] or a grid among them; {config.env_id} "
                 f"has observations of shape {list(shape)} (use 'mlp')")
        out = conv_output_shape(config.encoder, shape)
        if min(out[:2]) < 1:
            fail("encoder", config.encoder,
                 f"its convolutions do not fit {config.env_id}'s {list(shape)} observations "
                 f"(they would leave {list(out[:2])}); 'cnn' fits grids from 3x3, "
                 "'nature_cnn' frames from 36x36")
    if config.fourier_features and len(env.observation_shape) != 1:
        fail("fourier_features", config.fourier_features,
             f"needs flat observations; {config.env_id} has observations of shape "
             f"{list(shape)}")
    if config.gsde and env.action_space.discrete:
        fail("gsde", config.gsde,
             f"applies to continuous actions only; {config.env_id}'s are discrete (use False)")


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
        nvec=tuple(getattr(space, "nvec", ())),
        obs_ndim=len(input_shape(config, env)),
        encoder=config.encoder,
        core=config.core,
        core_size=config.core_size,
        shared_encoder=bool(config.shared_encoder),
        grid=(_grid(env) or ()) if config.encoder != "mlp" else (),
        sde_size=sde_size(config) if config.gsde and not space.discrete else 0,
    )


def sde_size(config: Config) -> int:
    """L, the width of the actor's last features, on which gSDE's noise is linear: the core's
    width, else the last hidden layer's (`Config.gsde` needs one of them)."""
    return config.core_size if config.core != "none" else config.hidden_sizes[-1]


def _grid(env) -> tuple[int, ...] | None:
    """The grid [H, W, C] at the front of ``env``'s flat observations, or None
    (`jaxppo.envs.core.SuiteEnv.observation_grid`; other envs have none)."""
    grid = getattr(env, "observation_grid", None)
    return tuple(grid) if grid else None


def input_shape(config: Config, env) -> tuple[int, ...]:
    """Shape of one network input: [2F] with Fourier features, else the observation's."""
    if config.fourier_features:
        return (2 * config.fourier_features,)
    return tuple(env.observation_shape)


def input_size(config: Config, env) -> int:
    """Values in one network input: 2F with Fourier features, else the observation size O."""
    return math.prod(input_shape(config, env))


def init(config: Config, env, key: jax.Array):
    """Initial params: orthogonal weights, zero biases, log_std = config.init_log_std and,
    with Fourier features, B = fourier_scale * N(0, 1) [O, F] at ``params["params"]["fourier_B"]``.

    Pure in the dynamic leaves (init_log_std and fourier_scale may be traced or vmapped). The
    network weights use ``key`` itself, so they do not depend on the Fourier switch; B uses
    ``fold_in(key, 1)``.

    Every kernel is orthogonal as ``jax.nn.initializers.orthogonal`` makes it (the Q of a
    Gaussian matrix's QR, signs fixed by R's diagonal; a conv kernel [kh, kw, C_in, C_out] as
    the matrix [kh kw C_in, C_out]), but the Gaussian samples of all kernels come from one
    normal draw, cut in order: one random-number kernel for XLA to compile instead of one per
    layer. Gains: sqrt(2) for conv and hidden layers, 1 for a recurrent core's kernels, 0.01
    for the policy head, 1 for the value head.
    """
    network = make(config, env)
    dummy = jnp.zeros((1, *input_shape(config, env)), jnp.float32)
    shapes = jax.eval_shape(
        lambda k: network.init(k, network.initial_carry((1,)), dummy,
                               jnp.ones((1,), jnp.bool_), method="step"),
        jax.random.key(0))

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
    """Gain of the kernel at ``path`` (.../actor|critic|torso/conv_i|hidden_i|core/.../head)."""
    names = [entry.key for entry in path]
    if "core" in names:
        return CORE_GAIN
    layer = names[-2]
    if layer.startswith(("hidden_", "conv_")):
        return HIDDEN_GAIN
    return POLICY_GAIN if "actor" in names else VALUE_GAIN


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
        rows, cols = math.prod(leaf.shape[:-1]), leaf.shape[-1]
        tall = (max(rows, cols), min(rows, cols))
        z = normal[offset:offset + math.prod(tall)].reshape(tall)
        offset += math.prod(tall)
        q, r = jnp.linalg.qr(z)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        out.append((_kernel_gain(path) * (q.T if rows < cols else q)).reshape(leaf.shape))
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
    """Apply temperature and mask to the module's distribution (discrete ones only)."""
    if isinstance(dist, distributions.MultiCategorical):
        return distributions.MultiCategorical.from_logits(dist.logits / config.temperature,
                                                          dist.nvec, mask)
    if isinstance(dist, distributions.Categorical):
        return distributions.Categorical.from_logits(dist.logits / config.temperature, mask)
    if mask is not None:
        raise ValueError("action masks apply to discrete policies only; got a mask for a "
                         "Gaussian policy")
    return dist


def apply(network: ActorCritic, params, config: Config, obs: jax.Array,
          mask: jax.Array | None = None):
    """The policy and value at obs, with every switch of ``config`` applied; for a
    recurrent network, from a fresh carry (the first step of an episode: see `step`).

    Discrete: ``Categorical.from_logits(logits / temperature, mask)``, i.e. the policy is
    softmax(logits / temperature) over the valid actions (per component for a multi-discrete
    policy). Continuous: DiagGaussian(mean, log_std), mean squashed into the bounds when
    ``squash_mean``.

    Args:
        network: `make(config, env)`.
        params: `init(config, env, key)` (or trained params of the same layout).
        config: the run's Config; ``temperature`` may be traced.
        obs: observations [*batch, *obs] (already normalized by the caller).
        mask: valid actions [*batch, K] (True = allowed), or None; discrete policies only.

    Returns:
        (dist, value): a distribution batched over [*batch] and V(obs) [*batch].
    """
    dist, value_ = network.apply(_module_params(params), encode(params, config, obs))
    return _adjust(dist, config, mask), value_


def value(network: ActorCritic, params, config: Config, obs: jax.Array) -> jax.Array:
    """V(obs) [*batch], the critic alone (Fourier-encoded when configured; a fresh carry)."""
    return network.apply(_module_params(params), encode(params, config, obs), method="value")


def policy(network: ActorCritic, params, config: Config, obs: jax.Array,
           mask: jax.Array | None = None):
    """The action distribution of `apply` without evaluating the critic."""
    dist = network.apply(_module_params(params), encode(params, config, obs), method="policy")
    return _adjust(dist, config, mask)


def act(network: ActorCritic, params, config: Config, obs: jax.Array,
        key: jax.Array | None = None, mask: jax.Array | None = None,
        deterministic: bool | None = None) -> jax.Array:
    """Actions at obs [*batch, *obs]: the mode, or a sample of the policy of `apply`.

    Args:
        key: PRNG key for sampling; None means deterministic.
        mask: valid actions [..., K] or None (discrete policies only).
        deterministic: True gives the mode (key ignored), False a sample (needs a key);
            None (default) means a sample when a key is given, else the mode.

    Returns:
        Integer actions [*batch] (discrete), [*batch, D] (multi-discrete), or actions
        [*batch, D] (continuous, not clipped; the env clips them to its bounds).
    """
    if deterministic is None:
        deterministic = key is None
    if not deterministic and key is None:
        raise ValueError("act(deterministic=False) samples and needs a PRNG key")
    dist = policy(network, params, config, obs, mask)
    return dist.mode() if deterministic else dist.sample(key)


# Recurrent-aware functions: every network has a carry (None without a recurrent core), and
# these are what the rollout, the update and evaluation call.


def initial_carry(network: ActorCritic, batch_shape: tuple[int, ...]):
    """The carry of fresh episodes in envs [*batch_shape]: zeros, or None without a core."""
    return network.initial_carry(tuple(batch_shape))


def step(network: ActorCritic, params, config: Config, carry, obs: jax.Array,
         start: jax.Array | None, mask: jax.Array | None = None):
    """One time step in envs [*batch]: ``(carry, dist, value)``.

    The carry is zeroed where ``start`` [*batch] is True (``obs`` begins an episode) before
    the core reads ``obs``. Without a recurrent core, the carry stays None, ``start`` is
    ignored and the result is `apply`'s.
    """
    carry, dist, value_ = network.apply(_module_params(params), carry,
                                        encode(params, config, obs), start, method="step")
    return carry, _adjust(dist, config, mask), value_


def sequence(network: ActorCritic, params, config: Config, carry, obs: jax.Array,
             start: jax.Array | None, mask: jax.Array | None = None):
    """The network along sequences obs [T, *batch, *obs] from ``carry`` [*batch, ...]: what
    the rollout computed step by step, replayed. Returns (dist [T, *batch], value [T, *batch]).

    Without a recurrent core it is one batched `apply`. With one, the encoder, hidden layers
    and heads run batched over [T, *batch] and a ``lax.scan`` over T runs only the core (its
    carry zeroed where ``start`` [T, *batch] is True): the same numbers as T `step`s, up to
    float rounding, with the big matmuls outside the loop.
    """
    if not network.recurrent:
        return apply(network, params, config, obs, mask)
    module_params = _module_params(params)
    features = network.apply(module_params, encode(params, config, obs), method="features")

    def body(carry, inputs):
        features_t, start_t = inputs
        return network.apply(module_params, carry, features_t, start_t, method="core_step")

    _, outputs = jax.lax.scan(body, carry, (features, start))
    dist, value_ = network.apply(module_params, outputs, method="heads")
    return _adjust(dist, config, mask), value_


def critic_sequence(network: ActorCritic, params, config: Config, carry, obs: jax.Array,
                    start: jax.Array | None):
    """The critic along sequences obs [T, *batch, *obs] from ``carry``: (V [T, *batch], the
    carry after each step [T, *batch, ...]; None without a recurrent core)."""
    if not network.recurrent:
        return value(network, params, config, obs), None
    module_params = _module_params(params)
    features = network.apply(module_params, encode(params, config, obs), True,
                             method="features")

    def body(carry, inputs):
        features_t, start_t = inputs
        carry, output = network.apply(module_params, carry, features_t, start_t, True,
                                      method="core_step")
        return carry, (output, carry)

    _, (outputs, carries) = jax.lax.scan(body, carry, (features, start))
    return network.apply(module_params, outputs, True, method="heads"), carries


def next_value(network: ActorCritic, params, config: Config, carry, obs: jax.Array
               ) -> jax.Array:
    """V(obs) [*batch] of observations that continue an episode from ``carry`` (the carry
    after the previous observation; None without a core): the value of a rollout's final
    observations, seen by the hidden state that saw the episode so far."""
    if not network.recurrent:
        return value(network, params, config, obs)
    start = jnp.zeros(obs.shape[:obs.ndim - network.obs_ndim], jnp.bool_)
    _, value_ = network.apply(_module_params(params), carry, encode(params, config, obs), start,
                              method="critic_step")
    return value_
