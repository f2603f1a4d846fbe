"""Two processes, one sweep: `jax.distributed` on one machine's CPU, checked against one process.

    python bench/multihost.py        # prints the comparison, writes bench/results/multihost.txt

The launcher starts two worker processes of this script. Each calls
``jax.distributed.initialize(coordinator_address="localhost:PORT", num_processes=2,
process_id=i)`` with gloo CPU collectives, so `jax.devices()` lists both processes' CPU
devices; each then runs the same `jaxppo.sweep`, whose runs are sharded over that global mesh
(the runs of each process's half on its own device) and gathered back to every process. The
launcher runs the same sweep in one plain process and compares.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

CONFIG = dict(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 4, num_minibatches=2,
              update_epochs=2, hidden_sizes=(16, 16))
SPACE = {"learning_rate": [3e-4, 1e-3, 3e-3], "clip_eps": [0.2]}
SEEDS = 2


def run_sweep(out: pathlib.Path) -> str:
    """The sweep every process runs; saves its metrics; returns a description of the devices."""
    import jax

    import jaxppo

    result = jaxppo.sweep(jaxppo.Config(**CONFIG), SPACE, seeds=SEEDS, key=jax.random.key(0))
    np.savez(out, **{k: np.asarray(v) for k, v in vars(result.metrics).items()})
    return (f"process {jax.process_index()} of {jax.process_count()}: local devices "
            f"{jax.local_devices()}, global devices {jax.devices()}")


def worker(process_id: int, port: int, out: pathlib.Path) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=process_id)
    print(run_sweep(out), flush=True)
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(tmp: pathlib.Path) -> list[str]:
    port = free_port()
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(i), "--port", str(port),
                               "--out", str(tmp / f"worker{i}.npz")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for i in range(2)]
    lines = []
    for i, proc in enumerate(procs):
        output, _ = proc.communicate(timeout=540)
        if proc.returncode != 0:
            raise SystemExit(f"worker {i} failed ({proc.returncode}):\n{output}")
        lines += [line for line in output.splitlines() if line.startswith("process ")]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int)
    parser.add_argument("--port", type=int)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.port, args.out)
        return

    with tempfile.TemporaryDirectory() as tmp:
        compare(pathlib.Path(tmp))


def compare(tmp: pathlib.Path) -> None:
    start = time.perf_counter()
    described = launch(tmp)
    two_s = time.perf_counter() - start
    start = time.perf_counter()
    single = run_sweep(tmp / "single.npz")
    one_s = time.perf_counter() - start
    ref = np.load(tmp / "single.npz")
    report = [f"# {__doc__.splitlines()[0]}", "",
              f"config: {CONFIG}", f"space: {SPACE}, seeds: {SEEDS} -> 3 x 2 = 6 runs", "",
              "two processes (each: jax.distributed.initialize, gloo CPU collectives):"]
    report += [f"  {line}" for line in described]
    report += [f"  wall time {two_s:.1f} s (both processes, compile included)", "",
               f"one process: {single}", f"  wall time {one_s:.1f} s", ""]
    for i in range(2):
        worst = 0.0
        got = np.load(tmp / f"worker{i}.npz")
        for field in ref.files:
            np.testing.assert_allclose(got[field], ref[field], rtol=1e-6, atol=1e-6,
                                       err_msg=f"worker {i}: {field}")
            diff = np.abs(got[field].astype(float) - ref[field].astype(float))
            worst = max(worst, float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0)
        report.append(f"process {i}: metrics [settings, seeds, updates] = "
                      f"{got['total_loss'].shape}, equal to one process (largest difference "
                      f"{worst:.2g}; rtol 1e-6, atol 1e-6)")
    report += ["", "mean episode return per setting (last update, mean over seeds):"]
    for h, lr in enumerate(SPACE["learning_rate"]):
        two = np.load(tmp / "worker0.npz")["episode_return"][h, :, -1].mean()
        report.append(f"  learning_rate={lr:g}: two processes {two:.3f}, one process "
                      f"{ref['episode_return'][h, :, -1].mean():.3f}")
    text = "\n".join(report) + "\n"
    print(text)
    out = pathlib.Path(__file__).parent / "results" / "multihost.txt"
    out.write_text(text)


if __name__ == "__main__":
    main()
