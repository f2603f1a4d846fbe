"""The experiment runner: many seeds (and settings) trained in chunks, checkpointed, resumable.

    result = jaxppo.experiment.run(jaxppo.Config(), seeds=8, out="runs/cartpole")
    result = jaxppo.experiment.resume("runs/cartpole")        # after a Ctrl-C, say

    # What a run writes and shows, and how it uses the devices, are two records:
    output = jaxppo.experiment.Output(progress=False, overwrite=True)
    execution = jaxppo.experiment.Execution(stop_after_chunks=20)
    result = jaxppo.experiment.run(config, 8, "runs/cartpole", output=output,
                                   execution=execution)

The pure core (`jaxppo.train`) is one XLA program that returns metrics at the end. A run
here is the same computation cut into chunks: ``jax.jit`` of `jaxppo.train.run_updates` for
``chunk_updates`` updates, vmapped over the flattened (settings x seeds) run axis
(`jaxppo.placement`), the train state donated from chunk to chunk. Between chunks the host
appends the per-update metrics to metrics.csv, updates the progress display and, every
``checkpoint_every`` chunks, saves the whole train state (`jaxppo.rundir` holds every file of
the run directory). A run stopped after any chunk and resumed gives the final params and
metrics of the uninterrupted run bit for bit: the same compiled chunk runs on the same state.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxppo import placement, rundir
from jaxppo import progress as progress_lib
from jaxppo import spec as spec_lib
from jaxppo import sweep as sweep_lib
from jaxppo import train as train_lib
from jaxppo.config import Config
from jaxppo.spec import Spec

RunError = spec_lib.RunError


# ---------------------------------------------------------------------------------------------
# What a run is asked for, besides its spec.


@dataclasses.dataclass(frozen=True)
class Output:
    """What a run writes and shows besides config.json, metrics.csv, checkpoints and
    summary.json (which it always writes).

    Attributes:
        progress: show the progress (a bar on a terminal, a line per chunk elsewhere).
        tensorboard: also write TensorBoard event files (needs ``tensorboardX``).
        plots: write the learning-curve plot (and a sweep plot).
        overwrite: delete what the run directory holds first (`run` only).
    """

    progress: bool = True
    tensorboard: bool = False
    plots: bool = True
    overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a run uses the devices, and when it stops early.

    Attributes:
        devices: devices to spread the runs over (default: all, up to one per run; on a CPU
            see `jaxppo.use_cpu_cores`).
        max_runs_per_call: at most this many runs in one call (default: as many as fit in
            device memory, `jaxppo.memory`); more take turns in each chunk.
        stop_after_chunks: stop (with a checkpoint) after this many chunks, as Ctrl-C does.
    """

    devices: Sequence[Any] | None = None
    max_runs_per_call: int | None = None
    stop_after_chunks: int | None = None


def _with_keywords(output: Output, execution: Execution, keywords: Mapping[str, Any],
                   caller: str) -> tuple[Output, Execution]:
    """The records with the fields named by the flat keyword arguments (``progress=``,
    ``devices=``, ...) that `run` and `resume` also accept, replaced."""
    fields = {type(r): {f.name for f in dataclasses.fields(r)} for r in (output, execution)}
    unknown = sorted(set(keywords) - fields[Output] - fields[Execution])
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    return (dataclasses.replace(output, **{k: v for k, v in keywords.items()
                                           if k in fields[Output]}),
            dataclasses.replace(execution, **{k: v for k, v in keywords.items()
                                              if k in fields[Execution]}))


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
        """[H, S]: mean training return over each run's last ``window`` updates done; NaN
        for a run that diverged (`divergences`)."""
        return rundir.final_returns(self.metrics, window)

    def divergences(self) -> list[dict[str, Any]]:
        """The runs that went non-finite (`rundir.divergences`): setting, label, seed, the
        update that diverged and what went first."""
        return rundir.divergences(self.spec, self.metrics)

    def setting_labels(self) -> list[str]:
        return spec_lib.setting_labels(self.spec)

    def env_steps(self) -> np.ndarray:
        """Env steps per run at the end of each update done [updates_done]."""
        return (np.arange(1, self.updates_done + 1) * self.spec.config.batch_size)


