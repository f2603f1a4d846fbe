"""Faults survived, nothing lost: a process killed while it writes a checkpoint, a write that
fails, two commands on one run directory, damaged checkpoints and a hand-edited config.json.
Each fault is injected into a real `jaxppo` process where the fault is about processes (a
kill, a second command, tracebacks at exit), in-process where the filesystem is faked; the run
directory is then resumed and must end as the uninterrupted run (conftest's `finished_run`:
same config, chunks and checkpoints as the command line below), bit for bit."""

import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import RUNNER_CHUNK, RUNNER_CONFIG, RUNNER_SEEDS
from test_experiment import _files, assert_same_run

from jaxppo import cli, experiment, rundir

REPO = pathlib.Path(__file__).resolve().parents[1]

# The command line of conftest's finished_run: RUNNER_CONFIG, 2 seeds, chunks of 3 updates
# (3 + 3 + 1), a checkpoint after every chunk.
FLAGS = ["--num-envs", str(RUNNER_CONFIG.num_envs), "--num-steps", str(RUNNER_CONFIG.num_steps),
         "--total-timesteps", str(RUNNER_CONFIG.total_timesteps), "--update-epochs", "1",
         "--num-minibatches", "2", "--hidden-sizes", "8", "--seeds", str(RUNNER_SEEDS),
         "--chunk-updates", str(RUNNER_CHUNK), "--checkpoint-every", "1", "--no-progress"]

# `python -m jaxppo ARGS`, after the fault-injecting code FAULT has run in the process.
_JAXPPO = """
import runpy, sys
{fault}
sys.argv = ["jaxppo", *sys.argv[1:]]
runpy.run_module("jaxppo", run_name="__main__", alter_sys=True)
"""

# Kill the process (SIGKILL) in the middle of writing checkpoint 6: its history item is
# written, its meta item is being renamed into place, its state is not written yet.
_KILL_IN_CHECKPOINT_6 = """
import os, signal
from orbax.checkpoint._src.path import atomicity
finalize = atomicity.AtomicRenameTemporaryPath.finalize
async def finalize_or_die(self, *args, **kwargs):
    final = self.get_final()
    if final.name == "meta" and final.parent.name.startswith("6."):
        os.kill(os.getpid(), signal.SIGKILL)
    return await finalize(self, *args, **kwargs)
atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die
"""


