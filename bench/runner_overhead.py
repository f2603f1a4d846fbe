"""Overhead of the chunked experiment runner against one jitted whole-run call.

    python bench/runner_overhead.py        # writes bench/results/runner_overhead.{json,md}

The same run (CartPole-v1 default config, 8 seeds, 500k env steps each) two ways:
  - one ``jax.jit(jax.vmap(jaxppo.train))`` call (lower + compile timed apart, then the run);
  - ``jaxppo.experiment.run`` with its default chunking (about 50 chunks), checkpoints every
    10 chunks, metrics.csv written after every chunk, no progress bar and no plots.
Each is run --repeats times (the runner into a fresh directory each time; its compiled
chunk is cached after the first); the run time is the median.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

import core_throughput  # bench/core_throughput.py
import machine as machine_info  # bench/machine.py

import jaxppo


def one_call(config, seeds: int, repeats: int) -> dict:
    """One jitted whole-run call, measured as `core_throughput.measure` does."""
    row = core_throughput.measure(config, seeds, repeats)
    return {"compile_s": row["compile_s"], "run_s": row["run_s_median"],
            "run_s_all": row["run_s_all"]}


def runner(config, seeds: int, repeats: int) -> dict:
    runs, compile_s, totals = [], None, []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            start = time.perf_counter()
            result = jaxppo.experiment.run(config, seeds, pathlib.Path(tmp) / f"r{i}",
                                           progress=False, plots=False)
            total = time.perf_counter() - start
            if i == 0:  # includes compiling the init and chunk programs
                compile_s = result.compile_s
                continue
            runs.append(result.run_s)
            totals.append(total)
    return {"compile_s": round(compile_s, 2), "chunk_updates": result.spec.chunk_updates,
            "chunks": -(-config.num_updates // result.spec.chunk_updates),
            "run_s": round(statistics.median(runs), 2),
            "run_s_all": [round(r, 2) for r in runs],
            "wall_s_with_files": round(statistics.median(totals), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args()
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    config = jaxppo.Config()
    load_before = machine_info.loadavg()
    single = one_call(config, args.seeds, args.repeats)
    chunked = runner(config, args.seeds, args.repeats)
    load_after = machine_info.loadavg()
    steps = args.seeds * config.num_updates * config.batch_size
    result = {
        "benchmark": f"CartPole-v1 default config, {args.seeds} seeds x "
                     f"{config.num_updates * config.batch_size} env steps: chunked runner vs "
                     "one jitted call",
        "machine": machine_info.describe(), "loadavg_before": load_before,
        "loadavg_after": load_after, "one_call": single, "runner": chunked,
        "run_overhead": round(chunked["run_s"] / single["run_s"] - 1.0, 4),
        "wall_overhead_with_files": round(chunked["wall_s_with_files"] / single["run_s"] - 1.0, 4),
        "env_steps_per_s": {"one_call": round(steps / single["run_s"]),
                            "runner": round(steps / chunked["run_s"])},
    }
    lines = [f"# {result['benchmark']}", "",
             machine_info.header(result["machine"], load_before, load_after), "",
             "| | compile (s) | run, median (s) | env steps/s |", "|---|---:|---:|---:|",
             f"| one `jit(vmap(train))` call | {single['compile_s']} | {single['run_s']} | "
             f"{result['env_steps_per_s']['one_call']:,} |",
             f"| `experiment.run`, {chunked['chunks']} chunks of {chunked['chunk_updates']} "
             f"updates | {chunked['compile_s']} | {chunked['run_s']} | "
             f"{result['env_steps_per_s']['runner']:,} |", "",
             f"Run-time overhead of the runner: {100 * result['run_overhead']:+.1f}% "
             f"({100 * result['wall_overhead_with_files']:+.1f}% counting its whole wall time "
             "with checkpoints, metrics.csv and summary)."]
    machine_info.write(args.out, "runner_overhead", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