# ---------------------------------------------------------------------------------------------
# The compiled chunk, cached per program (config treedef, run count, devices, chunk length),
# so that a notebook or a test session compiles each once.


def _chunk(configs: Config, state: train_lib.TrainState, active: jax.Array, *, length: int):
    """``length`` updates of every run [P]; updates at index >= ``active`` leave the state
    unchanged (``active`` is not batched, so one compiled chunk serves the last, shorter
    chunk of a run too). Metrics are [P, length]."""
    return jax.vmap(train_lib.run_updates, in_axes=(0, 0, None, None))(
        configs, state, length, active)


_COMPILED: dict[tuple, Callable] = {}


def clear_compiled() -> None:
    """Forget the compiled chunks (an env id re-registered with another env)."""
    _COMPILED.clear()


def _compiled_chunk(devices: tuple, length: int, configs: Config, state):
    """The chunk compiled for these configs [P] and states [P] (placed on ``devices``)."""
    # The configs' treedef holds the static fields and the names of env_params: the program.
    key = (jax.tree.structure(configs), jax.tree.leaves(state)[0].shape[0], devices, length)
    if key not in _COMPILED:
        fn = jax.jit(_chunk, static_argnames=("length",), donate_argnums=(1,))
        _COMPILED[key] = fn.lower(configs, state, jnp.asarray(length, jnp.int32),
                                  length=length).compile()
    return _COMPILED[key]


# ---------------------------------------------------------------------------------------------
# The runs laid out over the devices.


@dataclasses.dataclass(frozen=True)
class _Layout:
    """The runs in G calls of P runs each (the last padded with copies of the last run), each
    call's runs split over ``devices`` by ``sharding``.

    Attributes:
        devices: the devices of every call.
        sharding: how a call's runs [P] lie on them.
        per_call: P.
        configs: G stacked configs, dynamic leaves [P], placed.
        keys: G PRNG key arrays [P], placed.
    """

    devices: tuple
    sharding: jax.sharding.Sharding
    per_call: int
    configs: list
    keys: list


def _layout(spec: Spec, execution: Execution) -> _Layout:
    """Every run of ``spec`` laid out for the calls; more than one call when they do not fit
    in device memory at once (`placement.plan_calls` warns then)."""
    devices = tuple(placement.default_devices(spec.num_runs) if execution.devices is None
                    else execution.devices)
    per_call, calls = placement.plan_calls(spec.config, spec.num_runs, list(devices),
                                           execution.max_runs_per_call)
    sharding = placement.runs_sharding(devices)
    flat = placement.flat_runs(spec.configs(), spec.seeds, jax.random.key(spec.seed))
    placed = [placement.put(call, sharding)
              for call in placement.split_calls(flat, calls, per_call)]
    return _Layout(devices, sharding, per_call, [c for c, _ in placed], [k for _, k in placed])


def _initial_states(layout: _Layout) -> list:
    """Each call's initial states, built on one device (as `jaxppo.sweep.run_sharded` does)
    and then laid out over the devices."""
    local = jax.sharding.SingleDeviceSharding(placement.local_device(layout.devices))
    return [placement.put(sweep_lib.init_batch(*placement.put((configs, keys), local)),
                          layout.sharding)
            for configs, keys in zip(layout.configs, layout.keys, strict=True)]


def _restored_states(layout: _Layout, state) -> list:
    """Each call's slice of a restored state [H * S, ...], laid out over the devices."""
    calls = placement.split_calls(state, len(layout.configs), layout.per_call)
    return [placement.put(call, layout.sharding) for call in calls]


def _joined(spec: Spec, layout: _Layout, states: list):
    return placement.joined(states, rows=spec.num_runs, devices=layout.devices)


# ---------------------------------------------------------------------------------------------
# The loop over chunks.


