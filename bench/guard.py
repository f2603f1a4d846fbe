"""What the per-run divergence guard costs: training with it against the same program without it.

    python bench/guard.py                 # writes bench/results/guard.{json,md}
    python bench/guard.py --rounds 5 --cases cartpole-s8

Every update ends with a finite-check of the loss, the gradient's norm, the new params and the
normalizers, and a select that freezes a run that went non-finite (`train.freeze_diverged`). The
unguarded program is the same `jaxppo.train` traced with the check replaced by "finite" and the
select by the new state, so nothing else differs. Both are compiled first, then called in
alternating rounds (guarded, unguarded, guarded, ...) so that load on a shared machine falls on
both alike; the figure is the ratio of their median run times. Compile time is recorded too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import time

import jax
import jax.numpy as jnp
import machine as machine_info  # bench/machine.py

import jaxppo

train_lib = importlib.import_module("jaxppo.train")  # the module; jaxppo.train is the function

# name -> (config, seeds): the classic CartPole run, a sweep-sized batch of it, the
# Pendulum preset (normalizers on), and the MinAtar CNN preset.
CASES = {
    "cartpole-s1": (jaxppo.Config(env_id="CartPole-v1", total_timesteps=200_704), 1),
    "cartpole-s8": (jaxppo.Config(env_id="CartPole-v1", total_timesteps=100_352), 8),
    "pendulum-s1": (jaxppo.preset("Pendulum-v1").replace(total_timesteps=200_704), 1),
    "breakout-cnn-s1": (jaxppo.preset("Breakout-MinAtar").replace(total_timesteps=98_304), 1),
}


@contextlib.contextmanager
def unguarded():
    """Trace `jaxppo.train` without the guard: every update counts as finite and keeps its
    new state."""
    cause, guarded = train_lib.divergence_cause, train_lib.freeze_diverged
    train_lib.divergence_cause = lambda *args: jnp.zeros((), jnp.int32)
    train_lib.freeze_diverged = lambda state, new, cause: new
    try:
        yield
    finally:
        train_lib.divergence_cause, train_lib.freeze_diverged = cause, guarded


def compiled(config: jaxppo.Config, seeds: int, guard: bool):
    keys = jax.random.split(jax.random.key(0), seeds)
    # A fresh function per program, so jit's cache never hands one the other's trace.
    program = jax.jit(jax.vmap(lambda c, k: train_lib.train(c, k), in_axes=(None, 0)))
    start = time.perf_counter()
    with contextlib.nullcontext() if guard else unguarded():
        call = program.lower(config, keys).compile()
    return call, keys, time.perf_counter() - start


def measure(name: str, rounds: int) -> dict:
    config, seeds = CASES[name]
    programs = {guard: compiled(config, seeds, guard) for guard in (True, False)}
    times = {True: [], False: []}
    finals = {}
    for _ in range(rounds):
        for guard, (call, keys, _) in programs.items():
            start = time.perf_counter()
            _, metrics = jax.block_until_ready(call(config, keys))
            times[guard].append(time.perf_counter() - start)
            finals[guard] = metrics.episode_return
    # The guard never fires on a healthy run, so the two programs train alike (an update
    # that ends no episode has a NaN mean return in both).
    same = bool(jnp.array_equal(finals[True], finals[False], equal_nan=True))
    steps = seeds * config.num_updates * config.num_envs * config.num_steps
    guarded, plain = statistics.median(times[True]), statistics.median(times[False])
    return {
        "case": name, "env_id": config.env_id, "seeds": seeds, "env_steps": steps,
        "compile_s": {"guarded": round(programs[True][2], 2),
                      "unguarded": round(programs[False][2], 2)},
        "run_s": {"guarded": [round(t, 3) for t in times[True]],
                  "unguarded": [round(t, 3) for t in times[False]]},
        "median_s": {"guarded": round(guarded, 3), "unguarded": round(plain, 3)},
        "cost": round(guarded / plain - 1, 4),
        "same_returns": same,
    }


def markdown(result: dict) -> list[str]:
    m = result["machine"]
    lines = [
        "# The divergence guard's cost",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['device']}; jax {m['jax']}. "
        f"Load average before {result['load'][0]}, after {result['load'][1]}. "
        f"Command: `{result['command']}`.",
        "",
        "Median of the alternating rounds; cost = guarded / unguarded - 1. A negative cost "
        "is XLA scheduling the two programs differently, not the guard saving work.",
        "",
        "| case | seeds | env steps | compile guarded (s) | unguarded (s) | run guarded (s) | "
        "unguarded (s) | cost | same returns at every update |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["cases"]:
        lines.append(
            f"| {r['case']} ({r['env_id']}) | {r['seeds']} | {r['env_steps']:,} | "
            f"{r['compile_s']['guarded']} | {r['compile_s']['unguarded']} | "
            f"{r['median_s']['guarded']} | {r['median_s']['unguarded']} | "
            f"{100 * r['cost']:+.1f}% | {'yes' if r['same_returns'] else 'no'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(machine_info.ROOT / "bench" / "results"))
    args = parser.parse_args()
    load = [" ".join(machine_info.loadavg())]
    cases = []
    for name in args.cases:
        cases.append(measure(name, args.rounds))
        print(cases[-1], flush=True)
    load.append(" ".join(machine_info.loadavg()))
    command = "python bench/guard.py" + (
        f" --cases {' '.join(args.cases)}" if args.cases != list(CASES) else "") + (
        f" --rounds {args.rounds}" if args.rounds != 5 else "")
    result = {"machine": machine_info.describe(), "load": load, "command": command,
              "cases": cases}
    machine_info.write(args.out, "guard", result, markdown(result))


if __name__ == "__main__":
    main()
