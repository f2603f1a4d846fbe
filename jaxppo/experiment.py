"""Experiments: many seeds (and settings) trained in chunks, checkpointed, resumable.

    result = jaxppo.experiment.run(jaxppo.Config(), seeds=8, out="runs/cartpole")
    result = jaxppo.experiment.resume("runs/cartpole")        # after a Ctrl-C, say

The pure core (`jaxppo.train`) is one XLA program that returns metrics at the end. A run
here is the same computation cut into chunks: ``jax.jit`` of ``chunk_updates`` x
`jaxppo.step`, vmapped over the flattened (settings x seeds) run axis, the train state donated
from chunk to chunk. Between chunks the host appends the per-update metrics to
``metrics.csv``, updates the progress bar and, every ``checkpoint_every`` chunks, saves the
whole train state with orbax. A run stopped after any chunk and resumed gives the final params
and metrics of the uninterrupted run bit for bit: the same compiled chunk runs on the same
state.

A run directory holds:

    config.json       the base Config, the swept settings, seeds, chunking
    metrics.csv       tidy per-update metrics: setting, config.<swept field>..., seed, update,
                      env_steps, then one column per `jaxppo.Metrics` field
    checkpoints/      orbax checkpoints, one folder per number of updates done
    summary.json      final returns per run and their aggregates per setting
    plots/            learning_curve.png (and sweep.png for a sweep)
    tensorboard/      event files, when asked for
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import math
import pathlib
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxppo import config as config_lib
from jaxppo import prng, stats
from jaxppo import sweep as sweep_lib
from jaxppo import train as train_lib
from jaxppo.config import Config

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINTS = "checkpoints"
METRIC_NAMES = tuple(f.name for f in dataclasses.fields(train_lib.Metrics))
FORMAT_VERSION = 1  # config.json's
# The train state's layout in a checkpoint. 2: Adam's moments are one flat vector over all
# params (`update.make_optimizer`); checkpoints of format 1 hold them per param leaf.
CHECKPOINT_FORMAT = 2


class RunError(ValueError):
    """A user-facing problem with a run directory or a checkpoint (the CLI prints it)."""


# ---------------------------------------------------------------------------------------------
# The spec: everything config.json holds, enough to rebuild the run.


def config_to_dict(config: Config) -> dict[str, Any]:
    """Every Config field as plain JSON values (tuples become lists)."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        out[field.name] = list(value) if isinstance(value, tuple) else _plain(value)
    return out


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """The Config of `config_to_dict`; an unknown field is a `RunError` naming it."""
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RunError(f"unknown Config field(s) {', '.join(unknown)}; known fields: "
                       f"{', '.join(sorted(known))}")
    values = dict(values)
    if "hidden_sizes" in values:
        values["hidden_sizes"] = tuple(int(v) for v in values["hidden_sizes"])
    return Config(**values)


