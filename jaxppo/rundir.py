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
    .lock             the process training in it: its pid, under an advisory lock (`locked`)

A crash leaves the directory usable: config.json, summary.json and eval.json are replaced
whole (a temporary file renamed), metrics.csv loses only the rows a failed append began, and
a checkpoint is written to a temporary folder that orbax renames when complete (a leftover one
is ignored, then deleted by the next writer).

Checkpoints hold the train state in host form: plain numpy arrays, PRNG keys as their key
data, so a checkpoint does not depend on the device layout of the run that wrote it. orbax is
imported here only.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
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
LOCK_FILE = ".lock"

# What a reader of metrics.csv looks at first; then every other Metrics field in its order.
_LEADING = ("env_steps", "episode_return", "episode_length", "episode_count")
#: Every `jaxppo.Metrics` field, in metrics.csv's order.
METRIC_NAMES = _LEADING + tuple(f.name for f in dataclasses.fields(train_lib.Metrics)
                                if f.name not in _LEADING)

# The train state's layout in a checkpoint. 3: Adam's moments are one flat vector over all
# params (`update.make_optimizer`), its state holds no schedule count (the learning rate
# follows the update, `update.learning_rate_at`), and the state records divergence; 2 held
# that count and no divergence, 1 the moments per leaf.
CHECKPOINT_FORMAT = 3


# ---------------------------------------------------------------------------------------------
# The directory, its lock and config.json.


class WriteError(RunError):
    """A file of the run directory could not be written (disk full, no permission)."""


def _write_error(path, error: BaseException) -> WriteError:
    return WriteError(f"cannot write {path}: {_one_line(error)}")


def _one_line(error: BaseException, limit: int = 200) -> str:
    """``error`` as one short line: its type and the first line of its message. A
    tensorstore message keeps its status and its innermost cause (it nests a cause after
    each quoted path, then appends its whole spec)."""
    lines = str(error).strip().splitlines()
    message = re.sub(r"\s*\[tensorstore_spec.*$", "", lines[0] if lines else "")
    quoted_path = '": '
    if len(message) > limit and quoted_path in message:
        status = message.split(": ", 1)[0]
        message = f"{status}: ... {message.rsplit(quoted_path, 1)[1]}"
    text = f"{type(error).__name__}: {message}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _atomic_write(path: pathlib.Path, write: Callable) -> pathlib.Path:
    """Write ``path`` whole or not at all: ``write(file)`` fills a temporary file beside it,
    which then replaces it (a crash or a full disk leaves the previous file)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, error) from None
    return path


def _holds_files(run_dir: pathlib.Path) -> bool:
    return any(p.name != LOCK_FILE for p in run_dir.iterdir())


def check_new(out, overwrite: bool) -> None:
    """Refuse ``out`` for a new run before anything compiles or is written: a file, a
    directory another process trains in, or one that holds files unless ``overwrite``."""
    run_dir = pathlib.Path(out)
    holder = lock_holder(run_dir) if run_dir.is_dir() else None
    if holder is not None:
        raise RunError(_in_use(run_dir, holder))
    _check_empty(run_dir, overwrite)


def _check_empty(run_dir: pathlib.Path, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} exists and is not a directory")
    if run_dir.is_dir() and _holds_files(run_dir) and not overwrite:
        raise RunError(f"{run_dir} already holds files; pass overwrite=True (--overwrite) to "
                       "replace them, `resume` to continue that run, or choose another "
                       "directory")


def prepare(out, overwrite: bool) -> pathlib.Path:
    """The run directory ``out``, created; one that holds files is emptied only when
    ``overwrite`` (else a `RunError`, before anything is written). The lock file stays: the
    caller holds it (`locked`)."""
    run_dir = pathlib.Path(out)
    _check_empty(run_dir, overwrite)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for path in run_dir.iterdir():
            if path.name == LOCK_FILE:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    except OSError as error:
        raise _write_error(run_dir, error) from None
    return run_dir


def _in_use(run_dir: pathlib.Path, holder: str) -> str:
    return (f"{run_dir} is in use by {holder} (its lock {run_dir / LOCK_FILE}); wait for it to "
            "end or stop it, then try again")


def _flock(fd: int, shared: bool = False) -> bool:
    """Take an advisory lock on ``fd`` without waiting; False when another process holds
    one. The kernel's flock where there is fcntl, else (Windows) `_msvcrt_lock`."""
    try:
        import fcntl
    except ImportError:
        return _msvcrt_lock(fd)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a filesystem without locks (some network mounts): run unlocked
        return True
    return True


