"""Every file of a run directory: names, writers and readers, in one place.

A run directory holds:

    config.json       the `jaxppo.spec.Spec`: base Config, swept settings, seeds, chunking
    metrics.csv       tidy per-update metrics: setting, config.<swept field>..., seed, update,
                      env_steps, then one column per `jaxppo.Metrics` field
    checkpoints/      orbax checkpoints, one folder per number of updates done
    summary.json      final returns per run and their aggregates per setting
    plots/            learning_curve.png (and sweep.png for a sweep)
    tensorboard/      event files, when asked for
    eval.json         returns of the trained policies, written by ``jaxppo eval``

Checkpoints hold the train state in host form: plain numpy arrays, PRNG keys as their key
data, so a checkpoint does not depend on the device layout of the run that wrote it. orbax is
imported here only.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
import shutil
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxppo import config as config_lib
from jaxppo import placement, prng, stats
from jaxppo import spec as spec_lib
from jaxppo import train as train_lib
from jaxppo.spec import RunError, Spec

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINTS = "checkpoints"
EVAL_FILE = "eval.json"
PLOTS = "plots"
LEARNING_CURVE = "learning_curve.png"  # under PLOTS
SWEEP_PLOT = "sweep.png"  # under PLOTS
TENSORBOARD = "tensorboard"

# What a reader of metrics.csv looks at first; then every other Metrics field in its order.
_LEADING = ("env_steps", "episode_return", "episode_length", "episode_count")
#: Every `jaxppo.Metrics` field, in metrics.csv's order.
METRIC_NAMES = _LEADING + tuple(f.name for f in dataclasses.fields(train_lib.Metrics)
                                if f.name not in _LEADING)

# The train state's layout in a checkpoint. 3: Adam's moments are one flat vector over all
# params (`update.make_optimizer`) and its state holds no schedule count (the learning rate
# follows the update, `update.learning_rate_at`); 2 held that count, 1 the moments per leaf.
CHECKPOINT_FORMAT = 3


# ---------------------------------------------------------------------------------------------
# The directory and config.json.


def prepare(out, overwrite: bool) -> pathlib.Path:
    """The run directory ``out``, created; one that holds files is emptied only when
    ``overwrite`` (else a `RunError`, before anything is written)."""
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


def write_spec(run_dir, spec: Spec) -> pathlib.Path:
    """Write config.json; returns its path."""
    path = pathlib.Path(run_dir) / CONFIG_FILE
    path.write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    return path


def read_spec(run_dir) -> Spec:
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
    except KeyError as missing:
        raise RunError(f"{CONFIG_FILE} lacks the entry {missing}") from None
    except RunError:
        raise
    except (ValueError, TypeError) as error:
        raise RunError(f"{path} describes an invalid run: {error}") from None


# ---------------------------------------------------------------------------------------------
# metrics.csv.


def metrics_header(spec: Spec) -> list[str]:
    """The columns of metrics.csv."""
    # Swept values are columns "config.<field>": a metric may share the field's name
    # (learning_rate is also the per-update, possibly annealed, rate).
    return ["setting", *[f"config.{k}" for k in spec.settings], "seed", "update", "env_steps",
            *[m for m in METRIC_NAMES if m != "env_steps"]]


def _metrics_rows(spec: Spec, metrics: Mapping[str, np.ndarray], start: int, stop: int
                  ) -> Iterator[list]:
    """Rows for updates [start, stop) of every run, from metrics [H, S, >= stop]."""
    names = [m for m in METRIC_NAMES if m != "env_steps"]
    batch = spec.config.batch_size
    for h in range(spec.num_settings):
        swept = [repr(v[h]) for v in spec.settings.values()]
        for s in range(spec.seeds):
            yield from ([h, *swept, s, u, (u + 1) * batch,
                         *[_csv_number(metrics[m][h, s, u]) for m in names]]
                        for u in range(start, stop))


def _csv_number(x) -> str:
    x = x.item() if hasattr(x, "item") else x
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.9g}"
    return str(x)


def write_metrics(run_dir, spec: Spec, metrics: Mapping[str, np.ndarray], start: int,
                  stop: int, *, fresh: bool = False) -> pathlib.Path:
    """Append the rows of updates [start, stop) of every run to metrics.csv (``fresh``: a
    new file with its header first); ``metrics`` are [H, S, >= stop]."""
    path = pathlib.Path(run_dir) / METRICS_FILE
    with path.open("w" if fresh else "a", newline="") as f:
        writer = csv.writer(f)
        if fresh:
            writer.writerow(metrics_header(spec))
        writer.writerows(_metrics_rows(spec, metrics, start, stop))
    return path


def read_metrics(run_dir) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv as dicts (strings; empty string for NaN)."""
    with (pathlib.Path(run_dir) / METRICS_FILE).open(newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# summary.json and eval.json.


def reliability(curves: np.ndarray, final: np.ndarray) -> dict[str, float] | None:
    """Chan et al. (2020) reliability of S training curves [S, U] (`stats.reliability`:
    smoothing and within-run windows of 10 updates, CVaR of the worst 5% (at least one run)),
    or None when a run has no finished episode yet."""
    finite = ~np.isnan(final)
    if not finite.all() or curves.shape[-1] < 2:
        return None
    return {k: float(v) for k, v in stats.reliability(
        curves, final, smoothing_window=10, window=10).items()}


def _setting_summary(spec: Spec, h: int, label: str, returns: np.ndarray, final: np.ndarray
                     ) -> dict[str, Any]:
    """summary.json's entry of setting h: returns [S, U], final [S]."""
    finite = final[~np.isnan(final)]
    entry = {"setting": h, "label": label, **{k: v[h] for k, v in spec.settings.items()},
             "final_returns": [None if math.isnan(x) else float(x) for x in final]}
    if finite.size:
        entry["aggregate"] = stats.aggregate(finite)
    entry["reliability"] = reliability(returns, final)
    return entry


def summary(spec: Spec, metrics: Mapping[str, np.ndarray], updates_done: int
            ) -> dict[str, Any]:
    """summary.json's content: progress, and per setting the final returns of its seeds
    (mean training return over the last 10 updates), their aggregate and reliability.

    Args:
        spec: the run's `Spec`.
        metrics: metric name -> [H, S, updates_done].
        updates_done: updates completed.
    """
    final = stats.final_returns(metrics["episode_return"], 10)
    labels = spec_lib.setting_labels(spec)
    return {"updates_done": updates_done, "num_updates": spec.config.num_updates,
            "env_steps_per_run": updates_done * spec.config.batch_size,
            "finished": updates_done >= spec.config.num_updates,
            "settings": [_setting_summary(spec, h, labels[h], metrics["episode_return"][h],
                                          final[h]) for h in range(spec.num_settings)]}


def write_summary(run_dir, content: Mapping[str, Any]) -> pathlib.Path:
    """Write summary.json (`summary`'s content); returns its path."""
    path = pathlib.Path(run_dir) / SUMMARY_FILE
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


def write_eval(run_dir, report: Mapping[str, Any]) -> pathlib.Path:
    """Write eval.json (the report of ``jaxppo eval``); returns its path."""
    path = pathlib.Path(run_dir) / EVAL_FILE
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Checkpoints (orbax): the train state in host form.


def _to_host(state, runs: int):
    return jax.tree.map(lambda x: placement.host(x)[:runs], state)


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


def _abstract_state(spec: Spec):
    """Shapes and dtypes of a one-run batch of train states (what a checkpoint must hold,
    but for the run count)."""
    configs = config_lib.stack_configs(spec.configs()[:1])
    return jax.eval_shape(jax.vmap(train_lib.init), configs,
                          jax.random.split(jax.random.key(0), 1))


def _manager(run_dir: pathlib.Path, max_to_keep: int = 2):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager((run_dir / CHECKPOINTS).absolute(), options=options)


class Checkpoints:
    """The checkpoints of a run directory being written: one folder per number of updates
    done, the newest two kept. A save is atomic; `wait` waits for the last one."""

    def __init__(self, run_dir) -> None:
        self.manager = _manager(pathlib.Path(run_dir))

    def save(self, spec: Spec, state, metrics: Mapping[str, np.ndarray], done: int) -> None:
        """Save the state of every run [>= H * S, ...] and the metrics [H, S, >= done]."""
        import orbax.checkpoint as ocp

        meta = {"format": CHECKPOINT_FORMAT, "updates_done": done, "runs": spec.num_runs,
                "static": spec_lib.static_values(spec.config)}
        self.manager.save(done, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_host(state, spec.num_runs)),
            history=ocp.args.StandardSave({k: np.ascontiguousarray(v[..., :done])
                                           for k, v in metrics.items()}),
            meta=ocp.args.JsonSave(meta),
        ), force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()


