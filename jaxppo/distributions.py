"""Action distributions as pytrees of arrays: a masked Categorical, a masked MultiCategorical
(independent categoricals over one flat logits vector, for MultiDiscrete actions), a diagonal
Gaussian and the state-dependent Gaussian of gSDE (whose noise can also be held over many steps:
``explore(noise)``).

All have the same methods, batched over any leading axes:
``sample(key)``, ``log_prob(action)``, ``entropy()``, ``mode()``.
"""

from __future__ import annotations

import itertools
import math
import operator

import jax
import jax.numpy as jnp
from flax import struct

# A masked logit: large and negative but finite, so softmax gives exactly 0 probability while
# log-probs, entropies and their gradients stay free of inf - inf = NaN.
MASKED_LOGIT = -1e9

_LOG_2PI = math.log(2.0 * math.pi)


class Categorical(struct.PyTreeNode):
    """Categorical over the last axis of ``logits`` [..., K].

    Build with `Categorical.from_logits` to apply an action mask.
    """

    logits: jax.Array

    @classmethod
    def from_logits(cls, logits: jax.Array, mask: jax.Array | None = None) -> Categorical:
        """Unnormalized ``logits`` [..., K]; ``mask`` [..., K] is True for valid actions."""
        if mask is not None:
            logits = jnp.where(mask, logits, MASKED_LOGIT)
        return cls(logits)

    def sample(self, key: jax.Array) -> jax.Array:
        """Integer actions [...] drawn with probabilities softmax(logits)."""
        return jax.random.categorical(key, self.logits, axis=-1)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """log p(action) [...] for integer actions [...]."""
        log_p = jax.nn.log_softmax(self.logits, axis=-1)
        return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        """-sum_k p_k log p_k [...]; masked actions (p_k = 0) contribute exactly 0."""
        log_p = jax.nn.log_softmax(self.logits, axis=-1)
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

    def mode(self) -> jax.Array:
        """The most likely action [...]."""
        return jnp.argmax(self.logits, axis=-1)


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"[..., {shape[-1]}]" if shape else "[] (no action axis)"


def _check_multi_shapes(
    logits_shape: tuple[int, ...], nvec: tuple[int, ...], mask_shape: tuple[int, ...] | None
) -> None:
    """Raise ValueError unless nvec is non-empty positive sizes that split the logits' last axis.

    Checked in Python when the distribution is built: shapes are static, so a bad layout fails
    at trace time with the shapes named rather than as a slicing error deep inside jit.
    """
    if not nvec or any(n <= 0 for n in nvec):
        raise ValueError(f"nvec {nvec} must be a non-empty tuple of positive ints")
    expected = f"[..., {sum(nvec)}]"
    if not logits_shape or logits_shape[-1] != sum(nvec):
        raise ValueError(
            f"logits {_shape_text(logits_shape)} do not match nvec {nvec}: expected {expected}"
        )
    if mask_shape is None:
        return
    if not mask_shape or mask_shape[-1] != sum(nvec):
        raise ValueError(
            f"mask {_shape_text(mask_shape)} does not match nvec {nvec}: expected {expected}"
        )
    if mask_shape != logits_shape:
        raise ValueError(f"mask shape {mask_shape} does not match logits shape {logits_shape}")


class MultiCategorical(struct.PyTreeNode):
    """D independent categoricals over one flat ``logits`` [..., K_1 + ... + K_D].

    Component d owns the K_d = ``nvec[d]`` logits that follow those of components < d (the
    layout of Stable-Baselines3's MultiCategoricalDistribution). An action is D integers
    [..., D], and

        log p(a) = sum_d log softmax(logits_d)[a_d],    H = sum_d H(softmax(logits_d)).

    ``nvec`` is static (pytree aux data): changing it retraces. Build with
    `MultiCategorical.from_logits`, which checks the layout and applies an action mask.
    """

    logits: jax.Array
    nvec: tuple[int, ...] = struct.field(pytree_node=False)

    @classmethod
    def from_logits(
        cls, logits: jax.Array, nvec: tuple[int, ...], mask: jax.Array | None = None
    ) -> MultiCategorical:
        """Unnormalized ``logits`` [..., sum(nvec)]; ``mask`` [..., sum(nvec)], laid out like the
        logits, is True for valid actions. Raises ValueError if the shapes do not fit ``nvec``.
        """
        # operator.index accepts numpy ints but not floats; the tuple keeps nvec hashable.
        nvec = tuple(operator.index(n) for n in nvec)
        _check_multi_shapes(jnp.shape(logits), nvec, None if mask is None else jnp.shape(mask))
        return cls(Categorical.from_logits(logits, mask).logits, nvec)

    def components(self) -> list[Categorical]:
        """The D per-component `Categorical`s, component d over logits [..., nvec[d]]."""
        starts = itertools.accumulate(self.nvec[:-1], initial=0)
        return [
            Categorical(self.logits[..., start : start + n])
            for start, n in zip(starts, self.nvec, strict=True)
        ]

    def sample(self, key: jax.Array) -> jax.Array:
        """Integer actions [..., D], component d drawn with its own key from ``split(key, D)``."""
        keys = jax.random.split(key, len(self.nvec))
        samples = [dist.sample(k) for dist, k in zip(self.components(), keys, strict=True)]
        return jnp.stack(samples, axis=-1).astype(jnp.int32)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """sum_d log p_d(action[..., d]) [...] for integer actions [..., D]."""
        if jnp.ndim(action) == 0 or jnp.shape(action)[-1] != len(self.nvec):
            raise ValueError(
                f"action {_shape_text(jnp.shape(action))} does not match nvec {self.nvec}: "
                f"expected [..., {len(self.nvec)}]"
            )
        per_dim = [dist.log_prob(action[..., d]) for d, dist in enumerate(self.components())]
        return jnp.sum(jnp.stack(per_dim, axis=-1), axis=-1)

    def entropy(self) -> jax.Array:
        """sum_d H_d [...]; masked actions contribute exactly 0, as in `Categorical`."""
        per_dim = [dist.entropy() for dist in self.components()]
        return jnp.sum(jnp.stack(per_dim, axis=-1), axis=-1)

    def mode(self) -> jax.Array:
        """The most likely action [..., D]: the argmax of each component (independence)."""
        modes = [dist.mode() for dist in self.components()]
        return jnp.stack(modes, axis=-1).astype(jnp.int32)


