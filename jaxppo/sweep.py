"""Hyperparameter sweeps: H settings x S seeds of `train` in one compiled call.

    result = jaxppo.sweep(config, {"learning_rate": [1e-3, 3e-4], "clip_eps": [0.1, 0.2]},
                          seeds=8)
    result.metrics.episode_return.shape      # (4, 8, config.num_updates)
    result.settings                          # {"learning_rate": array([...4]), ...}

    jaxppo.sweep(config, seeds=8)            # the config alone: metrics [1, 8, num_updates]

Only dynamic Config fields (float leaves) can be swept: they are stacked and vmapped, so the
whole grid is one program. A static field changes the program itself and is refused.

Env parameters (`Config.env_params`) are swept by name, as ``"env_params.NAME"`` columns:

    jaxppo.sweep(config, {"env_params": [{"gravity": 9.8}, {"gravity": 12.0}]})  # one axis
    jaxppo.sweep(config, {"env_params.gravity": [9.8, 12.0]})                   # the same
    jaxppo.random_search({"env_params.gravity": (8.0, 14.0)}, 16)      # domain randomization
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
from jaxppo import placement
from jaxppo import train as train_lib
from jaxppo.config import Config
from jaxppo.train import TrainState


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """A sweep's outcome. Setting h of the table is row h of every array.

    Attributes:
        settings: swept field -> values [H] (host numpy); empty when nothing was swept (the
            base config alone, H = 1).
        state: the final `TrainState`, every leaf [H, S, ...].
        metrics: the `Metrics`, every leaf [H, S, num_updates].
    """

    settings: dict[str, np.ndarray]
    state: Any
    metrics: Any

    @property
    def num_settings(self) -> int:
        return table_rows(self.settings)


def table_rows(table: Mapping[str, np.ndarray]) -> int:
    """H, the settings of a table; 1 for the empty table (the base config alone)."""
    return len(next(iter(table.values()))) if table else 1


def _check_names(names: Sequence[str], mappings: bool = False) -> None:
    """Each name a sweepable column: a float field or ``"env_params.NAME"``; with
    ``mappings`` (a grid) also ``"env_params"``, whose values are mappings."""
    dynamic, static = config_lib.dynamic_fields(), config_lib.static_fields()
    sweepable = (f"sweepable fields: {', '.join(dynamic)}, or one env parameter as "
                 "'env_params.NAME'")
    for name in names:
        if isinstance(name, str) and name.startswith(config_lib.ENV_PARAM_PREFIX) and (
                name != config_lib.ENV_PARAM_PREFIX):
            continue
        if name in static:
            raise ValueError(
                f"cannot sweep Config.{name}: it is a static field, and each value would "
                f"compile a different program; run one sweep per value of it instead ({sweepable})"
            )
        if name == "env_params" and not mappings:
            raise ValueError("cannot sweep 'env_params' here: give each env parameter its own "
                             "entry, 'env_params.NAME' (e.g. 'env_params.gravity')")
        if name not in dynamic:
            raise ValueError(f"cannot sweep {name!r}: not a Config field ({sweepable})")


def _check_space(space) -> None:
    if not isinstance(space, Mapping):
        raise ValueError(f"space={config_lib.shown(space)}: expected a mapping of field -> list "
                         "of values, e.g. {'learning_rate': [1e-3, 3e-4]}")


def _check_values(name: str, values) -> None:
    """The values of one swept field: a non-empty list of real numbers."""
    listed = (isinstance(values, Sequence) and not isinstance(values, str | bytes)) or (
        isinstance(values, np.ndarray) and values.ndim == 1)
    if not listed or len(values) == 0 or not all(
            config_lib.is_real(v) and np.ndim(v) == 0 for v in values):
        example = f"[{values!r}]" if config_lib.is_real(values) else "[1e-3, 3e-4]"
        raise ValueError(f"grid[{name!r}]={config_lib.shown(values)}: expected a non-empty list "
                         f"of numbers (each swept field takes a list of values, e.g. {example})")
    if not all(map(_fits_float32, values)):
        raise ValueError(f"grid[{name!r}]={config_lib.shown(values)}: every value must be finite "
                         f"and fit a float32 (|x| <= {config_lib.FLOAT32_MAX:.4g})")


def _check_env_params(values) -> list[str]:
    """The values of a grid's "env_params" axis: a non-empty list of mappings of parameter
    name -> number, all of the same names; their names, sorted."""
    example = "e.g. [{'gravity': 9.8}, {'gravity': 12.0}]"
    listed = isinstance(values, Sequence) and not isinstance(values, str | bytes)
    if not listed or len(values) == 0 or not all(
            isinstance(v, Mapping) and v and all(isinstance(k, str) and k for k in v)
            for v in values):
        raise ValueError(f"grid['env_params']={config_lib.shown(values)}: expected a non-empty "
                         f"list of mappings of parameter name -> number, {example}")
    names = sorted(values[0])
    for index, setting in enumerate(values):
        if sorted(setting) != names:
            raise ValueError(f"grid['env_params'][{index}] sets {sorted(setting)} but "
                             f"grid['env_params'][0] sets {names}: every setting must set the "
                             f"same env parameters, {example}")
    for name in names:
        _check_values(config_lib.ENV_PARAM_PREFIX + name, [v[name] for v in values])
    return names


def _columns(space: Mapping[str, Sequence]) -> dict[str, list]:
    """A grid's rows (every combination, the first field slowest) as columns; an
    "env_params" axis gives one column per parameter, "env_params.NAME"."""
    names = {name: _check_env_params(values) if name == "env_params" else None
             for name, values in space.items()}
    for name, values in space.items():
        if names[name] is None:
            _check_values(name, values)
    picks = []  # (column, its axis in the rows, the parameter it takes or None)
    for axis, (name, params) in enumerate(names.items()):
        picks += [(name, axis, None)] if params is None else [
            (config_lib.ENV_PARAM_PREFIX + p, axis, p) for p in params]
    keys = [key for key, _, _ in picks]
    twice = [key for key in keys if keys.count(key) > 1]
    if twice:
        raise ValueError(f"grid sets {twice[0]!r} twice: in 'env_params' and on its own")
    rows = list(itertools.product(*space.values()))
    return {key: [row[axis] if p is None else row[axis][p] for row in rows]
            for key, axis, p in picks}


def _fits_float32(value) -> bool:
    """A finite number a float32 holds: what a swept value becomes."""
    try:
        return abs(float(value)) <= config_lib.FLOAT32_MAX  # False for nan too
    except OverflowError:  # an int beyond float64
        return False


def grid(space: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """Every combination of the listed values, the first field varying slowest.

    An "env_params" entry is one axis of settings of env parameters (a list of mappings of
    the same names), which becomes one column per parameter, "env_params.NAME".

    Raises:
        ValueError: for an empty space, an empty list, or a field that cannot be swept.
    """
    _check_space(space)
    if not space:
        raise ValueError("grid needs at least one field to sweep, got an empty mapping (to "
                         "train the config alone over seeds, pass space=None to jaxppo.sweep)")
    _check_names(list(space), mappings=True)
    return {name: np.asarray(column, np.float32) for name, column in _columns(space).items()}


def random_search(space: Mapping[str, tuple], num_settings: int, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """``num_settings`` random settings: ``(low, high)`` is uniform, ``("log", low, high)``
    log-uniform (what rates want). Drawn on the host with numpy, reproducible by ``seed``."""
    _check_space(space)
    if not space:
        raise ValueError("random_search needs at least one field, got an empty mapping")
    num_settings = config_lib.checked_int("num_settings", num_settings)
    _check_names(list(space))
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in space.items():
        low, high, log = _range(name, spec)
        if log:
            values = np.exp(rng.uniform(np.log(low), np.log(high), num_settings))
        else:
            values = rng.uniform(low, high, num_settings)
        out[name] = values.astype(np.float32)
    return out


def _range(name: str, spec) -> tuple[float, float, bool]:
    """(low, high, log) of one field of a random search: (low, high) or ("log", low, high)."""
    pair = isinstance(spec, tuple | list)
    log = pair and len(spec) == 3 and isinstance(spec[0], str) and spec[0] == "log"
    bounds = tuple(spec[1:] if log else spec) if pair else ()
    if len(bounds) != 2 or not all(config_lib.is_real(b) and np.ndim(b) == 0
                                   and _fits_float32(b) for b in bounds) or not (
            bounds[0] < bounds[1] and (bounds[0] > 0 or not log)):
        raise ValueError(f"random_search[{name!r}]={config_lib.shown(spec)}: expected (low, "
                         "high) or ('log', low, high) with low < high (and low > 0 for 'log'), "
                         "both finite numbers")
    return float(bounds[0]), float(bounds[1]), log


def settings_table(space: Mapping[str, Sequence[float]] | Mapping[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
    """A sweep's settings as a table (field -> float32 [H]): a grid (lists; every combination,
    see `grid`) or a table already (numpy arrays [H] of one length, e.g. `random_search`)."""
    _check_space(space)
    if space and all(isinstance(v, np.ndarray) for v in space.values()):
        _check_names(list(space))
        for name, values in space.items():
            _check_values(name, values)
        table = {k: np.asarray(v, np.float32) for k, v in space.items()}
        if len({v.shape for v in table.values()}) != 1 or next(iter(table.values())).ndim != 1:
            raise ValueError("a table of settings needs 1-D arrays of one length, got shapes "
                             f"{ {k: v.shape for k, v in table.items()} }")
        return table
    return grid(space)


def _train_from(config: Config, state: TrainState):
    """`train` after its `init`: ``config.num_updates`` updates from ``state``."""
    return train_lib.run_updates(config, state, config.num_updates)


#: `init` of B runs (configs with dynamic leaves [B], keys [B]), one vmapped program.
init_batch = jax.jit(jax.vmap(train_lib.init))


#: `train` from given initial states: B runs, configs [B] and states [B], one vmapped program.
train_batch = jax.jit(jax.vmap(_train_from))


def run_sharded(configs: Config, keys: jax.Array, devices: Sequence[Any] | None = None, *,
                max_runs_per_call: int | None = None):
    """`train` for B (config, key) pairs, the batch axis sharded over ``devices``.

    ``configs`` has dynamic leaves [B], ``keys`` is [B]. The batch is padded (with copies of
    its last run) to a whole number of calls of P runs each, P a multiple of the device count;
    each call lays its runs out by `runs_sharding` (a 1-D mesh over the devices, axis 0 split)
    and trains them by one jitted vmap (the same compiled program for every call); the
    padding is dropped. Each run's numbers do not depend on how many devices share the batch
    or how many calls it takes.

    P is every run when all fit in device memory (`jaxppo.memory`), else as many as fit; then
    the runs go in sequential calls and a `memory.ChunkWarning` says so (a warning, not a log
    line: it reaches a user who configured nothing, and a test or script can catch it, silence
    it or turn it into an error).

    The initial states are built on one device by `init_batch`, then the sharded call trains
    them.

    Args:
        configs: a stacked `Config`, dynamic leaves [B].
        keys: PRNG keys [B].
        devices: the devices of the mesh (default: every device of every process).
        max_runs_per_call: an upper bound on P (default: what fits in memory).

    Returns:
        (TrainState, Metrics), every leaf [B, ...]. With one process every leaf is on one
        device, the first of ``devices`` (gathered through the host: see `gathered`); with
        several, every leaf is replicated on all devices, so each process can read the whole
        result.
    """
    batch = keys.shape[0]
    devices = list(placement.default_devices(batch) if devices is None else devices)
    one = jax.tree.map(lambda x: np.asarray(x)[0], configs)
    per_call, calls = placement.plan_calls(one, batch, devices, max_runs_per_call)
    sharding = placement.runs_sharding(devices)
    local = jax.sharding.SingleDeviceSharding(placement.local_device(devices))
    outputs = []
    for chunk, call_keys in placement.split_calls((configs, keys), calls, per_call):
        state = init_batch(*placement.put((chunk, call_keys), local))
        outputs.append(train_batch(*placement.put((chunk, state), sharding)))
    return placement.joined(outputs, batch, devices)


def sweep(config: Config,
          space: Mapping[str, Sequence[float]] | Mapping[str, np.ndarray] | None = None,
          seeds: int = 8, key: jax.Array | None = None,
          devices: Sequence[Any] | None = None, *,
          max_runs_per_call: int | None = None) -> SweepResult:
    """Train every setting of ``space`` over ``seeds`` seeds in one jitted, vmapped call.

    The H x S runs form one batch axis, sharded over ``devices`` (default: every device of
    every process, `jax.devices()`, up to one per run in one process); see `run_sharded`. On
    a CPU, `jaxppo.use_cpu_cores` gives one device per core, so the runs use every core.

    Args:
        config: the base config; its static fields apply to every setting.
        space: a grid (field -> list of values; every combination is run), a table of
            settings (field -> numpy array [H], as `grid` and `random_search` return; run
            row by row), or None: the config alone (H = 1), its seeds spread over the devices
            as a grid's runs are. An env parameter is a field "env_params.NAME"; a grid also
            takes "env_params": a list of mappings (name -> number), one axis.
        seeds: S, seeds per setting; every setting uses the same S keys.
        key: PRNG key (default ``jax.random.key(0)``).
        devices: the devices to spread the runs over (default: all, up to one per run).
        max_runs_per_call: at most this many runs per compiled call (default: as many as
            fit in device memory); more runs go in sequential calls (see `run_sharded`).

    Returns:
        A `SweepResult` with metrics [H, S, num_updates].
    """
    seeds = config_lib.checked_int("seeds", seeds)
    table = {} if space is None else settings_table(space)
    settings = table_rows(table)
    configs = [config_lib.with_values(config, {k: float(v[h]) for k, v in table.items()})
               for h in range(settings)]
    for c in configs:
        train_lib.validate(c)
    flat, keys = placement.flat_runs(configs, seeds, jax.random.key(0) if key is None else key)
    state, metrics = run_sharded(flat, keys, devices, max_runs_per_call=max_runs_per_call)
    unflatten = functools.partial(placement.unflatten, settings=settings, seeds=seeds)
    return SweepResult(settings=table, state=jax.tree.map(unflatten, state),
                       metrics=jax.tree.map(unflatten, metrics))
