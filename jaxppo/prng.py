"""Random numbers for PPO's hot loops: a faster minibatch permutation.

`permutation` stands in for ``jax.random.permutation`` in the epochs' shuffles: a random
permutation from sorts of one uint32 array instead of JAX's key/value sorts, 1.8 to 4.3
times as fast on CPU (bench/README.md, "Optimization attempts").
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of ``0 .. n - 1`` (int32 [n]), by sorts of one uint32 array.

    ``jax.random.permutation`` sorts random keys with the elements as payload; XLA's CPU sort
    of a single primitive array is several times faster than that key/value sort
    (bench/README.md). Each round here draws random words, puts each element's current
    position in their low b bits (``2**b >= n``) and sorts those words alone: a stable sort by
    the 32 - b random high bits. Ties in the random bits keep the earlier element first, the
    only departure from a uniform permutation; there are as many rounds as make the random
    bits of all rounds at least 3 log2(n) (the rule ``jax.random.permutation`` applies to its
    32-bit keys): 1 round up to n = 256, 2 up to 4,096, 3 up to 65,536. The numbers differ
    from ``jax.random.permutation(key, n)``'s.
    """
    if n <= 1:
        return jnp.zeros((n,), jnp.int32)
    b = max(1, math.ceil(math.log2(n)))
    if b > 24:  # fewer than 8 random bits a round: JAX's own sort
        return jax.random.permutation(key, n).astype(jnp.int32)
    rounds = math.ceil(3 * math.log2(n) / (32 - b))
    positions = jax.lax.iota(np.uint32, n)
    order = None
    for round_key in jax.random.split(key, rounds):
        words = jax.lax.shift_left(jax.random.bits(round_key, (n,), np.uint32), np.uint32(b))
        picked = (jax.lax.sort(words | positions) & np.uint32(2**b - 1)).astype(jnp.int32)
        order = picked if order is None else order[picked]
    return order
