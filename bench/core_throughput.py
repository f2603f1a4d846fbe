"""Throughput of the whole-run program: CartPole-v1 default config, 1 and 8 seeds per call.

    python bench/core_throughput.py            # writes bench/results/core_throughput.{json,md}

Compile time (lower + compile) is measured apart from run time (median of --repeats compiled
calls, each ended by block_until_ready). env steps/s counts all seeds.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import jax
import machine as machine_info  # bench/machine.py

import jaxppo


def measure(config: jaxppo.Config, seeds: int, repeats: int) -> dict:
    keys = jax.random.split(jax.random.key(0), seeds)
    fn = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))
    start = time.perf_counter()
    compiled = fn.lower(config, keys).compile()
    compile_s = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(config, keys))
        runs.append(time.perf_counter() - start)
    run_s = statistics.median(runs)
    steps = seeds * config.num_updates * config.batch_size
    return {"seeds": seeds, "env_steps": steps, "compile_s": round(compile_s, 2),
            "run_s_median": round(run_s, 2), "run_s_all": [round(r, 2) for r in runs],
            "env_steps_per_s": round(steps / run_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args()
    config = jaxppo.Config()
    rows = [measure(config, s, args.repeats) for s in args.seeds]
    machine = machine_info.describe()
    result = {"benchmark": "CartPole-v1 default config, whole run (500k env steps per seed)",
              "machine": machine, "rows": rows}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "core_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# {result['benchmark']}", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['device']}, "
             f"jax {machine['jax']}", "",
             "| seeds | compile (s) | run, median (s) | env steps/s (all seeds) |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['seeds']} | {r['compile_s']} | {r['run_s_median']} | "
              f"{r['env_steps_per_s']:,} |" for r in rows]
    (out / "core_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