def _plain(value):
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a run is: a base config, H settings of dynamic fields, S seeds each.

    Attributes:
        config: the base Config; its static fields hold for every setting.
        settings: swept field -> H values (an empty mapping means one setting: ``config``).
        seeds: S, seeds per setting; seed s of every setting uses the same PRNG key.
        seed: the base seed; the run keys are ``jax.random.split(jax.random.key(seed), S)``.
        chunk_updates: updates per compiled chunk.
        checkpoint_every: chunks between checkpoints (one is also saved at the end).
    """

    config: Config
    settings: Mapping[str, tuple[float, ...]]
    seeds: int
    seed: int
    chunk_updates: int
    checkpoint_every: int

    @property
    def num_settings(self) -> int:
        return sweep_lib.table_rows(self.settings)

    @property
    def num_runs(self) -> int:
        return self.num_settings * self.seeds

    def configs(self) -> list[Config]:
        """The H configs, setting by setting."""
        return [self.config.replace(**{k: float(v[h]) for k, v in self.settings.items()})
                for h in range(self.num_settings)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "config": config_to_dict(self.config),
            "settings": {k: [float(x) for x in v] for k, v in self.settings.items()},
            "seeds": self.seeds,
            "seed": self.seed,
            "chunk_updates": self.chunk_updates,
            "checkpoint_every": self.checkpoint_every,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spec:
        try:
            return make_spec(config_from_dict(data["config"]),
                             {k: list(v) for k, v in data.get("settings", {}).items()} or None,
                             seeds=int(data["seeds"]), seed=int(data["seed"]),
                             chunk_updates=int(data["chunk_updates"]),
                             checkpoint_every=int(data["checkpoint_every"]))
        except KeyError as missing:
            raise RunError(f"{CONFIG_FILE} lacks the entry {missing}") from None


def default_chunk_updates(num_updates: int) -> int:
    """About 50 chunks per run: progress and checkpoints every 2%, little host overhead."""
    return max(1, math.ceil(num_updates / 50))


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    return int(value)


def make_spec(config: Config, space: Mapping[str, Sequence[float]] | None = None, *,
              seeds: int = 8, seed: int = 0, chunk_updates: int | None = None,
              checkpoint_every: int = 10) -> Spec:
    """Check everything and build a `Spec` (errors are `ValueError`s naming the bad value).

    ``space`` is a grid (field -> list of values, every combination is run) or a table of
    settings (field -> numpy array [H], e.g. from `jaxppo.random_search`), as in
    `jaxppo.sweep`; None trains ``config`` alone.
    """
    config_lib.validate(config)
    seeds = _positive_int("seeds", seeds)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed={seed!r}: expected an integer")
    chunk = default_chunk_updates(config.num_updates) if chunk_updates is None else (
        _positive_int("chunk_updates", chunk_updates))
    checkpoint_every = _positive_int("checkpoint_every", checkpoint_every)
    settings: dict[str, tuple[float, ...]] = {}
    if space:
        table = sweep_lib.settings_table(space)
        # The shortest decimal that rounds to the float32 leaf: 0.001, not 0.0010000000474974513.
        settings = {k: tuple(float(str(np.float32(x))) for x in v) for k, v in table.items()}
    spec = Spec(config, settings, seeds, int(seed), min(chunk, config.num_updates),
                checkpoint_every)
    for c in spec.configs():
        config_lib.validate(c)
    return spec


# ---------------------------------------------------------------------------------------------
# The compiled chunk, cached per program (static config, run count, devices, chunk length),
# so that a notebook or a test session compiles each once.


def _chunk(configs: Config, state: train_lib.TrainState, active: jax.Array, *, length: int):
    """``length`` updates of every run; updates at index >= ``active`` leave state unchanged.

    ``active`` is not batched, so the ``cond`` stays a real branch: one compiled chunk serves
    the last, shorter chunk of a run too.
    """
    step_all = jax.vmap(train_lib._step)
    metrics_shape = jax.eval_shape(step_all, configs, state)[1]

    def body(carry, index):
        def skip(s):
            return s, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics_shape)

        return jax.lax.cond(index < active, lambda s: step_all(configs, s), skip, carry)

    return jax.lax.scan(body, state, jnp.arange(length))


_COMPILED: dict[tuple, Callable] = {}


def _static_key(config: Config) -> tuple:
    return tuple(getattr(config, name) for name in config_lib.static_fields())


def _compiled_chunk(config: Config, runs: int, devices: tuple, length: int, *args):
    key = (_static_key(config), runs, devices, length)
    if key not in _COMPILED:
        fn = jax.jit(_chunk, static_argnames=("length",), donate_argnums=(1,))
        _COMPILED[key] = fn.lower(*args, length=length).compile()
    return _COMPILED[key]


# ---------------------------------------------------------------------------------------------
# Host-side state: checkpoints hold plain numpy arrays (PRNG keys as their key data), so a
# checkpoint does not depend on the device layout of the run that wrote it.


def _to_host(state, runs: int):
    return jax.tree.map(lambda x: sweep_lib._host(x)[:runs], state)


def _from_host(host, like):
    def leaf(h, ref):
        # A key's dtype (also of an abstract ShapeDtypeStruct) names its PRNG implementation.
        return jax.random.wrap_key_data(jnp.asarray(h), impl=ref.dtype._impl) \
            if prng.is_key(ref) else jnp.asarray(h)

    return jax.tree.map(leaf, host, like)


def _host_target(like, runs: int):
    """Zeros shaped like the host form of a state of ``runs`` runs (orbax restore target)."""

    def leaf(x):
        if prng.is_key(x):
            data = jax.eval_shape(jax.random.key_data, x)
            return np.zeros((runs, *data.shape[1:]), data.dtype)
        return np.zeros((runs, *x.shape[1:]), x.dtype)

    return jax.tree.map(leaf, like)


def _pad(tree, padded: int):
    def leaf(x):
        index = np.minimum(np.arange(padded), x.shape[0] - 1)
        return x[index]

    return jax.tree.map(leaf, tree)


# ---------------------------------------------------------------------------------------------
# The result.


@dataclasses.dataclass
class Result:
    """What a run produced (also on disk in ``run_dir``).

    Attributes:
        run_dir: the run directory.
        spec: the run's `Spec`.
        state: the `TrainState` after the last chunk run, every leaf [H * S, ...]; run
            ``h * S + s`` is setting h, seed s.
        metrics: metric name -> [H, S, updates_done] host arrays (see `jaxppo.Metrics`).
        updates_done: updates completed (== ``spec.config.num_updates`` when finished).
        interrupted: the run stopped early (Ctrl-C) after saving a checkpoint.
        compile_s: seconds spent compiling in this process (0 when cached).
        run_s: seconds spent running chunks in this process.
        updates_run: updates run in this process (``updates_done`` less those restored from
            a checkpoint by `resume`): the ones ``run_s`` timed.
        paths: what was written: name -> path.
    """

    run_dir: pathlib.Path
    spec: Spec
    state: Any
    metrics: dict[str, np.ndarray]
    updates_done: int
    interrupted: bool = False
    compile_s: float = 0.0
    run_s: float = 0.0
    updates_run: int = 0
    paths: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.updates_done >= self.spec.config.num_updates

    def final_returns(self, window: int = 10) -> np.ndarray:
        """[H, S]: mean training return over each run's last ``window`` updates done."""
        return stats.final_returns(self.metrics["episode_return"], window)

    def setting_labels(self) -> list[str]:
        return setting_labels(self.spec)

    def env_steps(self) -> np.ndarray:
        """Env steps per run at the end of each update done [updates_done]."""
        return (np.arange(1, self.updates_done + 1) * self.spec.config.batch_size)


