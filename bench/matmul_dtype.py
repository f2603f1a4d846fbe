"""float32 against bfloat16 matmuls (`Config.matmul_dtype`) on whole CartPole-v1 runs.

    python bench/matmul_dtype.py           # writes bench/results/matmul_dtype.{json,md}
    python bench/matmul_dtype.py --budget 0.1 --cases s1 envs256   # a quick look

The peers grid's one-device CartPole cases (`peers.grid`), each trained with both dtypes in
one process: both programs compiled first (lower + compile, timed apart), then --repeats
rounds that call each once, alternating, so a busy minute on a shared machine falls on both.
Run time is the median over rounds; the learning figure is the IQM over seeds of
`jaxppo.stats.final_returns` (the mean training return over the last 10 updates), from the
first round. By default the host is first split into one JAX device per core and each case's
seeds are sharded over `jaxppo.sweep.default_devices`, as `jaxppo.sweep` and the command line
run them (a 1-seed case stays on one device); ``--one-device`` keeps every case on JAX's one
default CPU device.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time

import jax
import machine as machine_info  # bench/machine.py
import numpy as np
import peers  # bench/peers.py: the grid's cases

import jaxppo
from jaxppo import stats

sweep_lib = importlib.import_module("jaxppo.sweep")  # the module; jaxppo.sweep is the function

DTYPES = ("float32", "bfloat16")


# This script's short names for the peers grid's one-device CartPole cases (`peers.grid`).
GRID_CASES = {"s1": "cartpole-s1", "s8": "cartpole-s8", "envs256": "cartpole-256envs",
              "s64": "cartpole-s64"}
CASES = {short: next(case for case in peers.grid() if case.name == name)
         for short, name in GRID_CASES.items()}


def case_config(case: peers.Case, budget: float) -> jaxppo.Config:
    """The case's config at its share of the steps times ``budget``, in whole updates (at
    least one), as `peers.py` runs it."""
    return peers.scaled(case.config, case.scale * budget)


def measure(case: peers.Case, budget: float, repeats: int) -> dict:
    base = case_config(case, budget)
    devices = sweep_lib.default_devices(case.seeds)
    keys = jax.device_put(jax.random.split(jax.random.key(0), case.seeds),
                          sweep_lib.runs_sharding(devices))
    fn = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))
    compiled, compile_s = {}, {}
    for dtype in DTYPES:
        config = base.replace(matmul_dtype=dtype)
        start = time.perf_counter()
        compiled[dtype] = (fn.lower(config, keys).compile(), config)
        compile_s[dtype] = time.perf_counter() - start
    runs = {dtype: [] for dtype in DTYPES}
    returns = {}
    for round_ in range(repeats):
        for dtype, (program, config) in compiled.items():
            start = time.perf_counter()
            _, metrics = jax.block_until_ready(program(config, keys))
            runs[dtype].append(time.perf_counter() - start)
            if round_ == 0:
                returns[dtype] = stats.final_returns(np.asarray(metrics.episode_return))
    steps = case.seeds * base.num_updates * base.batch_size
    row = {"case": case.name, "title": case.title, "seeds": case.seeds,
           "num_envs": base.num_envs, "devices": len(devices), "env_steps": steps}
    for dtype in DTYPES:
        run_s = statistics.median(runs[dtype])
        row[dtype] = {"compile_s": round(compile_s[dtype], 2), "run_s_median": round(run_s, 3),
                      "run_s_all": [round(r, 3) for r in runs[dtype]],
                      "env_steps_per_s": round(steps / run_s),
                      "iqm_return": round(float(stats.iqm(returns[dtype])), 1)}
    # Per round, float32's time over bfloat16's: > 1 means bfloat16 is faster.
    ratios = [a / b for a, b in zip(runs["float32"], runs["bfloat16"], strict=True)]
    row["speed_bfloat16_over_float32"] = round(statistics.median(ratios), 3)
    row["speed_per_round"] = [round(r, 3) for r in ratios]
    print(row, flush=True)
    return row


def markdown(result: dict) -> list[str]:
    lines = [f"# {result['benchmark']}", "",
             machine_info.header(result["machine"], result["loadavg_before"],
                                 result["loadavg_after"]), "",
             "| case (steps per seed) | devices | float32 compile / run (s) | float32 env steps/s "
             "| float32 return | bfloat16 compile / run (s) | bfloat16 env steps/s | bfloat16 "
             "return | speed bfloat16 / float32 (per round) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        f32, b16 = r["float32"], r["bfloat16"]
        per_seed = r["env_steps"] // r["seeds"]
        lines.append(
            f"| {r['title']} ({per_seed // 1000}k) | {r['devices']} | {f32['compile_s']} / "
            f"{f32['run_s_median']} | {f32['env_steps_per_s']:,} | {f32['iqm_return']} | "
            f"{b16['compile_s']} / {b16['run_s_median']} | {b16['env_steps_per_s']:,} | "
            f"{b16['iqm_return']} | **{r['speed_bfloat16_over_float32']}** "
            f"({', '.join(str(x) for x in r['speed_per_round'])}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--budget", type=float, default=1.0,
                        help="share of each case's steps (1.0: the peers grid's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one-device", action="store_true",
                        help="keep every case on JAX's one default CPU device")
    parser.add_argument("--out", default=str(machine_info.ROOT / "bench" / "results"))
    args = parser.parse_args()
    if not 0 < args.budget <= 1:
        parser.error(f"--budget {args.budget}: expected a share in (0, 1]")
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: expected an integer >= 1")
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    if not args.one_device:
        jaxppo.use_cpu_cores()  # before any JAX operation
    before = machine_info.loadavg()
    rows = [measure(CASES[name], args.budget, args.repeats) for name in args.cases]
    result = {"benchmark": "float32 against bfloat16 matmuls, CartPole-v1 whole runs, "
                           + ("one device" if args.one_device else "seeds on every core"),
              "budget": args.budget, "repeats": args.repeats,
              "machine": machine_info.describe(), "loadavg_before": before,
              "loadavg_after": machine_info.loadavg(), "rows": rows}
    lines = markdown(result)
    machine_info.write(args.out, "matmul_dtype", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
