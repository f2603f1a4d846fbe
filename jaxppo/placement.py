"""Where runs live: a batch of runs laid out over devices, and gathered back.

Every batched entry point (`jaxppo.sweep`, `jaxppo.run_sharded`, the experiment runner) trains
B runs along one leading axis. This module owns how that axis is made and placed:

- `flat_runs`: H settings x S seeds flattened into one run axis, run ``h * S + s``;
- `plan_calls`: how many runs one compiled call holds (what fits in device memory);
- `runs_sharding` / `put`: axis 0 split over a 1-D mesh ("runs") of the devices;
- `joined` / `gathered`: the runs of one or more calls back on one device (or replicated on
  every device of a multi-host run).

Each run's numbers do not depend on how many devices share the batch or how many calls it
takes: every run is the same vmapped program on its own slice.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxppo import config as config_lib
from jaxppo import memory, prng
from jaxppo.config import Config


def flat_runs(configs: Sequence[Config], seeds: int, key: jax.Array
              ) -> tuple[Config, jax.Array]:
    """H configs x S seeds as one run axis: run ``h * S + s`` is setting h, seed s.

    Every setting uses the same S keys, ``jax.random.split(key, S)``, so seed s of two
    settings sees the same randomness (paired comparisons).

    Returns:
        (a config whose dynamic leaves are [H * S], keys [H * S]).
    """
    flat = config_lib.stack_configs([c for c in configs for _ in range(seeds)])
    keys = jax.random.split(key, seeds)
    return flat, keys[np.tile(np.arange(seeds), len(configs))]


def unflatten(x, settings: int, seeds: int):
    """[H * S, ...] -> [H, S, ...], the inverse of `flat_runs`'s layout."""
    return x.reshape(settings, seeds, *x.shape[1:])


def pad(tree, rows: int):
    """Every leaf [B, ...] padded to [rows, ...] with copies of its last run."""
    def leaf(x):
        return x[np.minimum(np.arange(rows), x.shape[0] - 1)]

    return jax.tree.map(leaf, tree)


def split_calls(tree, calls: int, per_call: int) -> list:
    """A batch of runs [B, ...] as ``calls`` batches of ``per_call`` runs each, the last
    padded with copies of the batch's last run (`pad`)."""
    padded = pad(tree, calls * per_call)
    return [jax.tree.map(lambda x, c=c: x[c * per_call:(c + 1) * per_call], padded)
            for c in range(calls)]


def host(x) -> np.ndarray:
    """A host copy of ``x``; of a typed PRNG key array, its raw data."""
    return np.asarray(jax.random.key_data(x) if prng.is_key(x) else x)


def _placed(data: np.ndarray, like, target):
    """Host ``data`` (from `host`) placed on ``target`` (a device or a sharding), as a typed
    key array again when ``like`` is one."""
    out = jax.device_put(data, target)
    return jax.random.wrap_key_data(out, impl=jax.random.key_impl(like)) if prng.is_key(
        like) else out


def put(tree, sharding):
    """Host copies of ``tree``'s leaves laid out by ``sharding`` (typed PRNG keys through their
    raw data), so that every process of a multi-host run can place the same global value."""
    return jax.tree.map(lambda x: _placed(host(x), x, sharding), tree)


def local_device(devices: Sequence[Any]):
    """The first of ``devices`` that belongs to this process."""
    return next(d for d in devices if d.process_index == jax.process_index())


def default_devices(runs: int) -> list:
    """The devices a batch of ``runs`` spreads over by default: every device of every process,
    except that a single process uses no more devices than there are runs (a device without a
    run of its own would only train a padding copy, on a core a real run could use)."""
    devices = jax.devices()
    return devices if jax.process_count() > 1 else devices[:max(1, runs)]


def runs_sharding(devices: Sequence[Any]) -> jax.sharding.Sharding:
    """The layout of a batch of runs: axis 0 split over a 1-D mesh ("runs") of ``devices``.

    On one device, that device's plain `SingleDeviceSharding`: the same layout, and a program
    whose inputs carry no mesh lowers faster.
    """
    if len(devices) == 1:
        return jax.sharding.SingleDeviceSharding(devices[0])
    return jax.sharding.NamedSharding(_runs_mesh(devices), jax.sharding.PartitionSpec("runs"))


def _runs_mesh(devices: Sequence[Any]) -> jax.sharding.Mesh:
    return jax.sharding.Mesh(np.asarray(devices), ("runs",))


def runs_per_call(config: Config, runs: int, devices: Sequence[Any],
                  max_runs_per_call: int | None = None) -> int:
    """Runs in one call: all of them when they fit in memory, else as many as fit (from
    `memory.runs_that_fit` on each device, or ``max_runs_per_call``), rounded down to a
    multiple of the device count and never below one run per device. Without
    ``max_runs_per_call``, a config of which not even one run fits is refused
    (`memory.TooLarge`)."""
    count = len(devices)
    if max_runs_per_call is None:
        memory.check_fits(config, local_device(devices))  # not even one run fits: refused
        max_runs_per_call = memory.runs_that_fit(config, local_device(devices)) * count
    per_call = min(max_runs_per_call, -(-runs // count) * count)
    return max(count, per_call // count * count)


def plan_calls(config: Config, runs: int, devices: Sequence[Any],
               max_runs_per_call: int | None = None) -> tuple[int, int]:
    """(P, calls): `runs_per_call` and how many calls of P runs cover ``runs``; more than one
    call is announced with a `memory.ChunkWarning` (a warning, not a log line: it reaches a
    user who configured nothing, and a test or script can catch it, silence it or make it an
    error)."""
    per_call = runs_per_call(config, runs, devices, max_runs_per_call)
    calls = -(-runs // per_call)
    if calls > 1:
        warnings.warn(
            f"{runs} runs do not fit in one call on {len(devices)} device(s) (estimated "
            f"{memory.per_run_bytes(config) / 2**20:.1f} MiB per run); running them in "
            f"{calls} sequential calls of {per_call} runs", memory.ChunkWarning, stacklevel=3)
    return per_call, calls


def joined(outputs: Sequence[Any], rows: int, devices: Sequence[Any]):
    """The first ``rows`` runs of one or more batches of runs sharded over ``devices``, joined
    along axis 0. With one process every leaf ends on the first of ``devices``, copied through
    the host (`gathered`); with several, a jitted copy replicates every leaf on all
    ``devices``, so each process can read the whole result (every process must call this at
    the same point, as it runs a collective program)."""
    if jax.process_count() == 1:
        return gathered(outputs, rows, local_device(devices))
    result = outputs[0] if len(outputs) == 1 else jax.tree.map(
        lambda *xs: jax.numpy.concatenate(xs), *outputs)
    replicated = jax.sharding.NamedSharding(_runs_mesh(devices), jax.sharding.PartitionSpec())
    return jax.jit(_first_rows, static_argnums=1, out_shardings=replicated)(result, rows)


def _first_rows(tree, rows: int):
    return jax.tree.map(lambda x: x[:rows], tree)


def gathered(outputs: Sequence[Any], rows: int, device):
    """The first ``rows`` runs of one or more batches of sharded runs, joined along axis 0
    and copied through the host onto ``device``: every leaf [rows, ...] on that one device.

    Through the host because slicing or joining the sharded arrays in place runs collective
    programs, and on XLA's CPU one issued while the devices are still busy can deadlock.
    (One process only: with several, `joined` replicates by a jitted copy.)
    """
    def join(*xs):
        return _placed(np.concatenate([host(x) for x in xs])[:rows], xs[0], device)
    return jax.tree.map(join, *outputs)