def setting_labels(spec: Spec) -> list[str]:
    """One short label per setting, e.g. "learning_rate=0.001 clip_eps=0.2"."""
    if not spec.settings:
        return ["config"]
    return [" ".join(f"{k}={v[h]:.4g}" for k, v in spec.settings.items())
            for h in range(spec.num_settings)]


# ---------------------------------------------------------------------------------------------
# Files.


def _metrics_header(spec: Spec) -> list[str]:
    # Swept values are columns "config.<field>": a metric may share the field's name
    # (learning_rate is also the per-update, possibly annealed, rate).
    return ["setting", *[f"config.{k}" for k in spec.settings], "seed", "update", "env_steps",
            *[m for m in METRIC_NAMES if m != "env_steps"]]


def _metrics_rows(spec: Spec, metrics: Mapping[str, np.ndarray], start: int, stop: int):
    """Rows for updates [start, stop) of every run, from metrics [H, S, >= stop]."""
    names = [m for m in METRIC_NAMES if m != "env_steps"]
    batch = spec.config.batch_size
    for h in range(spec.num_settings):
        swept = [repr(v[h]) for v in spec.settings.values()]
        for s in range(spec.seeds):
            for u in range(start, stop):
                values = [_csv_number(metrics[m][h, s, u]) for m in names]
                yield [h, *swept, s, u, (u + 1) * batch, *values]