def restore_checkpoint(run_dir, spec: Spec):
    """(state [H * S, ...], metrics [H, S, done], done) of the newest checkpoint of
    ``run_dir``; the state's arrays on the default device, PRNG keys typed again.

    Raises:
        RunError: no checkpoint, a damaged one, or one of another program or run count.
    """
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / CHECKPOINTS).is_dir():
        raise RunError(f"{run_dir} holds no checkpoint (no {CHECKPOINTS}/ folder)")
    manager = _manager(run_dir)
    step = manager.latest_step()
    if step is None:
        raise RunError(f"{run_dir / CHECKPOINTS} holds no finished checkpoint")
    _check_meta(_read_meta(manager, run_dir, step), spec, run_dir, step)
    like = _abstract_state(spec)
    host, history = _read_arrays(manager, run_dir, step, spec, like)
    return _from_host(host, like), history, int(step)


def _read_meta(manager, run_dir: pathlib.Path, step: int) -> dict[str, Any]:
    import orbax.checkpoint as ocp

    try:
        return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as error:  # orbax raises many kinds for a damaged folder
        raise RunError(f"cannot read checkpoint {run_dir / CHECKPOINTS / str(step)}: "
                       f"{type(error).__name__}: {error}") from None


def _check_meta(meta: Mapping[str, Any], spec: Spec, run_dir: pathlib.Path, step: int) -> None:
    """Refuse, by name, a checkpoint of another layout, program or run count."""
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"checkpoint {step} of {run_dir} has format {meta.get('format')!r}, and "
                       f"this jaxppo reads format {CHECKPOINT_FORMAT} (format 1 holds Adam's "
                       "moments per param leaf, format 2 a learning-rate schedule's step "
                       "count): it cannot be resumed; train the run again")
    expected = spec_lib.static_values(spec.config)
    for name, value in meta.get("static", {}).items():
        if value != expected.get(name):
            raise RunError(f"checkpoint {step} of {run_dir} was written with {name}={value!r} "
                           f"but {CONFIG_FILE} says {expected.get(name)!r}: a checkpoint only "
                           "resumes the program that wrote it")
    if meta.get("runs") != spec.num_runs:
        raise RunError(f"checkpoint {step} holds {meta.get('runs')} runs but {CONFIG_FILE} "
                       f"describes {spec.num_runs} (settings x seeds)")


