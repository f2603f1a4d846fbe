"""Tests of `jaxppo.prng`: the unrolled threefry draws JAX's numbers bit for bit; the
permutation against a plain-loop reference, at every size, uniform, with the rounds rule."""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import envs, networks, prng, rollout

DRAWS = {
    "split": lambda k: jax.random.key_data(jax.random.split(k, 5)),
    "split 2-d": lambda k: jax.random.key_data(jax.random.split(k, (3, 4))),
    "fold_in": lambda k: jax.random.key_data(jax.random.fold_in(k, 7)),
    "bits 32": lambda k: jax.random.bits(k, (3, 5)),
    "bits 16": lambda k: jax.random.bits(k, (7,), jnp.uint16),
    "bits 8": lambda k: jax.random.bits(k, (7,), jnp.uint8),
    "bits scalar": lambda k: jax.random.bits(k),
    "uniform": lambda k: jax.random.uniform(k, (100,)),
    "normal": lambda k: jax.random.normal(k, (10, 10)),
    "categorical": lambda k: jax.random.categorical(k, jnp.zeros((50, 3))),
    "bernoulli": lambda k: jax.random.bernoulli(k, 0.3, (20,)),
    "jax permutation": lambda k: jax.random.permutation(k, 1000),
    "vmapped split": lambda k: jax.random.key_data(
        jax.vmap(lambda kk: jax.random.split(kk, 3))(jax.random.split(k, 4))),
}


@pytest.mark.parametrize("name", DRAWS)
def test_unrolled_threefry_draws_jax_numbers(name):
    for seed in (0, 42, 2**31 - 1):
        key = jax.random.key(seed)
        fast = prng.fast(key)
        assert str(jax.random.key_impl(fast)) != str(jax.random.key_impl(key))
        want = np.asarray(DRAWS[name](key))
        np.testing.assert_array_equal(np.asarray(DRAWS[name](fast)), want)
        np.testing.assert_array_equal(np.asarray(jax.jit(DRAWS[name])(fast)), want)


def test_fast_leaves_other_keys_alone():
    rbg = jax.random.key(0, impl="rbg")
    assert prng.fast(rbg) is rbg
    raw = jax.random.PRNGKey(0)  # legacy uint32 key
    assert prng.fast(raw) is raw


def test_rollout_is_the_same_on_a_fast_key():
    config = jaxppo.preset("Pendulum-v1").replace(num_envs=3, num_steps=8, num_minibatches=2)
    state = jaxppo.init(config, jax.random.key(0))
    env = envs.make(config.env_id)
    network = networks.make(config, env)

    @jax.jit
    def run(key):
        return rollout.rollout(config, env, network,
                               rollout.Policy(state.params, state.normalizers),
                               rollout.EnvCarry(state.obs, state.env_state), key)

    key = jax.random.key(5)
    jax.tree.map(np.testing.assert_array_equal, run(key), run(prng.fast(key)))


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