def _csv_number(x) -> str:
    x = x.item() if hasattr(x, "item") else x
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.9g}"
    return str(x)


def _write_metrics(path: pathlib.Path, spec: Spec, metrics, start: int, stop: int,
                   fresh: bool) -> None:
    with path.open("w" if fresh else "a", newline="") as f:
        writer = csv.writer(f)
        if fresh:
            writer.writerow(_metrics_header(spec))
        writer.writerows(_metrics_rows(spec, metrics, start, stop))


def read_metrics(run_dir) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv as dicts (strings; empty string for NaN)."""
    with (pathlib.Path(run_dir) / METRICS_FILE).open(newline="") as f:
        return list(csv.DictReader(f))


def reliability(curves: np.ndarray, final: np.ndarray) -> dict[str, float] | None:
    """Chan et al. (2020) reliability of S training curves [S, U] (`stats.reliability`:
    smoothing and within-run windows of 10 updates, CVaR of the worst 5% (at least one run)),
    or None when a run has no finished episode yet."""
    finite = ~np.isnan(final)
    if not finite.all() or curves.shape[-1] < 2:
        return None
    return {k: float(v) for k, v in stats.reliability(
        curves, final, smoothing_window=10, window=10).items()}


def _summary(result: Result) -> dict[str, Any]:
    final = result.final_returns()
    out = {"updates_done": result.updates_done,
           "num_updates": result.spec.config.num_updates,
           "env_steps_per_run": result.updates_done * result.spec.config.batch_size,
           "finished": result.finished, "settings": []}
    for h, label in enumerate(result.setting_labels()):
        finite = final[h][~np.isnan(final[h])]
        entry = {"setting": h, "label": label,
                 **{k: v[h] for k, v in result.spec.settings.items()},
                 "final_returns": [None if math.isnan(x) else float(x) for x in final[h]]}
        if finite.size:
            entry["aggregate"] = stats.aggregate(finite)
        entry["reliability"] = reliability(result.metrics["episode_return"][h], final[h])
        out["settings"].append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# Checkpoints (orbax).


def _manager(run_dir: pathlib.Path, max_to_keep: int = 2):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager((run_dir / CHECKPOINTS).absolute(), options=options)


def _save(manager, spec: Spec, state, metrics: dict[str, np.ndarray], done: int) -> None:
    import orbax.checkpoint as ocp

    meta = {"format": CHECKPOINT_FORMAT, "updates_done": done, "runs": spec.num_runs,
            "static": {name: _plain(list(v) if isinstance(v, tuple) else v) for name, v in
                       zip(config_lib.static_fields(), _static_key(spec.config), strict=True)}}
    manager.save(done, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_to_host(state, spec.num_runs)),
        history=ocp.args.StandardSave({k: np.ascontiguousarray(v[..., :done])
                                       for k, v in metrics.items()}),
        meta=ocp.args.JsonSave(meta),
    ), force=True)


def _restore(run_dir: pathlib.Path, spec: Spec, like):
    """(host state, metrics [H, S, done], done) from the newest checkpoint of ``run_dir``."""
    import orbax.checkpoint as ocp

    if not (run_dir / CHECKPOINTS).is_dir():
        raise RunError(f"{run_dir} holds no checkpoint (no {CHECKPOINTS}/ folder)")
    manager = _manager(run_dir)
    step = manager.latest_step()
    if step is None:
        raise RunError(f"{run_dir / CHECKPOINTS} holds no finished checkpoint")
    try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as error:  # orbax raises many kinds for a damaged folder
        raise RunError(f"cannot read checkpoint {run_dir / CHECKPOINTS / str(step)}: "
                       f"{type(error).__name__}: {error}") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"checkpoint {step} of {run_dir} has format {meta.get('format')!r}, and "
                       f"this jaxppo reads format {CHECKPOINT_FORMAT} (format 1 holds Adam's "
                       "moments per param leaf, format 2 as one flat vector): it cannot be "
                       "resumed; train the run again")
    expected = dict(zip(config_lib.static_fields(), _static_key(spec.config), strict=True))
    for name, value in meta.get("static", {}).items():
        want = _plain(list(expected[name]) if isinstance(expected.get(name), tuple)
                      else expected.get(name))
        if value != want:
            raise RunError(f"checkpoint {step} of {run_dir} was written with {name}={value!r} but "
                           f"{CONFIG_FILE} says {want!r}: a checkpoint only resumes the program "
                           "that wrote it")
    if meta.get("runs") != spec.num_runs:
        raise RunError(f"checkpoint {step} holds {meta.get('runs')} runs but {CONFIG_FILE} "
                       f"describes {spec.num_runs} (settings x seeds)")
    shapes = {k: np.zeros((spec.num_settings, spec.seeds, step), np.float32)
              for k in METRIC_NAMES}
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_host_target(like, spec.num_runs)),
            history=ocp.args.StandardRestore(),
        ))
    except Exception as error:
        raise RunError(f"cannot restore checkpoint {run_dir / CHECKPOINTS / str(step)}: "
                       f"{type(error).__name__}: {str(error)[:300]}") from None
    history = {k: np.asarray(v) for k, v in restored["history"].items()}
    if set(history) != set(shapes) or any(v.shape[:2] != (spec.num_settings, spec.seeds)
                                          for v in history.values()):
        raise RunError(f"checkpoint {step} of {run_dir} has metrics that do not match "
                       f"{CONFIG_FILE}")
    return restored["state"], history, int(step)


# ---------------------------------------------------------------------------------------------
# Progress display.


class _Progress:
    """A rich progress bar: env steps done / total, steps/s, IQM return, time left."""

    def __init__(self, enabled: bool, total_steps: int, runs: int, done_steps: int,
                 label: str) -> None:
        self.enabled = enabled
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} env steps"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("IQM return {task.fields[iqm]}"),
            TimeRemainingColumn(),
            TextColumn("left"),
        )
        self.task = self.bar.add_task(label, total=total_steps * runs,
                                      completed=done_steps * runs, rate="", iqm="-")
        self.runs = runs
        self.bar.start()

    def update(self, done_steps: int, rate: float, iqm: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done_steps * self.runs,
                            rate=f"{rate:,.0f} steps/s",
                            iqm="-" if math.isnan(iqm) else f"{iqm:.1f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _current_iqm(metrics: Mapping[str, np.ndarray], done: int) -> float:
    if done == 0:
        return float("nan")
    final = stats.final_returns(metrics["episode_return"][..., :done]).ravel()
    final = final[~np.isnan(final)]
    return stats.iqm(final) if final.size else float("nan")


@contextlib.contextmanager
def _interrupt_flag():
    """Ctrl-C sets a flag (checked after each chunk); a second Ctrl-C interrupts at once."""
    flag = {"set": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag["set"]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag["set"] = True

    try:
        signal.signal(signal.SIGINT, handler)
        installed = True
    except ValueError:  # not in the main thread: Ctrl-C keeps its default behaviour
        installed = False
    try:
        yield flag
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------------------------
# Running.


def _devices(devices, runs: int) -> tuple:
    return tuple(sweep_lib.default_devices(runs) if devices is None else devices)


def _run_inputs(spec: Spec, devices: tuple, max_runs_per_call: int | None = None):
    """The flattened configs and keys, padded to G groups of P runs, each group placed on the
    mesh: ([(configs [P], keys [P])] * G, P, sharding).

    P is every run (rounded up to the device count) when all fit in device memory at once
    (`jaxppo.memory`), else as many as fit: then the groups take turns in each chunk, one
    compiled program for all of them, and a `memory.ChunkWarning` says so.
    """
    per_call, groups = sweep_lib.plan_calls(spec.config, spec.num_runs, list(devices),
                                            max_runs_per_call)
    sharding = sweep_lib.runs_sharding(devices)
    flat = config_lib.stack_configs([c for c in spec.configs() for _ in range(spec.seeds)])
    keys = jax.random.split(jax.random.key(spec.seed), spec.seeds)
    keys = keys[np.tile(np.arange(spec.seeds), spec.num_settings)]
    flat, keys = _pad((flat, keys), groups * per_call)
    inputs = [jax.tree.map(lambda x, g=g: x[g * per_call:(g + 1) * per_call], (flat, keys))
              for g in range(groups)]
    return [sweep_lib._put(group, sharding) for group in inputs], per_call, sharding


def _execute(spec: Spec, run_dir: pathlib.Path, *, restored=None, devices=None,
             progress: bool = True, tensorboard: bool = False,
             stop_after_chunks: int | None = None, plots: bool = True,
             max_runs_per_call: int | None = None) -> Result:
    devices = _devices(devices, spec.num_runs)
    joined = functools.partial(sweep_lib.joined, rows=spec.num_runs, devices=devices)
    inputs, per_call, sharding = _run_inputs(spec, devices, max_runs_per_call)
    groups = len(inputs)
    config = spec.config
    total = config.num_updates
    compile_s = 0.0
    start = time.perf_counter()
    metrics = {k: np.full((spec.num_settings, spec.seeds, total), np.nan, np.float32)
               for k in METRIC_NAMES}
    if restored is None:
        # The initial states are built on one device and then laid out over the mesh, as
        # `jaxppo.sweep.run_sharded` does.
        local = jax.sharding.SingleDeviceSharding(sweep_lib._local_device(devices))
        states = [sweep_lib._put(sweep_lib.init_batch(*sweep_lib._put(group, local)), sharding)
                  for group in inputs]
        done = 0
    else:
        host_state, history, done = restored
        like = jax.eval_shape(jax.vmap(train_lib.init), *inputs[0])
        host_state = _pad(host_state, groups * per_call)
        states = [jax.device_put(_from_host(jax.tree.map(
            lambda x, g=g: x[g * per_call:(g + 1) * per_call], host_state), like), sharding)
            for g in range(groups)]
        for k, v in history.items():
            metrics[k][..., :done] = v
    length = spec.chunk_updates
    chunk = _compiled_chunk(config, per_call, devices, length, inputs[0][0], states[0],
                      jnp.asarray(length, jnp.int32))
    compile_s = time.perf_counter() - start

    metrics_path = run_dir / METRICS_FILE
    # Rewritten from the checkpoint chunk by chunk, in the order an uninterrupted run writes.
    _write_metrics(metrics_path, spec, metrics, 0, 0, fresh=True)
    for start in range(0, done, spec.chunk_updates):
        _write_metrics(metrics_path, spec, metrics, start, min(start + spec.chunk_updates, done),
                       fresh=False)
    writer = _TensorBoard(run_dir, spec) if tensorboard else None
    manager = _manager(run_dir)
    bar = _Progress(progress, total * config.batch_size, spec.num_runs,
                    done * config.batch_size, config.env_id)
    run_s = 0.0
    chunks = 0
    first = done
    interrupted = False
    try:
        with _interrupt_flag() as flag:
            while done < total:
                active = min(length, total - done)
                tick = time.perf_counter()
                host = []
                for g, (configs, _) in enumerate(inputs):
                    states[g], chunk_metrics = chunk(configs, states[g],
                                                     jnp.asarray(active, jnp.int32))
                    host.append(jax.device_get(chunk_metrics))
                run_s += time.perf_counter() - tick
                for name in METRIC_NAMES:
                    values = np.concatenate([np.asarray(getattr(h, name)) for h in host],
                                            axis=1)[:active, : spec.num_runs]
                    metrics[name][..., done : done + active] = values.T.reshape(
                        spec.num_settings, spec.seeds, active)
                _write_metrics(metrics_path, spec, metrics, done, done + active, fresh=False)
                if writer is not None:
                    writer.write(metrics, done, done + active)
                done += active
                chunks += 1
                bar.update(done * config.batch_size,
                           spec.num_runs * (done - first) * config.batch_size / max(run_s, 1e-9),
                           _current_iqm(metrics, done))
                stop = stop_after_chunks is not None and chunks >= stop_after_chunks
                if flag["set"] or stop:
                    interrupted = done < total
                    break
                if chunks % spec.checkpoint_every == 0 and done < total:
                    _save(manager, spec, joined(states), metrics, done)
            if done > first:  # a finished run resumed has nothing new to save
                _save(manager, spec, joined(states), metrics, done)
            manager.wait_until_finished()
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    result = Result(run_dir=run_dir, spec=spec, state=joined(states),
                    metrics={k: v[..., :done] for k, v in metrics.items()},
                    updates_done=done, interrupted=interrupted, compile_s=compile_s,
                    run_s=run_s, updates_run=done - first)
    result.paths = {"run directory": run_dir, "config": run_dir / CONFIG_FILE,
                    "metrics": metrics_path, "checkpoints": run_dir / CHECKPOINTS}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(_summary(result), indent=2) + "\n")
    result.paths["summary"] = run_dir / SUMMARY_FILE
    if writer is not None:
        result.paths["tensorboard"] = run_dir / "tensorboard"
    if plots and done > 0:
        from jaxppo import plots as plots_lib

        result.paths.update(plots_lib.plot_run(result))
    return result


def _prepare_dir(out, overwrite: bool) -> pathlib.Path:
    run_dir = pathlib.Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunError(f"{run_dir} already holds files; pass overwrite=True (--overwrite) "
                           "to replace them, `resume` to continue that run, or choose another "
                           "directory")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def run(config: Config, seeds: int = 8, out="runs/run", *,
        space: Mapping[str, Sequence[float]] | None = None, seed: int = 0,
        chunk_updates: int | None = None, checkpoint_every: int = 10,
        progress: bool = True, tensorboard: bool = False, overwrite: bool = False,
        devices: Sequence[Any] | None = None, plots: bool = True,
        stop_after_chunks: int | None = None, max_runs_per_call: int | None = None) -> Result:
    """Train ``seeds`` seeds of ``config`` (of every setting of ``space``) into ``out``.

    Args:
        config: the base Config.
        seeds: S, seeds per setting, trained at once.
        out: the run directory; it must not hold files unless ``overwrite``.
        space: None, or settings of dynamic fields as in `jaxppo.sweep` (a grid or a table).
        seed: base seed of the S keys (the same S keys for every setting).
        chunk_updates: updates per compiled chunk (default: about 50 chunks per run).
        checkpoint_every: chunks between checkpoints; one is always saved at the end and
            on Ctrl-C.
        progress: show a progress bar.
        tensorboard: also write TensorBoard event files (needs ``tensorboardX``).
        overwrite: delete what ``out`` holds first.
        devices: devices to spread the runs over (default: all, up to one per run; on a
            CPU see `jaxppo.use_cpu_cores`).
        plots: write the learning-curve plot (and a sweep plot).
        stop_after_chunks: stop (with a checkpoint) after this many chunks, as Ctrl-C does.
        max_runs_per_call: at most this many runs in one call (default: as many as fit in
            device memory, `jaxppo.memory`); more take turns in each chunk.

    Returns:
        A `Result`. Ctrl-C during a run saves a checkpoint and the metrics so far and
        returns with ``interrupted=True``; `resume` continues it.
    """
    spec = make_spec(config, space, seeds=seeds, seed=seed, chunk_updates=chunk_updates,
                     checkpoint_every=checkpoint_every)
    if tensorboard:
        _TensorBoard.check()
    run_dir = _prepare_dir(out, overwrite)
    (run_dir / CONFIG_FILE).write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    return _execute(spec, run_dir, devices=devices, progress=progress,
                    tensorboard=tensorboard, stop_after_chunks=stop_after_chunks, plots=plots,
                    max_runs_per_call=max_runs_per_call)


def load_spec(run_dir) -> Spec:
    """The `Spec` of a run directory's config.json (a `RunError` if missing or malformed)."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunError(f"{path} is not valid JSON: {error}") from None
    try:
        return Spec.from_json(data)
    except RunError:
        raise
    except (ValueError, TypeError) as error:
        raise RunError(f"{path} describes an invalid run: {error}") from None