@dataclasses.dataclass
class _Loop:
    """The runner's bookkeeping between chunks (host side).

    Attributes:
        states: each call's train states [P, ...] on the devices.
        metrics: metric name -> [H, S, num_updates] (NaN where not yet run).
        done: updates done.
        first: updates done when this process began (restored from a checkpoint).
        saved: updates done at the newest checkpoint on disk (None: none yet).
        chunks: chunks run by this process.
        compile_s: seconds spent compiling (and laying out the runs) in this process.
        run_s: seconds spent in those chunks.
        interrupted: stopped before the end.
    """

    states: list
    metrics: dict[str, np.ndarray]
    done: int
    first: int
    saved: int | None
    chunks: int = 0
    compile_s: float = 0.0
    run_s: float = 0.0
    interrupted: bool = False


@dataclasses.dataclass
class _Sinks:
    """Where the chunks' results go on the host besides metrics.csv."""

    checkpoints: rundir.Checkpoints
    tensorboard: rundir.TensorBoard | None
    progress: progress_lib.Progress | None

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.checkpoints.close()


def _start(spec: Spec, layout: _Layout, restored) -> _Loop:
    """The loop at its start: fresh states, or those and the metrics of a checkpoint."""
    metrics = {k: np.full((spec.num_settings, spec.seeds, spec.config.num_updates), np.nan,
                          np.float32) for k in rundir.METRIC_NAMES}
    if restored is None:
        return _Loop(_initial_states(layout), metrics, 0, 0, None)
    state, history, done = restored
    for k, v in history.items():
        metrics[k][..., :done] = v
    return _Loop(_restored_states(layout, state), metrics, done, done, done)


def _run_chunk(spec: Spec, layout: _Layout, chunk: Callable, loop: _Loop, active: int) -> None:
    """One chunk of ``active`` updates of every call; its metrics into ``loop.metrics``."""
    tick = time.perf_counter()
    host = []
    for c, configs in enumerate(layout.configs):
        loop.states[c], chunk_metrics = chunk(configs, loop.states[c],
                                              jnp.asarray(active, jnp.int32))
        host.append(jax.device_get(chunk_metrics))
    loop.run_s += time.perf_counter() - tick
    for name in rundir.METRIC_NAMES:
        values = np.concatenate([np.asarray(getattr(h, name)) for h in host])
        loop.metrics[name][..., loop.done:loop.done + active] = placement.unflatten(
            values[:spec.num_runs, :active], spec.num_settings, spec.seeds)
    loop.done += active
    loop.chunks += 1


def _report_chunk(spec: Spec, run_dir: pathlib.Path, loop: _Loop, sinks: _Sinks,
                  active: int) -> None:
    """The chunk just run: its rows of metrics.csv, TensorBoard, the progress display."""
    start = loop.done - active
    rundir.write_metrics(run_dir, spec, loop.metrics, start, loop.done)
    if sinks.tensorboard is not None:
        sinks.tensorboard.write(loop.metrics, start, loop.done)
    if sinks.progress is not None:
        steps = spec.num_runs * (loop.done - loop.first) * spec.config.batch_size
        sinks.progress.update(loop.done, steps / max(loop.run_s, 1e-9), progress_lib.iqm_so_far(
            loop.metrics["episode_return"][..., :loop.done]))


def _save(spec: Spec, layout: _Layout, loop: _Loop, sinks: _Sinks) -> None:
    sinks.checkpoints.save(spec, _joined(spec, layout, loop.states), loop.metrics, loop.done)
    loop.saved = loop.done


def _train_chunks(spec: Spec, run_dir: pathlib.Path, layout: _Layout, chunk: Callable,
                  loop: _Loop, sinks: _Sinks, flag: progress_lib.InterruptFlag,
                  stop_after_chunks: int | None) -> None:
    """Chunks until the end, a Ctrl-C (``flag``, also one while compiling: then no chunk
    runs) or ``stop_after_chunks``; checkpoints on the way and one at the end, unless the
    newest on disk is already that state or no update was done (`resume` then starts from
    config.json)."""
    total = spec.config.num_updates
    while loop.done < total and not flag.requested and (
            stop_after_chunks is None or loop.chunks < stop_after_chunks):
        active = min(spec.chunk_updates, total - loop.done)
        _run_chunk(spec, layout, chunk, loop, active)
        _report_chunk(spec, run_dir, loop, sinks, active)
        if loop.chunks % spec.checkpoint_every == 0:
            _save(spec, layout, loop, sinks)
    loop.interrupted = loop.done < total
    if loop.saved != loop.done and loop.done > 0:
        _save(spec, layout, loop, sinks)


