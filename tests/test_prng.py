"""Tests of `jaxppo.prng`: the unrolled threefry draws JAX's numbers bit for bit; the two
permutations (sorts up to 256 elements, a keyed bijection above) against plain-loop
references, at every size, and uniform where it matters: every element's position, pairs,
inversions, fixed points, minibatch composition."""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import envs, networks, prng, rollout
from jaxppo import policy as policy_lib

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



def test_computed_once_is_the_identity_for_every_word():
    """x // ((w | 1) // (w | 1)) == x: the divisor is 1 for any key word, 0 and 2**32 - 1
    included, eagerly and under jit (where XLA must not fold it away)."""
    edge = np.uint32([0, 1, 2, 3, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1])
    rng = np.random.default_rng(0)
    values = np.concatenate([edge, rng.integers(0, 2**32, 56, dtype=np.uint32)])
    x, w = jnp.asarray(values)[:, None], jnp.asarray(values)[None, :]
    want = np.broadcast_to(values[:, None], (64, 64))
    np.testing.assert_array_equal(np.asarray(prng._computed_once(x, w)), want)
    np.testing.assert_array_equal(np.asarray(jax.jit(prng._computed_once)(x, w)), want)

def test_fast_leaves_other_keys_alone():
    rbg = jax.random.key(0, impl="rbg")
    assert prng.fast(rbg) is rbg
    raw = jax.random.PRNGKey(0)  # legacy uint32 key
    assert prng.fast(raw) is raw


def test_fast_keeps_jax_keys_when_threefry_is_not_partitionable():
    """UNROLLED is the partitionable threefry; under jax_threefry_partitionable=False JAX
    draws other numbers from the same key data, so `fast` must leave the key on JAX's."""
    key = jax.random.key(3)
    assert prng.fast(key) is not key  # the default (partitionable): moved onto UNROLLED
    with jax.threefry_partitionable(False):
        assert prng.fast(key) is key
        np.testing.assert_array_equal(np.asarray(jax.random.bits(prng.fast(key), (3, 5))),
                                      np.asarray(jax.random.bits(key, (3, 5))))
    # The two threefry variants do draw different numbers from one key, so the check above
    # would see a key moved onto UNROLLED.
    with jax.threefry_partitionable(False):
        legacy = np.asarray(jax.random.bits(key, (3, 5)))
    assert not np.array_equal(legacy, np.asarray(jax.random.bits(prng.fast(key), (3, 5))))


_X64_DRAWS = """
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from jaxppo import prng

draws = {
    "bits 64": lambda k: jax.random.bits(k, (3, 5), jnp.uint64),
    "bits 64 scalar": lambda k: jax.random.bits(k, (), jnp.uint64),
    "uniform float64": lambda k: jax.random.uniform(k, (50,), jnp.float64),
    "normal float64": lambda k: jax.random.normal(k, (4, 4), jnp.float64),
}
for seed in (0, 42, 2**31 - 1):
    key = jax.random.key(seed)
    for name, draw in draws.items():
        want = np.asarray(draw(key))
        assert want.dtype.itemsize == 8, (name, want.dtype)
        np.testing.assert_array_equal(np.asarray(draw(prng.fast(key))), want, err_msg=name)
        np.testing.assert_array_equal(np.asarray(jax.jit(draw)(prng.fast(key))), want,
                                      err_msg=name)
print("ok")
"""


def test_unrolled_threefry_draws_jax_64_bit_numbers():
    """With jax_enable_x64, 64-bit words are (first hash word << 32) | second, as JAX's
    threefry builds them (fixed when JAX starts, hence a subprocess)."""
    from conftest import run_python

    done = run_python(_X64_DRAWS)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_rollout_is_the_same_on_a_fast_key():
    config = jaxppo.preset("Pendulum-v1").replace(num_envs=3, num_steps=8, num_minibatches=2)
    state = jaxppo.init(config, jax.random.key(0))
    env = envs.make(config.env_id)
    network = networks.make(config, env)

    @jax.jit
    def run(key):
        return rollout.rollout(config, env, network,
                               policy_lib.Policy(state.params, state.normalizers),
                               rollout.EnvCarry(state.obs, state.env_state), key)

    key = jax.random.key(5)
    jax.tree.map(np.testing.assert_array_equal, run(key), run(prng.fast(key)))