def _abstract_state(spec: Spec):
    """Shapes and dtypes of a one-run batch of train states (what a checkpoint must hold,
    but for the run count)."""
    configs = config_lib.stack_configs(spec.configs()[:1])
    return jax.eval_shape(jax.vmap(train_lib.init), configs,
                          jax.random.split(jax.random.key(0), 1))


def restore(run_dir, devices: Sequence[Any] | None = None):
    """(spec, state [H * S, ...] on device, metrics [H, S, done], done) of the newest
    checkpoint of ``run_dir``."""
    run_dir = pathlib.Path(run_dir)
    spec = load_spec(run_dir)
    like = _abstract_state(spec)
    host, history, done = _restore(run_dir, spec, like)
    state = _from_host(host, like)
    return spec, state, history, done


def resume(run_dir, *, progress: bool = True, tensorboard: bool = False,
           devices: Sequence[Any] | None = None, plots: bool = True,
           stop_after_chunks: int | None = None, max_runs_per_call: int | None = None
           ) -> Result:
    """Continue the run in ``run_dir`` from its newest checkpoint to the end.

    Gives, bit for bit, the final state and metrics of the run never stopped (same compiled
    chunk, same state). metrics.csv is rewritten from the checkpoint first, so updates run
    after the checkpoint and before a stop are not counted twice.
    """
    run_dir = pathlib.Path(run_dir)
    spec = load_spec(run_dir)
    devices = _devices(devices, spec.num_runs)
    restored = _restore(run_dir, spec, _abstract_state(spec))
    if tensorboard:
        _TensorBoard.check()
    return _execute(spec, run_dir, restored=restored, devices=devices, progress=progress,
                    tensorboard=tensorboard, stop_after_chunks=stop_after_chunks, plots=plots,
                    max_runs_per_call=max_runs_per_call)