def _execute(spec: Spec, run_dir: pathlib.Path, output: Output, execution: Execution,
             restored=None) -> Result:
    """Train ``spec`` in ``run_dir`` from the start or from ``restored`` (state, metrics,
    done); write everything; the `Result`. A write that fails is a `RunError` saying what
    the directory still holds."""
    start = time.perf_counter()
    # From the start: a Ctrl-C while compiling stops the run before its first chunk.
    with progress_lib.interrupt_flag() as flag:
        layout = _layout(spec, execution)
        loop = _start(spec, layout, restored)
        chunk = _compiled_chunk(layout.devices, spec.chunk_updates, layout.configs[0],
                                loop.states[0])
        loop.compile_s = time.perf_counter() - start
        try:
            return _train_and_write(spec, run_dir, output, execution, layout, chunk, loop, flag)
        except (OSError, rundir.WriteError) as error:
            raise RunError(_write_failure(run_dir, loop, error)) from None


def _train_and_write(spec: Spec, run_dir: pathlib.Path, output: Output, execution: Execution,
                     layout: _Layout, chunk: Callable, loop: _Loop,
                     flag: progress_lib.InterruptFlag) -> Result:
    # metrics.csv as the checkpoint has it: rows a stopped process wrote after its newest
    # checkpoint are run again, not counted twice.
    rundir.rewrite_metrics(run_dir, spec, loop.metrics, loop.done)
    config = spec.config
    sinks = _Sinks(
        rundir.Checkpoints(run_dir),
        rundir.TensorBoard(run_dir, spec) if output.tensorboard else None,
        progress_lib.Progress(config.env_id, config.num_updates, config.batch_size,
                              spec.num_runs, loop.done) if output.progress else None)
    try:
        _train_chunks(spec, run_dir, layout, chunk, loop, sinks, flag,
                      execution.stop_after_chunks)
    finally:
        sinks.close()
    result = Result(run_dir=run_dir, spec=spec, state=_joined(spec, layout, loop.states),
                    metrics={k: v[..., :loop.done] for k, v in loop.metrics.items()},
                    updates_done=loop.done, interrupted=loop.interrupted,
                    compile_s=loop.compile_s, run_s=loop.run_s,
                    updates_run=loop.done - loop.first)
    result.paths = _write_results(result, output)
    return result


def _write_failure(run_dir: pathlib.Path, loop: _Loop, error: BaseException) -> str:
    """One line: what could not be written, and what the run directory still holds."""
    what = str(error) if isinstance(error, RunError) else f"cannot write in {run_dir}: {error}"
    if loop.saved is None:
        return f"{what}; no checkpoint was saved yet: `resume` trains the run from the start"
    return (f"{what}; the checkpoint after {loop.saved} updates is intact, as is metrics.csv, "
            "and `resume` continues from it")


def _write_results(result: Result, output: Output) -> dict[str, pathlib.Path]:
    """summary.json and the plots of a run; name -> path of what the run wrote."""
    run_dir = result.run_dir
    paths = {"run directory": run_dir, "config": run_dir / rundir.CONFIG_FILE,
             "metrics": run_dir / rundir.METRICS_FILE,
             "checkpoints": run_dir / rundir.CHECKPOINTS}
    paths["summary"] = rundir.write_summary(
        run_dir, rundir.summary(result.spec, result.metrics, result.updates_done))
    if output.tensorboard:
        paths["tensorboard"] = run_dir / rundir.TENSORBOARD
    if output.plots and result.updates_done > 0:
        from jaxppo import plots as plots_lib

        paths.update(plots_lib.plot_run(result))
    return paths


# ---------------------------------------------------------------------------------------------
# The entry points.