def _sort_reference(key, n):
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
def test_sort_permutation_matches_the_plain_reference(n):
    key = jax.random.key(n)
    out = np.asarray(jax.jit(prng.sort_permutation, static_argnums=1)(key, n))
    np.testing.assert_array_equal(out, _sort_reference(key, n))
    np.testing.assert_array_equal(np.sort(out), np.arange(n))
    assert out.dtype == np.int32


def _feistel_reference(round_keys, n):
    """The bijective permutation element by element in Python integers: the Feistel rounds
    on b = max(2, ceil(log2 n)) bits applied to 0 .. 2**b - 1, the values n and above left
    out."""
    bits = max(2, math.ceil(math.log2(n)))

    def mix(h):
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & 0xFFFFFFFF
        return h ^ (h >> 16)

    def bijection(x):
        low, high = bits // 2, bits - bits // 2
        for k in round_keys:
            top, bottom = x >> low, x & ((1 << low) - 1)
            x = (bottom << high) | (top ^ (mix(bottom ^ k) & ((1 << high) - 1)))
            low, high = high, low
        return x

    out = []
    for i in range(2**bits):
        x = bijection(i)
        if x < n:
            out.append(x)
    return np.array(out)


@pytest.mark.parametrize("n", [2, 3, 5, 257, 300, 512, 1000, 4097, 32768])
def test_bijective_permutation_matches_the_plain_reference(n):
    key = jax.random.key(n)
    out = np.asarray(jax.jit(prng.bijective_permutation, static_argnums=1)(key, n))
    round_keys = [int(k) for k in np.asarray(
        jax.random.bits(key, (prng.FEISTEL_ROUNDS,), np.uint32))]
    np.testing.assert_array_equal(out, _feistel_reference(round_keys, n))
    np.testing.assert_array_equal(np.sort(out), np.arange(n))
    assert out.dtype == np.int32


@pytest.mark.layout
def test_bijective_permutation_has_no_loop():
    # No while loop of its own (JAX lowers the round keys' threefry as a fixed loop), so
    # under vmap no key waits for another, and seeds sharded over devices need no collective
    # (a batched loop's condition would be an all-reduce over the seeds).
    keys = jax.random.split(jax.random.key(0), 4)
    for n in (300, 512, 1000):
        jaxpr = jax.make_jaxpr(jax.vmap(lambda k, n=n: prng.bijective_permutation(k, n)))(keys)
        assert "while" not in str(jaxpr), n


def test_permutation_sorts_up_to_256_and_maps_above():
    key = jax.random.key(9)
    for n in (3, 256):
        np.testing.assert_array_equal(prng.permutation(key, n), prng.sort_permutation(key, n))
    for n in (257, 2048):
        np.testing.assert_array_equal(prng.permutation(key, n),
                                      prng.bijective_permutation(key, n))


@pytest.mark.layout
def test_permutation_above_256_lowers_without_a_sort():
    key = jax.random.key(9)
    for n in (257, 2048):
        assert "stablehlo.sort" not in jax.jit(
            prng.permutation, static_argnums=1).lower(key, n).as_text()


@pytest.mark.parametrize("fn", [prng.permutation, prng.sort_permutation,
                                prng.bijective_permutation])
@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_a_bad_size_is_refused_by_name(fn, n):
    with pytest.raises(ValueError, match=f"n={n!r} must be a count of elements"):
        fn(jax.random.key(0), n)


def test_bijective_permutation_limits():
    assert prng.bijective_permutation(jax.random.key(0), 0).shape == (0,)
    np.testing.assert_array_equal(prng.bijective_permutation(jax.random.key(0), 1), [0])
    with pytest.raises(ValueError, match="n=2147483649: .* at most 2\\*\\*31"):
        prng.bijective_permutation(jax.random.key(0), 2**31 + 1)


