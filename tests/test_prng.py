"""Tests of `jaxppo.prng.permutation`: a plain-loop reference, permutations of every size,
uniformity, and the rounds rule."""

import collections
import math

import jax
import numpy as np
import pytest

from jaxppo import prng


def _reference(key, n):
    """The permutation by numpy: per round, a stable argsort of the random words shifted left
    by b bits (their top 32 - b bits are all the sort sees), composed over the rounds."""
    b = max(1, math.ceil(math.log2(n)))
    rounds = math.ceil(3 * math.log2(n) / (32 - b))
    order = np.arange(n)
    for round_key in jax.random.split(key, rounds):
        words = np.asarray(jax.random.bits(round_key, (n,), np.uint32)).astype(np.uint64)
        high = (words << np.uint64(b)) & np.uint64(0xFFFFFFFF)
        order = order[np.argsort(high, kind="stable")]
    return order


@pytest.mark.parametrize("n", [2, 3, 7, 256, 257, 512, 1000, 4097])
def test_matches_the_plain_reference(n):
    key = jax.random.key(n)
    out = np.asarray(jax.jit(prng.permutation, static_argnums=1)(key, n))
    np.testing.assert_array_equal(out, _reference(key, n))
    np.testing.assert_array_equal(np.sort(out), np.arange(n))
    assert out.dtype == np.int32


def test_rounds_rule():
    # 3 log2(n) random bits in all, 32 - b of them a round (2**b >= n): n = 256 has b = 8 and
    # needs 24 bits (one round of 24); n = 257 has b = 9 and needs 24.02 (two rounds of 23);
    # n = 4096 needs 36 (two rounds of 20); n = 4097 has b = 13 and needs 36.001 (two of 19);
    # n = 8192 needs 39 (three rounds of 19).
    def rounds(n):
        b = max(1, math.ceil(math.log2(n)))
        return math.ceil(3 * math.log2(n) / (32 - b))

    assert [rounds(n) for n in (256, 257, 4096, 4097, 8192, 65536, 65537)] == [1, 2, 2, 2, 3,
                                                                               3, 4]
    # The traced program sorts once per round.
    for n, want in ((256, 1), (512, 2), (8192, 3)):
        text = jax.jit(prng.permutation, static_argnums=1).lower(jax.random.key(0), n).as_text()
        assert text.count("stablehlo.sort") == want, n


def test_small_sizes_and_keys():
    assert prng.permutation(jax.random.key(0), 0).shape == (0,)
    np.testing.assert_array_equal(prng.permutation(jax.random.key(0), 1), [0])
    a = prng.permutation(jax.random.key(0), 512)
    np.testing.assert_array_equal(a, prng.permutation(jax.random.key(0), 512))
    assert not np.array_equal(a, prng.permutation(jax.random.key(1), 512))


def test_vmap_equals_loop():
    keys = jax.random.split(jax.random.key(3), 4)
    batched = jax.vmap(lambda k: prng.permutation(k, 100))(keys)
    for i in range(4):
        np.testing.assert_array_equal(batched[i], prng.permutation(keys[i], 100))


def test_uniform_over_the_permutations_of_three():
    # 6 permutations, 12,000 draws: 2,000 expected each. The chi-square statistic with 5
    # degrees of freedom exceeds 20.5 with probability 0.001.
    keys = jax.random.split(jax.random.key(0), 12_000)
    draws = np.asarray(jax.vmap(lambda k: prng.permutation(k, 3))(keys))
    counts = collections.Counter(map(tuple, draws.tolist()))
    assert len(counts) == 6
    chi2 = sum((c - 2_000) ** 2 / 2_000 for c in counts.values())
    assert chi2 < 20.5, counts


def test_every_element_reaches_every_position():
    # n = 300 (two rounds): where element 0 and element 299 land, over 6,000 draws, against a
    # uniform 1/300 per position: the chi-square statistic (299 degrees of freedom, mean 299,
    # sd 24.5) stays far below 420 (about 5 sd) when uniform; a sort whose ties or rounds were
    # wrong would pile the first and last elements up at the ends.
    keys = jax.random.split(jax.random.key(1), 6_000)
    draws = np.asarray(jax.vmap(lambda k: prng.permutation(k, 300))(keys))
    for element in (0, 299):
        where = np.argmax(draws == element, axis=1)
        counts = np.bincount(where, minlength=300)
        chi2 = ((counts - 20.0) ** 2 / 20.0).sum()
        assert chi2 < 420, (element, chi2)