def run(config: Config, seeds: int = 8, out="runs/run", *,
        space: Mapping[str, Sequence[float]] | None = None, seed: int = 0,
        chunk_updates: int | None = None, checkpoint_every: int = 10,
        output: Output = Output(), execution: Execution = Execution(),
        **keywords: Any) -> Result:
    """Train ``seeds`` seeds of ``config`` (of every setting of ``space``) into ``out``.

    Args:
        config: the base Config.
        seeds: S, seeds per setting, trained at once.
        out: the run directory; it must not hold files unless ``output.overwrite``, nor be
            in use by another process.
        space: None, or settings of dynamic fields as in `jaxppo.sweep` (a grid or a table).
        seed: base seed of the S keys (the same S keys for every setting).
        chunk_updates: updates per compiled chunk (default: about 50 chunks per run).
        checkpoint_every: chunks between checkpoints; one is always saved at the end and
            on Ctrl-C.
        output: what the run writes and shows (`Output`: progress, tensorboard, plots,
            overwrite).
        execution: how the run uses the devices (`Execution`: devices, max_runs_per_call,
            stop_after_chunks).
        **keywords: any field of `Output` or `Execution` by name (``progress=False``,
            ``devices=...``), replacing the record's.

    Returns:
        A `Result`. Ctrl-C during a run stops it after the chunk running, saves a
        checkpoint and the metrics so far and returns with ``interrupted=True``; while it
        compiles, before the first chunk (config.json is then all there is to resume from).
        `resume` continues it.
    """
    output, execution = _with_keywords(output, execution, keywords, "run")
    spec = spec_lib.make_spec(config, space, seeds=seeds, seed=seed,
                              chunk_updates=chunk_updates, checkpoint_every=checkpoint_every)
    if output.tensorboard:
        rundir.TensorBoard.check()
    rundir.check_new(out, output.overwrite)
    with rundir.locked(out) as run_dir:
        rundir.prepare(run_dir, output.overwrite)
        rundir.write_spec(run_dir, spec)
        return _execute(spec, run_dir, output, execution)


def restore(run_dir):
    """(spec, state [H * S, ...], metrics [H, S, done], done) of the newest checkpoint of
    ``run_dir``; the state on the default device."""
    spec = rundir.read_spec(run_dir)
    state, history, done = rundir.restore_checkpoint(run_dir, spec)
    return spec, state, history, done


def resume(run_dir, *, output: Output = Output(),
           execution: Execution = Execution(), **keywords: Any) -> Result:
    """Continue the run in ``run_dir`` from its newest checkpoint to the end.

    Gives, bit for bit, the final state and metrics of the run never stopped (same compiled
    chunk, same state). metrics.csv is rewritten from the checkpoint first, so updates run
    after the checkpoint and before a stop are not counted twice. A run stopped or killed
    before its first checkpoint starts from the beginning; a finished run is returned as it
    is (``updates_run == 0``), nothing written.

    Args:
        run_dir: a run directory written by `run`.
        output: as for `run`; ``overwrite`` does not apply (the run continues in place).
        execution: as for `run`; the devices may differ from the run's.
        **keywords: any field of `Output` or `Execution` by name, as for `run`.

    Raises:
        RunError: no run directory, one in use by another process, a damaged checkpoint,
            or a config.json that differs from the one the checkpoint was written with.
    """
    output, execution = _with_keywords(output, execution, keywords, "resume")
    if output.overwrite:
        raise ValueError("resume continues a run in place: overwrite=True does not apply")
    run_dir = pathlib.Path(run_dir)
    spec = rundir.read_spec(run_dir)
    if output.tensorboard:
        rundir.TensorBoard.check()
    with rundir.locked(run_dir):
        restored = (None if rundir.latest_checkpoint(run_dir) is None
                    else rundir.restore_checkpoint(run_dir, spec))
        if restored is not None and restored[2] >= spec.config.num_updates:
            state, history, done = restored
            return Result(run_dir=run_dir, spec=spec, state=state, metrics=history,
                          updates_done=done)
        return _execute(spec, run_dir, output, execution, restored=restored)
