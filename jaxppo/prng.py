"""Random numbers for PPO's hot loops: JAX's threefry in fewer kernels, and a faster
minibatch permutation.

JAX lowers its threefry2x32 hash on CPU as a five-iteration while loop (a smaller program to
compile). A rollout hashes in every step (per-env keys, action sampling, the env's own
auto-resets), so it runs several of those loops per step. `UNROLLED` is the same hash, key
layout and split, fold_in and random-bits algorithms as JAX's threefry2x32 (its default,
partitionable variant) with the 20 rounds written out in plain operations, which XLA fuses
into one kernel per call site. `fast` moves a threefry key onto it without changing the key's
data, so every number drawn is the one JAX's threefry draws (tests/test_prng.py checks split,
fold_in, bits, uniform, normal, categorical, bernoulli and permutation). Keys of other
implementations, legacy uint32 keys, and threefry keys under
``jax_threefry_partitionable=False`` are used as they are. `train.step` gives the rollout a
fast key (1.09x at 1 and 8 seeds, 1.05x at 256 envs, 1.01x on Pendulum) and so does
`evaluate`; the shuffle keeps JAX's keys, since it ran slower on these.

`permutation` stands in for ``jax.random.permutation`` in the epochs' shuffles: a random
permutation from sorts of one uint32 array instead of JAX's key/value sorts, 1.8 to 4.3
times as fast on CPU.

Measured in bench/README.md ("Optimization attempts").
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import random as jex_random

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
    return jax.lax.shift_left(x, np.uint32(bits)) | jax.lax.shift_right_logical(
        x, np.uint32(32 - bits))


def hash_2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 (20 rounds) of the counter pair (x1, x2) under the key (k1, k2).

    k1 and k2 are uint32 scalars; x1 and x2 uint32 arrays of one shape.
    """
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = x1 ^ _rotate_left(x2, r)
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _counters(shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """The high and low 32 bits of a row-major uint64 counter over ``shape``."""
    size = int(np.prod(shape, dtype=np.int64))
    if size >= 2**32:
        raise NotImplementedError(f"{size} random words in one call (at most 2**32 - 1)")
    low = jax.lax.iota(np.uint32, size).reshape(shape)
    return jnp.zeros(shape, np.uint32), low


def _split(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    bits1, bits2 = hash_2x32(key[0], key[1], *_counters(tuple(shape)))
    return jnp.stack([bits1, bits2], axis=-1)


def _fold_in(key: jax.Array, data: jax.Array) -> jax.Array:
    data = jnp.asarray(data, np.uint32).reshape(1)
    bits1, bits2 = hash_2x32(key[0], key[1], jnp.zeros(1, np.uint32), data)
    return jnp.concatenate([bits1, bits2])


def _random_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    bits1, bits2 = hash_2x32(key[0], key[1], *_counters(tuple(shape)))
    if bit_width == 64:
        dtype = jnp.dtype("uint64")
        high = jax.lax.convert_element_type(bits1, dtype)
        return jax.lax.shift_left(high, jnp.asarray(32, dtype)) | jax.lax.convert_element_type(
            bits2, dtype)
    word = bits1 ^ bits2
    return word if bit_width == 32 else jax.lax.convert_element_type(
        word, jnp.dtype(f"uint{bit_width}"))


def _seed(seed: jax.Array) -> jax.Array:
    return jax.random.key_data(jax.random.key(seed, impl="threefry2x32"))


UNROLLED = jex_random.define_prng_impl(
    key_shape=(2,), seed=_seed, split=_split, random_bits=_random_bits, fold_in=_fold_in,
    name="jaxppo_threefry2x32", tag="jfry")


def is_key(x) -> bool:
    """Whether ``x`` is a typed PRNG key array (or its `jax.ShapeDtypeStruct`)."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def fast(key: jax.Array) -> jax.Array:
    """``key`` on `UNROLLED` when it is a typed threefry2x32 key; otherwise ``key`` itself."""
    if not is_key(key) or not jax.config.jax_threefry_partitionable:
        return key
    if str(jax.random.key_impl(key)) != "threefry2x32":
        return key
    return jax.random.wrap_key_data(jax.random.key_data(key), impl=UNROLLED)


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
