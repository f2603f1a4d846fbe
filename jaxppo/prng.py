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
``jax_threefry_partitionable=False`` are used as they are. On CPU the rollout and `evaluate`
draw on a fast key (`jaxppo.backend.rollout_key`); the shuffle keeps JAX's keys, which it
runs faster on.

`permutation` stands in for ``jax.random.permutation`` in the epochs' shuffles. Up to 256
elements it sorts one uint32 array (`sort_permutation`; JAX sorts key/value pairs, a slower
path on CPU). Above, it maps every index through a keyed bijection, an 8-round Feistel
network (`bijective_permutation`): no sort at all, O(n) work.

The figures behind each choice are in bench/README.md ("Optimization attempts").
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
    return _computed_once(x1, k1), _computed_once(x2, k1)


def _computed_once(x: jax.Array, word: jax.Array) -> jax.Array:
    """``x`` unchanged, divided by a 1 XLA cannot fold (``word | 1`` is never 0), so that XLA
    computes the chain of operations behind ``x`` once.

    XLA copies cheap elementwise operations into every fusion that reads their result. A
    hash is hundreds of them: the rollout's threefry was copied into a split's outputs, the
    auto-reset's selects and each transition write (a dozen kernels of 500 to 1,100
    operations per step on Pendulum), the shuffle's Feistel permutation into each shuffled
    array's gather. To XLA an integer division by a non-constant is expensive, and it does not
    copy expensive operations, so the chain becomes one kernel and its readers stay small,
    and there are fewer kernels for XLA to compile.
    """
    word = word | np.uint32(1)
    return x // (word // word)


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


SORT_MAX = 256
"""`permutation` sorts up to this many elements and applies the keyed bijection above it."""

FEISTEL_ROUNDS = 8
_MIX = (np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35))


def _check_size(n, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{name}: n={n!r} must be a count of elements, an integer >= 0")


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of ``0 .. n - 1`` (int32 [n]) for the epochs' shuffles.

    Up to `SORT_MAX` elements: `sort_permutation`. Above: `bijective_permutation`, which needs
    no sort, so O(n) work.
    The numbers differ from ``jax.random.permutation(key, n)``'s.
    """
    _check_size(n, "permutation")
    if n <= SORT_MAX:
        return sort_permutation(key, n)
    return bijective_permutation(key, n)


def sort_permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of ``0 .. n - 1`` (int32 [n]), by sorts of one uint32 array.

    ``jax.random.permutation`` sorts random keys with the elements as payload; XLA's CPU sort
    of a single primitive array is several times faster than that key/value sort
    (bench/README.md). Each round here draws random words, puts each element's current
    position in their low b bits (``2**b >= n``) and sorts those words alone: a stable sort by
    the 32 - b random high bits. Ties in the random bits keep the earlier element first, the
    only departure from a uniform permutation; there are as many rounds as make the random
    bits of all rounds at least 3 log2(n) (the rule ``jax.random.permutation`` applies to its
    32-bit keys): 1 round up to n = 256, 2 up to 4,096, 3 up to 65,536.
    """
    _check_size(n, "sort_permutation")
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


def _mix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: a bijection of uint32 in which every input bit flips
    each output bit with probability close to 1/2."""
    h = (h ^ (h >> np.uint32(16))) * _MIX[0]
    h = (h ^ (h >> np.uint32(13))) * _MIX[1]
    return h ^ (h >> np.uint32(16))


def feistel(round_keys: jax.Array, x: jax.Array, bits: int) -> jax.Array:
    """A bijection of ``[0, 2**bits)`` chosen by ``round_keys`` (uint32 [R]), applied to the
    uint32 array ``x``: R rounds of a Feistel network whose halves are bits // 2 and
    bits - bits // 2 bits wide. A round maps (high part H, low part L) to (L, H xor f(L)),
    f being `_mix32` of L xor the round's key, cut to H's width; L moves to the top, so the
    two widths alternate. Each round is invertible whatever f is."""
    low = bits // 2
    high = bits - low
    for i in range(round_keys.shape[0]):
        h, lo = x >> np.uint32(low), x & np.uint32((1 << low) - 1)
        f = _mix32(lo ^ round_keys[i]) & np.uint32((1 << high) - 1)
        x = (lo << np.uint32(high)) | (h ^ f)
        low, high = high, low
    return _computed_once(x, round_keys[0])


def bijective_permutation(key: jax.Array, n: int, rounds: int = FEISTEL_ROUNDS
                          ) -> jax.Array:
    """A random permutation of ``0 .. n - 1`` (int32 [n]) as a keyed bijection, no sort.

    `feistel` with ``rounds`` random 32-bit round keys is a bijection F of ``[0, 2**b)``,
    ``2**b >= n``; the permutation is F(0), F(1), ... with the values n and above left out
    (an order-preserving compaction: a prefix sum of the kept flags gives each kept value its
    place). Every step is elementwise or a prefix sum: O(n), no loop, so no seed waits for
    another under vmap and runs sharded over devices exchange nothing. Data loaders shuffle
    their indices with keyed bijections the same way.

    The permutation is pseudo-random: the keys choose it from a family of at most
    ``2**(32 * rounds)``, not uniformly from all n! orders. Every element's position is
    uniform and the orders pass the checks in tests/test_prng.py, but some global properties
    are fixed: on a power-of-two n the parity of the permutation is the same for every key
    (each round's xor step is an even permutation, and its rotation of the bits a fixed one).
    """
    _check_size(n, "bijective_permutation")
    if n <= 1:
        return jnp.zeros((n,), jnp.int32)
    if n > 2**31:
        raise ValueError(f"n={n}: bijective_permutation handles at most 2**31 elements")
    bits = max(2, math.ceil(math.log2(n)))
    round_keys = jax.random.bits(key, (rounds,), np.uint32)
    values = feistel(round_keys, jax.lax.iota(np.uint32, 2**bits), bits).astype(jnp.int32)
    if n == 2**bits:
        return values
    kept = values < n
    place = jnp.where(kept, jnp.cumsum(kept.astype(jnp.int32)) - 1, n)
    return jnp.zeros((n,), jnp.int32).at[place].set(values, mode="drop")
