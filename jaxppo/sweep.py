"""Hyperparameter sweeps: H settings x S seeds of `train` in one compiled call.

    result = jaxppo.sweep(config, {"learning_rate": [1e-3, 3e-4], "clip_eps": [0.1, 0.2]},
                          seeds=8)
    result.metrics.episode_return.shape      # (4, 8, config.num_updates)
    result.settings                          # {"learning_rate": array([...4]), ...}

Only dynamic Config fields (float leaves) can be swept: they are stacked and vmapped, so the
whole grid is one program. A static field changes the program itself and is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxppo import config as config_lib
from jaxppo import train as train_lib
from jaxppo.config import Config


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """A sweep's outcome. Setting h of the table is row h of every array.

    Attributes:
        settings: swept field -> values [H] (host numpy).
        state: the final `TrainState`, every leaf [H, S, ...].
        metrics: the `Metrics`, every leaf [H, S, num_updates].
    """

    settings: dict[str, np.ndarray]
    state: Any
    metrics: Any

    @property
    def num_settings(self) -> int:
        return len(next(iter(self.settings.values())))


def _check_names(names: Sequence[str]) -> None:
    dynamic, static = config_lib.dynamic_fields(), config_lib.static_fields()
    for name in names:
        if name in static:
            raise ValueError(
                f"cannot sweep Config.{name}: it is a static field, and each value would "
                "compile a different program; run one sweep per value of it instead "
                f"(sweepable fields: {', '.join(dynamic)})"
            )
        if name not in dynamic:
            raise ValueError(f"cannot sweep {name!r}: not a Config field (sweepable fields: "
                             f"{', '.join(dynamic)})")


def grid(space: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """Every combination of the listed values, the first field varying slowest.

    Raises:
        ValueError: for an empty space, an empty list, or a field that cannot be swept.
    """
    if not space:
        raise ValueError("grid needs at least one field to sweep, got an empty mapping")
    _check_names(list(space))
    for name, values in space.items():
        if isinstance(values, str | bytes) or len(values) == 0:
            raise ValueError(f"grid[{name!r}]={values!r}: expected a non-empty list of numbers")
    rows = list(itertools.product(*space.values()))
    return {name: np.asarray([row[i] for row in rows], np.float32)
            for i, name in enumerate(space)}


def random_search(space: Mapping[str, tuple], num_settings: int, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """``num_settings`` random settings: ``(low, high)`` is uniform, ``("log", low, high)``
    log-uniform (what rates want). Drawn on the host with numpy, reproducible by ``seed``."""
    if not space:
        raise ValueError("random_search needs at least one field, got an empty mapping")
    if num_settings < 1:
        raise ValueError(f"num_settings={num_settings} must be >= 1")
    _check_names(list(space))
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in space.items():
        log = len(spec) == 3 and spec[0] == "log"
        low, high = (spec[1], spec[2]) if log else tuple(spec)
        if not low < high or (log and low <= 0):
            raise ValueError(f"random_search[{name!r}]={spec!r}: expected (low, high) or "
                             "('log', low, high) with low < high (and low > 0 for 'log')")
        if log:
            values = np.exp(rng.uniform(np.log(low), np.log(high), num_settings))
        else:
            values = rng.uniform(low, high, num_settings)
        out[name] = values.astype(np.float32)
    return out


def run_sharded(configs: Config, keys: jax.Array, devices: Sequence[Any] | None = None):
    """`train` for B (config, key) pairs, the batch axis sharded over ``devices``.

    ``configs`` has dynamic leaves [B], ``keys`` is [B]. The batch is padded (with copies of
    its last run) to a multiple of the device count, laid out over a 1-D `jax.sharding.Mesh`
    with a `NamedSharding` on axis 0, trained by one jitted vmap, and the padding dropped.
    Each run's numbers do not depend on how many devices share the batch.

    Returns:
        (TrainState, Metrics), every leaf [B, ...].
    """
    devices = list(jax.devices() if devices is None else devices)
    batch = keys.shape[0]
    padded = -(-batch // len(devices)) * len(devices)
    index = np.minimum(np.arange(padded), batch - 1)
    configs = jax.tree.map(lambda x: np.asarray(x)[index], configs)
    keys = keys[index]
    mesh = jax.sharding.Mesh(np.asarray(devices), ("runs",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    configs, keys = jax.device_put((configs, keys), sharding)
    state, metrics = jax.jit(jax.vmap(train_lib.train))(configs, keys)
    return jax.tree.map(lambda x: x[:batch], (state, metrics))


def sweep(config: Config, space: Mapping[str, Sequence[float]] | Mapping[str, np.ndarray],
          seeds: int = 8, key: jax.Array | None = None,
          devices: Sequence[Any] | None = None) -> SweepResult:
    """Train every setting of ``space`` over ``seeds`` seeds in one jitted, vmapped call.

    The H x S runs form one batch axis, sharded over ``devices`` (default: every device of
    every process, `jax.devices()`); see `run_sharded`.

    Args:
        config: the base config; its static fields apply to every setting.
        space: a grid (field -> list of values; every combination is run), or a table of
            settings (field -> numpy array [H], as `grid` and `random_search` return; run
            row by row).
        seeds: S, seeds per setting; every setting uses the same S keys.
        key: PRNG key (default ``jax.random.key(0)``).
        devices: the devices to spread the runs over (default: all).

    Returns:
        A `SweepResult` with metrics [H, S, num_updates].
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1")
    if space and all(isinstance(v, np.ndarray) for v in space.values()):
        table = {k: np.asarray(v, np.float32) for k, v in space.items()}
        _check_names(list(table))
        if len({v.shape for v in table.values()}) != 1 or next(iter(table.values())).ndim != 1:
            raise ValueError("a table of settings needs 1-D arrays of one length, got shapes "
                             f"{ {k: v.shape for k, v in table.items()} }")
    else:
        table = grid(space)
    configs = [config.replace(**{k: float(v[h]) for k, v in table.items()})
               for h in range(len(next(iter(table.values()))))]
    for c in configs:
        config_lib.validate(c)
    settings = len(configs)
    # Flatten settings x seeds into one run axis: setting h, seed s is run h * S + s.
    flat = config_lib.stack_configs([c for c in configs for _ in range(seeds)])
    keys = jax.random.split(jax.random.key(0) if key is None else key, seeds)
    flat_keys = keys[np.tile(np.arange(seeds), settings)]
    state, metrics = run_sharded(flat, flat_keys, devices)
    unflatten = functools.partial(_unflatten, settings=settings, seeds=seeds)
    return SweepResult(settings=table, state=jax.tree.map(unflatten, state),
                       metrics=jax.tree.map(unflatten, metrics))


def _unflatten(x: jax.Array, settings: int, seeds: int) -> jax.Array:
    return x.reshape(settings, seeds, *x.shape[1:])