def _jaxppo_process(tmp_path, *args, fault=""):
    """argv and environment of a fresh `python -m jaxppo ARGS` process with ``fault``
    injected, on as many CPU devices as this process (so it compiles the same program)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    jax_flags = ["--cpu-devices", str(jax.device_count()), "--no-compile-cache"]
    argv = [sys.executable, "-c", _JAXPPO.format(fault=fault), *args]
    if args[0] in ("train", "resume"):
        argv += jax_flags
    return argv, env


def _assert_rows_once(run_dir, updates):
    """metrics.csv holds one row per seed and update < ``updates``: none missing, none twice."""
    pairs = [(r["seed"], int(r["update"])) for r in rundir.read_metrics(run_dir)]
    assert sorted(pairs) == sorted((str(s), u) for s in range(RUNNER_SEEDS)
                                   for u in range(updates))


def test_killed_while_writing_a_checkpoint(finished_run, tmp_path):
    """SIGKILL in the middle of checkpoint 6: checkpoint 3 is intact, the unfinished one lies
    in a temporary folder, the dead process's lock is no obstacle; resume continues from 3,
    deletes the leftover, rewrites metrics.csv (rows of updates 3-5 were written before the
    kill) and ends as the uninterrupted run, bit for bit, metrics.csv byte for byte."""
    out = tmp_path / "killed"
    argv, env = _jaxppo_process(tmp_path, "train", *FLAGS, "--out", str(out),
                                fault=_KILL_IN_CHECKPOINT_6)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["3", "6.orbax-checkpoint-tmp"], names
    assert rundir.latest_checkpoint(out) == 3
    _assert_rows_once(out, 6)
    assert (out / ".lock").read_text().strip().isdigit() and rundir.lock_holder(out) is None
    resumed = experiment.resume(out, progress=False, plots=False)
    assert resumed.updates_run == 4
    assert_same_run(resumed, finished_run)
    _assert_rows_once(out, 7)
    assert (out / "metrics.csv").read_bytes() == (
        finished_run.run_dir / "metrics.csv").read_bytes()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["6", "7"]


def _wait_for(predicate, proc, seconds=300):
    deadline = time.time() + seconds
    while not predicate():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)


def test_a_second_command_is_refused_while_the_first_runs(finished_run, tmp_path, capsys):
    """`jaxppo train` holds its run directory: `resume` and `train --overwrite` on it are
    refused in one line naming its pid, before compiling and without touching a file. Killed,
    it leaves no lock that blocks: resume ends as the uninterrupted run."""
    out = tmp_path / "busy"
    argv, env = _jaxppo_process(tmp_path, "train", *FLAGS, "--out", str(out))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lock = out / ".lock"
        _wait_for(lambda: (out / "config.json").exists() and lock.exists()
                  and lock.read_text().strip() == str(proc.pid), proc)
        config = (out / "config.json").read_bytes()
        in_use = f"{out} is in use by process {proc.pid} (its lock {lock}); wait for it"
        for args in (["resume", str(out), "--no-progress"],
                     ["train", *FLAGS, "--out", str(out), "--overwrite"]):
            code = cli.main(args)
            printed, err = capsys.readouterr()
            assert code == 2 and "compiling" not in printed
            assert err.startswith(f"jaxppo {args[0]}: error: {in_use}") and err.count("\n") == 1
        assert (out / "config.json").read_bytes() == config
    finally:
        proc.kill()
        proc.communicate()
    assert rundir.lock_holder(out) is None
    resumed = experiment.resume(out, progress=False, plots=False)
    assert_same_run(resumed, finished_run)
    _assert_rows_once(out, 7)


def _fail_writing_checkpoint_6(error):
    """orbax's rename of checkpoint 6's folder into place, made to fail with ``error``."""
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize_or_fail(self, *args, **kwargs):
        if self.get_final().name == "6":
            raise error
        return await finalize(self, *args, **kwargs)

    return atomicity.AtomicRenameTemporaryPath, "finalize", finalize_or_fail


def _fail_appending_chunk_2(error):
    """metrics.csv's second append (chunk 2's rows), made to fail with ``error``."""
    real_open = pathlib.Path.open
    appends = []

    def open_or_fail(self, mode="r", *args, **kwargs):
        if self.name == "metrics.csv" and "a" in mode:
            appends.append(self)
            if len(appends) == 2:
                raise error
        return real_open(self, mode, *args, **kwargs)

    return pathlib.Path, "open", open_or_fail


@pytest.mark.parametrize("fault, written", [
    (lambda: _fail_writing_checkpoint_6(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
     "cannot write {out}/checkpoints/6: OSError: [Errno 28] No space left on device"),
    (lambda: _fail_appending_chunk_2(PermissionError(errno.EACCES, os.strerror(errno.EACCES))),
     "cannot write {out}/metrics.csv: PermissionError: [Errno 13] Permission denied"),
], ids=["disk full in a checkpoint", "permission denied on metrics.csv"])
def test_a_write_that_fails(finished_run, tmp_path, capsys, monkeypatch, fault, written):
    """A write that fails stops the run with one line: what failed and what is intact (the
    checkpoint after 3 updates, metrics.csv's whole rows); resume then ends as the
    uninterrupted run."""
    out = tmp_path / "failing"
    monkeypatch.setattr(*fault())
    code = cli.main(["train", *FLAGS, "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 2
    assert err == (f"jaxppo train: error: {written.format(out=out)}; the checkpoint after 3 "
                   "updates is intact, as is metrics.csv, and `resume` continues from it\n")
    monkeypatch.undo()
    assert rundir.latest_checkpoint(out) == 3
    rows = rundir.read_metrics(out)
    _assert_rows_once(out, 6 if "checkpoints" in written else 3)
    assert all(len(row) == len(rows[0]) and None not in row.values() for row in rows)
    assert_same_run(experiment.resume(out, progress=False, plots=False), finished_run)
    assert (out / "metrics.csv").read_bytes() == (
        finished_run.run_dir / "metrics.csv").read_bytes()


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _foreign(checkpoint):
    """Checkpoint 7 replaced by an orbax checkpoint of another program (no jaxppo meta)."""
    import orbax.checkpoint as ocp

    other = checkpoint.parent.parent / "other"
    with ocp.CheckpointManager(other.absolute()) as manager:
        manager.save(7, args=ocp.args.Composite(
            params=ocp.args.StandardSave({"w": np.zeros(3, np.float32)})))
    shutil.rmtree(checkpoint)
    shutil.move(other / "7", checkpoint)
    shutil.rmtree(other)


def _edit_config(run_dir, **fields):
    data = json.loads((run_dir / "config.json").read_text())
    data["config"].update(fields)
    (run_dir / "config.json").write_text(json.dumps(data))


def _damage(run_dir, case):
    checkpoint = run_dir / "checkpoints" / "7"
    if case == "bit flip":
        _flip_a_byte(next((checkpoint / "history" / "d").iterdir()))
    elif case == "truncated":
        _truncate(next((checkpoint / "state" / "d").iterdir()))
    elif case == "foreign":
        _foreign(checkpoint)
    elif case == "invalid config.json":
        _edit_config(run_dir, learning_rate="fast")
    elif case == "edited config.json":
        _edit_config(run_dir, learning_rate=0.01)


_CASES = {
    "bit flip": "checkpoint 7 of {d} is damaged or not a jaxppo checkpoint (ValueError: "
                "DATA_LOSS: ",
    "truncated": "checkpoint 7 of {d} is damaged or not a jaxppo checkpoint (ValueError: ",
    "foreign": "checkpoint 7 of {d} is damaged or not a jaxppo checkpoint (",
    "invalid config.json": "{d}/config.json describes an invalid run: Config.learning_rate="
                           "'fast' is invalid: must be a real number",
    "edited config.json": "config.json of {d} says learning_rate=0.01 but checkpoint 7 was "
                          "written with learning_rate=",
}

# Every command of argv lists (JSON in argv[1]) in one process, as `python -m jaxppo` runs
# it; the exit statuses printed last, after tensorstore's reads in flight have ended.
_COMMANDS = """
import json, runpy, sys, time
codes = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["jaxppo", *argv]
    try:
        runpy.run_module("jaxppo", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        codes.append(done.code)
time.sleep(1)
print(json.dumps(codes))
"""


def test_damaged_checkpoints_and_configs_are_one_line_and_exit_2(finished_run, tmp_path):
    """A bit-flipped, truncated or foreign checkpoint, config.json edited into an invalid
    run or away from the checkpoint's: `jaxppo resume` (and `eval`) print one line each,
    exit 2, and leave every file as it was; `eval` of a file says it is not a run
    directory. No "Event loop is closed" traceback follows."""
    commands, expected, before = [], [], {}
    for case, message in _CASES.items():
        run_dir = tmp_path / case.replace(" ", "_").replace(".", "_")
        shutil.copytree(finished_run.run_dir, run_dir)
        _damage(run_dir, case)
        before[run_dir] = _files(run_dir)
        commands.append(["resume", str(run_dir), "--no-progress", "--no-compile-cache"])
        expected.append("jaxppo resume: error: " + message.format(d=run_dir))
        if case == "bit flip":
            commands.append(["eval", str(run_dir), "--episodes", "1"])
            expected.append("jaxppo eval: error: " + message.format(d=run_dir))
    readme = tmp_path / "README.md"
    readme.write_text("# notes\n")
    commands.append(["eval", str(readme)])
    expected.append(f"jaxppo eval: error: {readme} is not a run directory: it is a file")
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    done = subprocess.run([sys.executable, "-c", _COMMANDS, json.dumps(commands)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [2] * len(commands)
    lines = [line for line in done.stderr.splitlines() if line.startswith("jaxppo ")]
    assert "Traceback" not in done.stderr and "Event loop" not in done.stderr, done.stderr
    assert len(lines) == len(commands), done.stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    for run_dir, files in before.items():
        assert _files(run_dir) == files, run_dir


def test_resume_of_a_finished_run_says_so(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "finished"
    shutil.copytree(finished_run.run_dir, run_dir)
    before = _files(run_dir)
    assert cli.main(["resume", str(run_dir), "--no-progress"]) == 0
    printed, err = capsys.readouterr()
    assert f"{run_dir} is already finished (7 updates): nothing to resume, nothing changed" \
        in printed and "seed  final return" in printed and err == ""
    assert _files(run_dir) == before


def test_an_existing_run_directory_is_refused_before_compiling(finished_run, capsys):
    out = finished_run.run_dir
    assert cli.main(["train", *FLAGS, "--out", str(out)]) == 2
    printed, err = capsys.readouterr()
    assert printed == ""  # not even "compiling..."
    assert err == (f"jaxppo train: error: {out} already holds files; pass overwrite=True "
                   "(--overwrite) to replace them, `resume` to continue that run, or choose "
                   "another directory\n")


# Windows' msvcrt.locking, played by POSIX byte-range locks (fcntl.lockf): a locked range is
# exclusive to one process (shared for a read-only probe), released when the process dies;
# and `import fcntl` fails, as on Windows.
_FAKE_MSVCRT = """
import fcntl, os, sys, types

def locking(fd, mode, nbytes):
    at = os.lseek(fd, 0, os.SEEK_CUR)
    if mode == 0:
        fcntl.lockf(fd, fcntl.LOCK_UN, nbytes, at)
        return
    read_only = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    try:
        fcntl.lockf(fd, (fcntl.LOCK_SH if read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB,
                    nbytes, at)
    except OSError:
        raise PermissionError(13, "Permission denied") from None

msvcrt = types.SimpleNamespace(LK_UNLCK=0, LK_NBLCK=2, locking=locking)
"""
_AS_ON_WINDOWS = 'sys.modules["msvcrt"] = msvcrt\nsys.modules["fcntl"] = None\n'



def test_without_fcntl_the_run_directory_is_locked_with_msvcrt(tmp_path, monkeypatch):
    """Where there is no fcntl (Windows), a run directory held by a live process is refused
    naming its pid, which a refused process can read beside the locked byte; once the holder
    is killed the directory is free."""
    out = tmp_path / "run"
    # jaxppo first: subprocess, which jax imports, takes a module named msvcrt for Windows.
    holder = ("from jaxppo import rundir\nimport sys, time\n" + _FAKE_MSVCRT + _AS_ON_WINDOWS
              + f"with rundir.locked({str(out)!r}):\n"
              "    print('held', flush=True)\n    time.sleep(120)\n")
    pytest.importorskip("fcntl")  # the stand-in for msvcrt is built on it
    proc = subprocess.Popen([sys.executable, "-c", holder],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        fake = {}
        exec(_FAKE_MSVCRT, fake)
        monkeypatch.setitem(sys.modules, "msvcrt", fake["msvcrt"])
        monkeypatch.setitem(sys.modules, "fcntl", None)
        assert rundir._windows_locks()
        assert rundir.lock_holder(out) == f"process {proc.pid}"
        with (pytest.raises(rundir.RunError, match=f"is in use by process {proc.pid} "),
              rundir.locked(out)):
            pass
    finally:
        proc.kill()
        proc.wait()
    assert rundir.lock_holder(out) is None
    with rundir.locked(out):
        assert (out / ".lock").read_text() == f"{os.getpid()}\n"