# Windows locks byte ranges, and a locked byte cannot be read by another process: the lock
# sits far past the pid that .lock holds, so a refused process can still name the holder.
_MSVCRT_LOCK_OFFSET = 2**30


def _msvcrt_lock(fd: int) -> bool:
    """One byte of ``fd`` locked with msvcrt, without waiting; False when another process
    holds it. Windows has no shared lock, so `lock_holder`'s probe locks it for an instant
    and lets it go (`_take_lock` retries over such an instant); Windows drops the lock of a
    process that dies, as the kernel's flock does."""
    try:
        import msvcrt
    except ImportError:  # neither fcntl nor msvcrt: run unlocked
        return True
    position = os.lseek(fd, 0, os.SEEK_CUR)
    os.lseek(fd, _MSVCRT_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except PermissionError:  # EACCES: another process holds the byte
        return False
    except OSError:  # a filesystem without locks: run unlocked
        return True
    finally:
        os.lseek(fd, position, os.SEEK_SET)
    return True


def _msvcrt_unlock(fd: int) -> None:
    import msvcrt

    position = os.lseek(fd, 0, os.SEEK_CUR)
    os.lseek(fd, _MSVCRT_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.lseek(fd, position, os.SEEK_SET)


def _windows_locks() -> bool:
    """Whether `_flock` locks with msvcrt (no fcntl here, and msvcrt is)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        try:
            import msvcrt  # noqa: F401
        except ImportError:
            return False
        return True
    return False


def _take_lock(fd: int) -> bool:
    """The exclusive lock on ``fd``, tried for 0.2 s: `lock_holder`'s probe holds a shared
    one for an instant, and must not make a run refuse its directory."""
    for _ in range(10):
        if _flock(fd):
            return True
        time.sleep(0.02)
    return False


def _holder_text(path: pathlib.Path) -> str:
    pid = path.read_text().strip() if path.is_file() else ""
    return f"process {pid}" if pid.isdigit() else "another process"


def lock_holder(run_dir) -> str | None:
    """"process <pid>" when a live process holds the lock of ``run_dir``, else None (no lock
    file, or one left by a process that died: the kernel drops a dead process's lock)."""
    path = pathlib.Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        # A shared lock for a moment: `locked` retries, so this probe never refuses it.
        if not _flock(fd, shared=True):
            return _holder_text(path)
        if _windows_locks():
            _msvcrt_unlock(fd)  # its lock is exclusive: let it go at once
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(run_dir) -> Iterator[pathlib.Path]:
    """Hold the lock of ``run_dir`` (created if missing) while the body writes in it: a
    `RunError` naming the holder when another live process has it. The lock is the kernel's
    (flock), so a process killed any way leaves none behind; .lock keeps the holder's pid for
    the message."""
    run_dir = pathlib.Path(run_dir)
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        if not _take_lock(fd):
            raise RunError(_in_use(run_dir, _holder_text(path)))
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as error:
            raise _write_error(path, error) from None
        yield run_dir
    finally:
        os.close(fd)  # releases the lock


def write_spec(run_dir, spec: Spec) -> pathlib.Path:
    """Write config.json; returns its path."""
    text = json.dumps(spec.to_json(), indent=2) + "\n"
    return _atomic_write(pathlib.Path(run_dir) / CONFIG_FILE, lambda f: f.write(text))


_SPEC_INTS = ("seeds", "seed", "chunk_updates", "checkpoint_every")


def read_spec(run_dir) -> Spec:
    """The `Spec` of a run directory's config.json (a `RunError` if missing or malformed)."""
    run_dir = pathlib.Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a run directory: it is a file (a run directory "
                       f"holds {CONFIG_FILE}, {METRICS_FILE} and {CHECKPOINTS}/)")
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is not valid JSON: {error}") from None
    _check_spec_types(path, data)
    try:
        return Spec.from_json(data)
    except KeyError as missing:
        raise RunError(f"{CONFIG_FILE} lacks the entry {missing}") from None
    except RunError:
        raise
    except (ValueError, TypeError) as error:
        raise RunError(f"{path} describes an invalid run: {error}") from None


def _check_spec_types(path: pathlib.Path, data: Any) -> None:
    """Refuse, by name, config.json entries of the wrong JSON type (a hand edit)."""
    if not isinstance(data, dict):
        raise RunError(f"{path} holds a JSON {type(data).__name__}, not an object")
    for name in ("config", "settings"):
        if name in data and not isinstance(data[name], dict):
            raise RunError(f"{path}: {name}={data[name]!r} is invalid: must be an object")
    for name in _SPEC_INTS:
        value = data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise RunError(f"{path}: {name}={value!r} is invalid: must be an integer")


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
    new file with its header first, replacing any); ``metrics`` are [H, S, >= stop].

    An append that fails (a full disk) is undone, so the file keeps whole rows only.
    """
    path = pathlib.Path(run_dir) / METRICS_FILE
    if fresh:
        return _atomic_write(path, lambda f: _write_rows(f, spec, metrics, [(start, stop)],
                                                         header=True))
    size = path.stat().st_size if path.exists() else 0
    try:
        with path.open("a", newline="") as f:
            _write_rows(f, spec, metrics, [(start, stop)])
    except OSError as error:
        with contextlib.suppress(OSError):
            os.truncate(path, size)
        raise _write_error(path, error) from None
    return path


def rewrite_metrics(run_dir, spec: Spec, metrics: Mapping[str, np.ndarray], done: int
                    ) -> pathlib.Path:
    """metrics.csv anew from ``metrics`` [H, S, >= done]: the rows of updates [0, done) in
    the order a run writes them, chunk by chunk; all or nothing (a resume's first write)."""
    spans = [(a, min(a + spec.chunk_updates, done)) for a in range(0, done, spec.chunk_updates)]
    return _atomic_write(pathlib.Path(run_dir) / METRICS_FILE,
                         lambda f: _write_rows(f, spec, metrics, spans, header=True))


def _write_rows(f, spec: Spec, metrics: Mapping[str, np.ndarray],
                spans: list[tuple[int, int]], header: bool = False) -> None:
    writer = csv.writer(f)
    if header:
        writer.writerow(metrics_header(spec))
    for start, stop in spans:
        writer.writerows(_metrics_rows(spec, metrics, start, stop))


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


def healthy_returns(metrics: Mapping[str, np.ndarray]) -> np.ndarray:
    """``episode_return`` [..., U] with NaN from each run's diverged update on (a frozen run
    repeats its last finite state's rollout, which is no learning curve)."""
    returns = np.asarray(metrics["episode_return"], np.float64)
    divergence = metrics.get("divergence")
    if divergence is None:
        return returns
    return np.where(np.asarray(divergence) > 0, np.nan, returns)


def final_returns(metrics: Mapping[str, np.ndarray], window: int = 10) -> np.ndarray:
    """[..., S]: each run's mean training return over its last ``window`` updates
    (`stats.final_returns`); NaN for a run that diverged, so aggregates leave it out."""
    final = stats.final_returns(metrics["episode_return"], window)
    divergence = metrics.get("divergence")
    if divergence is None or np.asarray(divergence).shape[-1] == 0:
        return final
    return np.where(np.asarray(divergence)[..., -1] > 0, np.nan, final)


def divergences(spec: Spec, metrics: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Every run that went non-finite: setting, its label, seed, the update (0-based) that
    diverged and what went first (`train.DIVERGENCE`), in setting-then-seed order."""
    divergence = np.asarray(metrics.get("divergence", np.zeros((0, 0, 0))))
    if divergence.size == 0:
        return []
    labels = spec_lib.setting_labels(spec)
    found = []
    for h, s in zip(*np.nonzero(divergence[..., -1] > 0), strict=True):
        update = int(np.argmax(divergence[h, s] > 0))
        found.append({"setting": int(h), "label": labels[h], "seed": int(s), "update": update,
                      "cause": train_lib.DIVERGENCE[int(divergence[h, s, update])]})
    return found


def divergence_line(spec: Spec, entry: Mapping[str, Any]) -> str:
    """One diverged run in words: "setting 3 (learning_rate=3), seed 5: diverged at update
    17 (non-finite gradient)"."""
    where = (f"setting {entry['setting']} ({entry['label']}), " if spec.settings else "")
    return (f"{where}seed {entry['seed']}: diverged at update {entry['update']} "
            f"({entry['cause']})")


def _setting_summary(spec: Spec, h: int, label: str, returns: np.ndarray, final: np.ndarray,
                     diverged: list[dict[str, Any]]) -> dict[str, Any]:
    """summary.json's entry of setting h: returns [S, U], final [S] (NaN where a run
    diverged), the setting's diverged runs."""
    finite = final[~np.isnan(final)]
    entry = {"setting": h, "label": label, **{k: v[h] for k, v in spec.settings.items()},
             "final_returns": [None if math.isnan(x) else float(x) for x in final],
             "runs_diverged": len(diverged),
             "diverged": [{k: d[k] for k in ("seed", "update", "cause")} for d in diverged]}
    if finite.size:
        entry["aggregate"] = stats.aggregate(finite)
    entry["reliability"] = reliability(returns, final)
    return entry


def summary(spec: Spec, metrics: Mapping[str, np.ndarray], updates_done: int
            ) -> dict[str, Any]:
    """summary.json's content: progress, the runs that diverged (`divergence_line` each), and
    per setting the final returns of its seeds (mean training return over the last 10
    updates; None for a run that diverged or saw no episode end), their aggregate over the
    others, reliability and the diverged runs.

    Args:
        spec: the run's `Spec`.
        metrics: metric name -> [H, S, updates_done].
        updates_done: updates completed.
    """
    final = final_returns(metrics, 10)
    returns = healthy_returns(metrics)
    labels = spec_lib.setting_labels(spec)
    diverged = divergences(spec, metrics)
    return {"updates_done": updates_done, "num_updates": spec.config.num_updates,
            "env_steps_per_run": updates_done * spec.config.batch_size,
            "finished": updates_done >= spec.config.num_updates,
            "runs_diverged": len(diverged),
            "diverged": [divergence_line(spec, d) for d in diverged],
            "settings": [_setting_summary(spec, h, labels[h], returns[h], final[h],
                                          [d for d in diverged if d["setting"] == h])
                         for h in range(spec.num_settings)]}


def write_summary(run_dir, content: Mapping[str, Any]) -> pathlib.Path:
    """Write summary.json (`summary`'s content); returns its path."""
    text = json.dumps(content, indent=2) + "\n"
    return _atomic_write(pathlib.Path(run_dir) / SUMMARY_FILE, lambda f: f.write(text))


def write_eval(run_dir, report: Mapping[str, Any]) -> pathlib.Path:
    """Write eval.json (the report of ``jaxppo eval``); returns its path."""
    text = json.dumps(report, indent=2) + "\n"
    return _atomic_write(pathlib.Path(run_dir) / EVAL_FILE, lambda f: f.write(text))


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


def _manager(run_dir: pathlib.Path, write: bool = False):
    """The orbax manager of ``run_dir``'s checkpoints: for reading, or for writing (only under
    `locked`: it deletes the temporary folders a crashed writer left). Saves are synchronous,
    so a failed one raises at once and deletes no older checkpoint."""
    import orbax.checkpoint as ocp

    # Not orbax's read_only for reading: that logs a warning per option it overrides.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=2, create=write, cleanup_tmp_directories=write,
        enable_async_checkpointing=False)
    return ocp.CheckpointManager((run_dir / CHECKPOINTS).absolute(), options=options)


class Checkpoints:
    """The checkpoints of a run directory being written: one folder per number of updates
    done, the newest two kept. A save is atomic (orbax writes a temporary folder and renames
    it), and one that fails raises a `WriteError` and leaves the older checkpoints."""

    def __init__(self, run_dir) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.manager = _manager(self.run_dir, write=True)

    def save(self, spec: Spec, state, metrics: Mapping[str, np.ndarray], done: int) -> None:
        """Save the state of every run [>= H * S, ...] and the metrics [H, S, >= done]."""
        import orbax.checkpoint as ocp

        meta = {"format": CHECKPOINT_FORMAT, "updates_done": done, "runs": spec.num_runs,
                "static": spec_lib.static_values(spec.config), "spec": spec.to_json()}
        try:
            self.manager.save(done, args=ocp.args.Composite(
                state=ocp.args.StandardSave(_to_host(state, spec.num_runs)),
                history=ocp.args.StandardSave({k: np.ascontiguousarray(v[..., :done])
                                               for k, v in metrics.items()}),
                meta=ocp.args.JsonSave(meta),
            ), force=True)
        except Exception as error:  # orbax and tensorstore raise many kinds for one failure
            raise _write_error(self.run_dir / CHECKPOINTS / str(done), error) from None

    def close(self) -> None:
        self.manager.close()


def latest_checkpoint(run_dir) -> int | None:
    """Updates done at the newest complete checkpoint of ``run_dir``; None when it has none
    (a run stopped or killed before its first checkpoint, which `resume` starts again)."""
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / CHECKPOINTS).is_dir():
        return None
    manager = _manager(run_dir)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def restore_checkpoint(run_dir, spec: Spec):
    """(state [H * S, ...], metrics [H, S, done], done) of the newest checkpoint of
    ``run_dir``; the state's arrays on the default device, PRNG keys typed again.

    Raises:
        RunError: no checkpoint, a damaged one, one of another program or run count, or one
            written with another config.json.
    """
    run_dir = pathlib.Path(run_dir)
    if latest_checkpoint(run_dir) is None:
        raise RunError(f"{run_dir} holds no checkpoint yet; `resume` trains it from the start")
    manager = _manager(run_dir)
    try:
        step = manager.latest_step()
        meta = _read_meta(manager, run_dir, step)
        _check_meta(meta, spec, run_dir, step)
        like = _abstract_state(spec)
        host, history = _read_arrays(manager, run_dir, step, spec, like)
    finally:
        manager.close()
    return _from_host(host, like), history, int(step)


def _damaged(manager, run_dir: pathlib.Path, step: int, error: BaseException) -> RunError:
    """The one-line refusal of a checkpoint orbax cannot read, naming an older one to fall
    back on."""
    _ignore_closed_event_loop()
    older = [s for s in manager.all_steps() if s < step]
    hint = (f"; checkpoint {max(older)} may be intact: move {run_dir / CHECKPOINTS / str(step)} "
            "away to resume from it" if older else "")
    return RunError(f"checkpoint {step} of {run_dir} is damaged or not a jaxppo checkpoint "
                    f"({_one_line(error, 160)}){hint}")


def _ignore_closed_event_loop() -> None:
    """After a failed restore, tensorstore reads still in flight end on orbax's closed event
    loop: each would print a "RuntimeError: Event loop is closed" traceback at exit, or an
    asyncio "Task exception was never retrieved" log with the read's error. Drop those (only
    those): from `sys.unraisablehook` and from the asyncio logger."""
    previous = sys.unraisablehook
    if getattr(previous, "jaxppo_quiet", False):
        return

    def hook(unraisable):
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous(unraisable)

    hook.jaxppo_quiet = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(
        lambda record: not record.getMessage().startswith("Task exception was never retrieved"))


def _read_meta(manager, run_dir: pathlib.Path, step: int) -> dict[str, Any]:
    import orbax.checkpoint as ocp

    try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as error:  # orbax raises many kinds for a damaged folder
        raise _damaged(manager, run_dir, step, error) from None
    if not isinstance(meta, dict):
        raise _damaged(manager, run_dir, step, TypeError(f"its meta is a {type(meta).__name__}"))
    return meta


def _check_meta(meta: Mapping[str, Any], spec: Spec, run_dir: pathlib.Path, step: int) -> None:
    """Refuse, by name, a checkpoint of another layout, program, run count or config."""
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
    # Checkpoints of older jaxppo versions lack the spec.
    difference = _spec_difference(meta["spec"], spec.to_json()) if "spec" in meta else None
    if difference is not None:
        name, written, now = difference
        raise RunError(f"{CONFIG_FILE} of {run_dir} says {name}={now!r} but checkpoint {step} "
                       f"was written with {name}={written!r}: a run resumes only with the "
                       f"config it began with (put {written!r} back, or train a new run)")


def _spec_difference(written: Mapping[str, Any], now: Mapping[str, Any]
                     ) -> tuple[str, Any, Any] | None:
    """The first entry (a Config field by its name) where two `Spec.to_json` differ, as
    (name, written value, current value); None when they are equal. A field the written
    spec lacks (from a jaxppo before the field) counts as its default."""
    defaults = spec_lib.config_to_dict(config_lib.Config())
    for key in sorted(set(written) | set(now)):
        a, b = written.get(key), now.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b)):
                if a.get(name, defaults.get(name)) != b.get(name, defaults.get(name)):
                    return name, a.get(name), b.get(name)
        elif a != b:
            return key, a, b
    return None


def _read_arrays(manager, run_dir: pathlib.Path, step: int, spec: Spec, like):
    """(host state, metrics [H, S, step]) of checkpoint ``step``."""
    import orbax.checkpoint as ocp

    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_host_target(like, spec.num_runs)),
            history=ocp.args.StandardRestore(),
        ))
    except Exception as error:
        raise _damaged(manager, run_dir, step, error) from None
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