@pytest.mark.layout
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
        text = jax.jit(prng.sort_permutation, static_argnums=1).lower(
            jax.random.key(0), n).as_text()
        assert text.count("stablehlo.sort") == want, n


def test_small_sizes_and_keys():
    assert prng.permutation(jax.random.key(0), 0).shape == (0,)
    np.testing.assert_array_equal(prng.permutation(jax.random.key(0), 1), [0])
    a = prng.permutation(jax.random.key(0), 512)
    np.testing.assert_array_equal(a, prng.permutation(jax.random.key(0), 512))
    assert not np.array_equal(a, prng.permutation(jax.random.key(1), 512))


@pytest.mark.parametrize("n", [100, 300, 512])
def test_vmap_equals_loop(n):
    # 100: the sort; 300: the bijection with values left out; 512: the bijection alone.
    keys = jax.random.split(jax.random.key(3), 4)
    batched = jax.vmap(lambda k: prng.permutation(k, n))(keys)
    for i in range(4):
        np.testing.assert_array_equal(batched[i], prng.permutation(keys[i], n))


def test_uniform_over_the_permutations_of_three():
    # 6 permutations, 12,000 draws: 2,000 expected each. The chi-square statistic with 5
    # degrees of freedom exceeds 20.5 with probability 0.001.
    keys = jax.random.split(jax.random.key(0), 12_000)
    draws = np.asarray(jax.vmap(lambda k: prng.permutation(k, 3))(keys))
    counts = collections.Counter(map(tuple, draws.tolist()))
    assert len(counts) == 6
    chi2 = sum((c - 2_000) ** 2 / 2_000 for c in counts.values())
    assert chi2 < 20.5, counts


@pytest.mark.parametrize("fn", [prng.sort_permutation, prng.bijective_permutation],
                         ids=["sort", "bijective"])
def test_every_element_reaches_every_position(fn):
    # n = 300 (two sort rounds; the bijection on 9 bits, 212 values left out): where element 0 and
    # element 299 land, over 6,000 draws, against a uniform 1/300 per position: the
    # chi-square statistic (299 degrees of freedom, mean 299, sd 24.5) stays far below 420
    # (about 5 sd) when uniform; a sort whose ties or rounds were wrong would pile the first
    # and last elements up at the ends, a bijection that mixed badly would favour positions.
    keys = jax.random.split(jax.random.key(1), 6_000)
    draws = np.asarray(jax.vmap(lambda k: fn(k, 300))(keys))
    for element in (0, 299):
        where = np.argmax(draws == element, axis=1)
        counts = np.bincount(where, minlength=300)
        chi2 = ((counts - 20.0) ** 2 / 20.0).sum()
        assert chi2 < 420, (element, chi2)


@pytest.fixture(scope="module")
def bijective_draws():
    """4,000 bijective permutations of 512 (a power of two) and of 1,000 (values left out)."""
    keys = jax.random.split(jax.random.key(2), 4_000)
    draw = jax.jit(jax.vmap(prng.bijective_permutation, in_axes=(0, None)), static_argnums=1)
    return {n: np.asarray(draw(keys, n)) for n in (512, 1000)}


