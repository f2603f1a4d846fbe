"""Speed tricks that pay on one backend only, each behind one small function.

Each trick was measured on XLA's CPU backend (bench/README.md, "Optimization attempts") and is
used where ``jax.default_backend()`` is "cpu" when the program is traced; every other backend
gets the plain JAX path. Both paths compute the same numbers (tests/test_backend.py):

- `transposed`: the weight gradient x^T g of a Dense layer reads a transposed *copy* of x,
  which XLA's CPU backend multiplies with a faster kernel than the x^T g dot it makes
  otherwise; up to `COPY_MAX_RUNS` vmapped runs, above which its batched dot wins.
- `rollout_key`: the rollout draws on `prng.UNROLLED`, JAX's threefry with its rounds written
  out, which XLA's CPU backend fuses into fewer kernels; the same bits.
- `one_run_at_a_time`: the orthogonal init of vmapped runs runs them in sequence; a batched
  LAPACK QR waits on XLA's CPU thread pool and, with many runs, every pool thread waited.

`plain()` forces the plain path (to compare the two, or to rule a trick out).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

from jaxppo import prng

# Vmapped runs in one program up to which `transposed` copies (bench/README.md).
COPY_MAX_RUNS = 16

_forced_plain = False


def tricks() -> bool:
    """Whether the CPU tricks apply to what is traced now."""
    return not _forced_plain and jax.default_backend() == "cpu"


@contextlib.contextmanager
def plain() -> Iterator[None]:
    """Within the block, trace every program with the plain JAX path.

    JAX's caches are cleared on the way in and out, so no program traced with the other
    choice is reused.
    """
    global _forced_plain
    previous = _forced_plain
    _forced_plain = True
    jax.clear_caches()
    try:
        yield
    finally:
        _forced_plain = previous
        jax.clear_caches()


def rollout_key(key: jax.Array) -> jax.Array:
    """The key the rollout draws from: on CPU moved onto `prng.UNROLLED` (the same numbers)."""
    return prng.fast(key) if tricks() else key


def one_run_at_a_time(fn: Callable) -> Callable:
    """``fn`` of one run; under a vmap on CPU, its runs computed one after another."""
    return jax.custom_batching.sequential_vmap(fn) if tricks() else fn


def _swapped(a: jax.Array) -> jax.Array:
    """a with its last two axes swapped."""
    return jnp.swapaxes(a, -1, -2)


def _swapped_copy(a: jax.Array) -> jax.Array:
    """`_swapped` as an array of its own: without the barrier XLA folds the transpose back
    into the dot that reads it."""
    return jax.lax.optimization_barrier(_swapped(a))


def transposed(a: jax.Array, runs: int = 1) -> jax.Array:
    """``a`` with its last two axes swapped, for the weight gradient's product.

    On CPU, in programs of up to `COPY_MAX_RUNS` vmapped runs, an array of its own (a copy);
    elsewhere the plain transpose, which XLA folds into the dot. ``runs`` counts the vmapped
    runs outside ``a``'s axes.
    """
    if runs > COPY_MAX_RUNS or not tricks():
        return _swapped(a)
    return _counting_copy(runs)(a)


@functools.cache
def _counting_copy(runs: int):
    """`_swapped_copy` for ``runs`` runs, as a function that counts the runs of each vmap."""

    @jax.custom_batching.custom_vmap
    def copy(a):
        # Chosen again at lowering: a program lowered here for another platform gets no copy.
        return jax.lax.platform_dependent(a, cpu=_swapped_copy, default=_swapped)

    @copy.def_vmap
    def _batched(axis_size, in_batched, a):
        # One input: JAX calls this rule only when the vmap batches it (in_batched == [True]).
        del in_batched
        # The vmapped axis leads; the swapped axes are the last two of each run's array.
        return transposed(a, runs * axis_size), True

    return copy
