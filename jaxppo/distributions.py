"""Action distributions as pytrees of arrays: a masked Categorical and a diagonal Gaussian.

Both have the same methods, batched over any leading axes:
``sample(key)``, ``log_prob(action)``, ``entropy()``, ``mode()``.
"""

from __future__ import annotations

import math

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
