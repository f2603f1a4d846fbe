"""The per-backend tricks: the same numbers on both paths, and a program every platform lowers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import backend

SMALL = jaxppo.Config(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 4, hidden_sizes=(16,))


def test_plain_turns_the_tricks_off_inside_its_block_only():
    assert backend.tricks() == (jax.default_backend() == "cpu")
    with backend.plain():
        assert not backend.tricks()
    assert backend.tricks() == (jax.default_backend() == "cpu")


def test_train_gives_the_same_numbers_with_and_without_the_tricks():
    key = jax.random.key(3)
    state, metrics = jax.jit(jaxppo.train)(SMALL, key)
    with backend.plain():
        plain_state, plain_metrics = jax.jit(jaxppo.train)(SMALL, key)
    # The rollout's draws are the same bits on both keys, so the same episodes are played;
    # the transposed copy changes only the order of a sum in the weight gradient.
    np.testing.assert_array_equal(metrics.episode_return, plain_metrics.episode_return)
    leaves = zip(jax.tree.leaves(state.params), jax.tree.leaves(plain_state.params),
                      strict=True)
    for ours, plain in leaves:
        np.testing.assert_allclose(ours, plain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(metrics.total_loss, plain_metrics.total_loss, rtol=1e-5)


def test_the_rollout_key_draws_what_jax_draws():
    key = jax.random.key(7)
    fast = backend.rollout_key(key)
    np.testing.assert_array_equal(jax.random.normal(fast, (64,)), jax.random.normal(key, (64,)))
    with backend.plain():
        assert backend.rollout_key(key) is key


def test_the_init_of_vmapped_runs_is_the_init_of_each_run():
    keys = jax.random.split(jax.random.key(0), 3)
    configs = jaxppo.stack_configs([SMALL] * 3)
    batched = jax.jit(jax.vmap(jaxppo.init))(configs, keys).params
    with backend.plain():
        plain = jax.jit(jax.vmap(jaxppo.init))(configs, keys).params
    for run in range(3):
        one = jax.jit(jaxppo.init)(SMALL, keys[run]).params
        for a, b, c in zip(jax.tree.leaves(batched), jax.tree.leaves(plain), jax.tree.leaves(one),
                           strict=True):
            np.testing.assert_allclose(a[run], c, atol=1e-6)
            np.testing.assert_allclose(b[run], c, atol=1e-6)


@pytest.mark.layout
@pytest.mark.parametrize("platform", ["cuda", "rocm", "tpu"])
def test_the_whole_train_program_lowers_for_accelerators(platform):
    # A GPU or TPU user traces with the plain path; lowering on this CPU machine shows the
    # program uses no CPU-only operation. With the tricks traced in, the copy is dropped at
    # lowering for another platform.
    traced = jax.jit(jaxppo.train).trace(SMALL, jax.random.key(0))
    assert "optimization_barrier" not in traced.lower(lowering_platforms=(platform,)).as_text()
    with backend.plain():
        text = jax.jit(jaxppo.train).trace(SMALL, jax.random.key(0)).lower(
            lowering_platforms=(platform,)).as_text()
    assert "stablehlo.while" in text


def _barriers(fn, *args) -> int:
    return jax.jit(fn).lower(*args).as_text().count("optimization_barrier")


@pytest.mark.layout
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU trick")
def test_transposed_copy_counts_the_runs_of_nested_vmaps():
    limit = backend.COPY_MAX_RUNS
    a = jnp.arange(4 * 2 * 3 * 5, dtype=jnp.float32).reshape(4, 2, 3, 5)
    # The values: the last two axes swapped, under any vmap.
    np.testing.assert_array_equal(jax.vmap(jax.vmap(backend.transposed))(a),
                                  np.swapaxes(np.asarray(a), -1, -2))
    assert _barriers(backend.transposed, jnp.ones((128, 64))) == 1
    assert _barriers(jax.vmap(backend.transposed), jnp.ones((limit, 128, 64))) == 1
    assert _barriers(jax.vmap(backend.transposed), jnp.ones((limit + 1, 128, 64))) == 0
    # Two vmaps: limit / 2 x 2 runs keep the copy, limit / 2 x 4 do not.
    nested = jax.vmap(jax.vmap(backend.transposed))
    assert _barriers(nested, jnp.ones((limit // 2, 2, 8, 4))) == 1
    assert _barriers(nested, jnp.ones((limit // 2, 4, 8, 4))) == 0
    # An array the vmap does not batch is one run's.
    unbatched = jax.vmap(backend.transposed, in_axes=None, axis_size=4 * limit)
    assert _barriers(unbatched, jnp.ones((8, 4))) == 1
    with backend.plain():
        assert _barriers(backend.transposed, jnp.ones((128, 64))) == 0