def _read_arrays(manager, run_dir: pathlib.Path, step: int, spec: Spec, like):
    """(host state, metrics [H, S, step]) of checkpoint ``step``."""
    import orbax.checkpoint as ocp

    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_host_target(like, spec.num_runs)),
            history=ocp.args.StandardRestore(),
        ))
    except Exception as error:
        raise RunError(f"cannot restore checkpoint {run_dir / CHECKPOINTS / str(step)}: "
                       f"{type(error).__name__}: {str(error)[:300]}") from None
    history = {k: np.asarray(v) for k, v in restored["history"].items()}
    if set(history) != set(METRIC_NAMES) or any(
            v.shape[:2] != (spec.num_settings, spec.seeds) for v in history.values()):
        raise RunError(f"checkpoint {step} of {run_dir} has metrics that do not match "
                       f"{CONFIG_FILE}")
    return restored["state"], history


# ---------------------------------------------------------------------------------------------
# TensorBoard (optional).


class TensorBoard:
    """Event files per setting: the IQM and each seed's training return, seed means of the
    other metrics; x = env steps per run. Written from the host between chunks."""

    @staticmethod
    def check() -> None:
        """A `RunError` when tensorboardX is missing (called before a run starts)."""
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise RunError("tensorboard=True needs the tensorboardX package: "
                           "pip install 'jaxppo[tensorboard]'") from None

    def __init__(self, run_dir, spec: Spec) -> None:
        from tensorboardX import SummaryWriter

        self.spec = spec
        self.writers = [SummaryWriter(str(pathlib.Path(run_dir) / TENSORBOARD / f"setting{h}"))
                        for h in range(spec.num_settings)]

    def write(self, metrics: Mapping[str, np.ndarray], start: int, stop: int) -> None:
        """The scalars of updates [start, stop) from metrics [H, S, >= stop]."""
        for h, writer in enumerate(self.writers):
            for u in range(start, stop):
                _write_update(writer, metrics, h, u, (u + 1) * self.spec.config.batch_size)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def _write_update(writer, metrics: Mapping[str, np.ndarray], h: int, u: int, step: int) -> None:
    """Setting h's scalars of update u at x = ``step`` env steps per run."""
    returns = metrics["episode_return"][h, :, u]
    finite = returns[~np.isnan(returns)]
    if finite.size:
        writer.add_scalar("episode_return/iqm", stats.iqm(finite), step)
    for s in np.flatnonzero(~np.isnan(returns)):
        writer.add_scalar(f"episode_return/seed{s}", float(returns[s]), step)
    for name in METRIC_NAMES:
        values = metrics[name][h, :, u]
        if name not in ("env_steps", "episode_return") and not np.isnan(values).all():
            writer.add_scalar(f"train/{name}", float(np.nanmean(values)), step)