# ---------------------------------------------------------------------------------------------
# TensorBoard (optional).


class _TensorBoard:
    """Event files per setting: the IQM and each seed's training return, seed means of the
    other metrics; x = env steps per run. Written from the host between chunks."""

    @staticmethod
    def check() -> None:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise RunError("tensorboard=True needs the tensorboardX package: "
                           "pip install 'jaxppo[tensorboard]'") from None

    def __init__(self, run_dir: pathlib.Path, spec: Spec) -> None:
        from tensorboardX import SummaryWriter

        self.spec = spec
        self.writers = [SummaryWriter(str(run_dir / "tensorboard" / f"setting{h}"))
                        for h in range(spec.num_settings)]

    def write(self, metrics, start: int, stop: int) -> None:
        batch = self.spec.config.batch_size
        for h, writer in enumerate(self.writers):
            for u in range(start, stop):
                step = (u + 1) * batch
                returns = metrics["episode_return"][h, :, u]
                finite = returns[~np.isnan(returns)]
                if finite.size:
                    writer.add_scalar("episode_return/iqm", stats.iqm(finite), step)
                for s, value in enumerate(returns):
                    if not np.isnan(value):
                        writer.add_scalar(f"episode_return/seed{s}", float(value), step)
                for name in METRIC_NAMES:
                    if name not in ("env_steps", "episode_return"):
                        value = np.nanmean(metrics[name][h, :, u]) if not np.isnan(
                            metrics[name][h, :, u]).all() else None
                        if value is not None:
                            writer.add_scalar(f"train/{name}", float(value), step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