class DiagGaussian(struct.PyTreeNode):
    """Independent normals over the last axis: mean [..., D], log_std broadcast to it."""

    mean: jax.Array
    log_std: jax.Array

    def _log_std(self) -> jax.Array:
        # log_std is state-independent ([D]); broadcast explicitly to the batch [..., D].
        return jnp.broadcast_to(self.log_std, self.mean.shape)

    def sample(self, key: jax.Array) -> jax.Array:
        """mean + std * eps with eps ~ N(0, I), shape [..., D]."""
        noise = jax.random.normal(key, self.mean.shape, self.mean.dtype)
        return self.mean + jnp.exp(self._log_std()) * noise

    def log_prob(self, action: jax.Array) -> jax.Array:
        """sum_d [-(a_d - mu_d)^2 / (2 sigma_d^2) - log sigma_d - log(2 pi) / 2], shape [...]."""
        log_std = self._log_std()
        z = (action - self.mean) * jnp.exp(-log_std)
        per_dim = -0.5 * z**2 - log_std - 0.5 * _LOG_2PI
        return jnp.sum(per_dim, axis=-1)

    def entropy(self) -> jax.Array:
        """sum_d [log sigma_d + (1 + log(2 pi)) / 2], shape [...]."""
        return jnp.sum(self._log_std() + 0.5 * (1.0 + _LOG_2PI), axis=-1)

    def mode(self) -> jax.Array:
        """The mean [..., D]."""
        return self.mean


# Added to a state-dependent variance so that features of all zeros (every relu off) still
# give a finite log-prob.
SDE_VARIANCE_EPS = 1e-6


class StateDependentGaussian(struct.PyTreeNode):
    """The Gaussian of generalized state-dependent exploration (gSDE; Raffin et al. 2022,
    "Smooth Exploration for Robotic Reinforcement Learning").

    The action noise is a linear function of the policy's last features z(s) [..., L]:
    a = mean(s) + z(s) E, with one matrix E [L, D] ~ N(0, sigma^2) (sigma = exp(log_std))
    held over many steps, so that exploration changes smoothly with the state instead of
    jumping at every step (`explore`). For one state, a is Gaussian with

        variance_d(s) = sum_l z_l(s)^2 sigma_ld^2 (+ 1e-6),

    which ``log_prob``, ``entropy`` and ``sample`` (an independent draw) use. The features
    enter the variance without gradient, as in Stable-Baselines3's default
    (``learn_features=False``): the noise scales learn through ``log_std`` alone.

    Attributes:
        mean: [..., D].
        latent: the features z [..., L].
        log_std: [L, D], one log scale per feature and action.
    """

    mean: jax.Array
    latent: jax.Array
    log_std: jax.Array

    def gaussian(self) -> DiagGaussian:
        """The per-state diagonal Gaussian N(mean, variance(s))."""
        z = jax.lax.stop_gradient(self.latent)
        variance = jnp.matmul(z**2, jnp.exp(2.0 * self.log_std)) + SDE_VARIANCE_EPS
        return DiagGaussian(self.mean, 0.5 * jnp.log(variance))

    def explore(self, noise: jax.Array) -> jax.Array:
        """mean + z (sigma * noise): the action under the standard normal noise matrix
        ``noise`` [..., L, D] (the same matrix over many steps gives smooth exploration)."""
        z = jax.lax.stop_gradient(self.latent)
        scales = jnp.broadcast_to(jnp.exp(self.log_std), noise.shape)
        return self.mean + jnp.einsum("...l,...ld->...d", z, scales * noise)

    def sample(self, key: jax.Array) -> jax.Array:
        """An independent draw [..., D] of `gaussian` (a fresh noise matrix per state)."""
        return self.gaussian().sample(key)

    def log_prob(self, action: jax.Array) -> jax.Array:
        """log N(action; mean, variance(s)), shape [...]."""
        return self.gaussian().log_prob(action)

    def entropy(self) -> jax.Array:
        """The entropy of `gaussian`, shape [...]."""
        return self.gaussian().entropy()

    def mode(self) -> jax.Array:
        """The mean [..., D]."""
        return self.mean