@pytest.mark.parametrize("n", [512, 1000])
def test_bijective_pairs_are_unstructured(bijective_draws, n):
    # The gap from element 0's position to element 1's, modulo n, is uniform over 1 .. n - 1
    # for a uniform permutation. In 16 bins of 4,000 draws (250 each) the chi-square statistic
    # (15 degrees of freedom) exceeds 37.7 with probability 0.001. A map that moved
    # neighbours together (an affine map, a bijection with too few rounds) fails at once.
    draws = bijective_draws[n]
    where = np.argsort(draws, axis=1)  # where[d, e]: the position of element e in draw d
    gaps = (where[:, 1] - where[:, 0]) % n
    counts = np.bincount((gaps - 1) * 16 // (n - 1), minlength=16)
    expected = len(gaps) * np.diff(np.ceil(np.arange(17) * (n - 1) / 16)) / (n - 1)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 37.7, (counts, chi2)


@pytest.mark.parametrize("n", [512, 1000])
def test_bijective_inversions_fixed_points_and_minibatches(bijective_draws, n):
    # For a uniform permutation of n: inversions have mean n(n-1)/4 and sd
    # sqrt(n(n-1)(2n+5)/72); fixed points mean 1 and sd 1; the first quarter of the
    # positions (one of 4 minibatches) holds a hypergeometric count of the lower half of the
    # elements, mean n/8, sd sqrt(n/4 * 1/4 * (3n/4)/(n-1)). Each mean over 4,000 draws stays
    # within 4.5 of its standard errors.
    draws = bijective_draws[n]
    d = len(draws)
    inversions = np.array([np.sum(np.triu(p[:, None] > p[None, :], 1)) for p in draws[:1000]])
    mean, sd = n * (n - 1) / 4, math.sqrt(n * (n - 1) * (2 * n + 5) / 72)
    assert abs(inversions.mean() - mean) < 4.5 * sd / math.sqrt(1000), inversions.mean()
    assert abs(inversions.std() / sd - 1) < 0.15, inversions.std()
    fixed = (draws == np.arange(n)).sum(axis=1)
    assert abs(fixed.mean() - 1) < 4.5 / math.sqrt(d), fixed.mean()
    lower = (draws[:, : n // 4] < n // 2).sum(axis=1)
    sd = math.sqrt(n / 4 * 0.25 * (3 * n / 4) / (n - 1))
    assert abs(lower.mean() - n / 8) < 4.5 * sd / math.sqrt(d), lower.mean()


def test_bijective_parity_is_fixed_on_a_power_of_two():
    # The documented limit of the keyed bijection: on 2**b elements every key gives a
    # permutation of the same parity (each round's xor step is even, its bit rotation fixed).
    # With values left out (n not a power of two) both parities occur.
    def parity(p):
        seen, odd = np.zeros(len(p), bool), 0
        for i in range(len(p)):
            j, length = i, 0
            while not seen[j]:
                seen[j], j, length = True, p[j], length + 1
            odd += length > 0 and length % 2 == 0
        return odd % 2

    keys = jax.random.split(jax.random.key(4), 40)
    assert len({parity(np.asarray(prng.bijective_permutation(k, 512))) for k in keys}) == 1
    assert len({parity(np.asarray(prng.bijective_permutation(k, 1000))) for k in keys}) == 2


# --- keys per purpose: init (the rollout's: tests/test_rollout.py) ----------------------------

KEYS_CONFIG = jaxppo.Config(env_id="ProbePolicy-v0", num_envs=8, num_steps=6,
                            total_timesteps=48, num_minibatches=2, hidden_sizes=(8,))


@pytest.mark.layout
def test_init_splits_its_key_into_network_env_and_run_keys():
    """init: net_key, env_key, run_key = split(key, 3); env i resets with split(env_key, N)[i]."""
    config = KEYS_CONFIG
    env = envs.make(config.env_id)
    key = jax.random.key(3)
    state = jaxppo.init(config, key)
    net_key, env_key, run_key = jax.random.split(key, 3)
    jax.tree.map(np.testing.assert_array_equal, state.params,
                 networks.init(config, env, net_key))
    obs, env_state = jax.vmap(env.reset)(jax.random.split(env_key, config.num_envs))
    np.testing.assert_array_equal(state.obs, obs)
    jax.tree.map(np.testing.assert_array_equal, state.env_state, env_state)
    np.testing.assert_array_equal(jax.random.key_data(state.key), jax.random.key_data(run_key))
    assert not np.array_equal(jax.random.key_data(state.key), jax.random.key_data(key))
    assert len(set(np.asarray(state.obs)[:, 0].tolist())) == 2  # both signs among 8 resets
