"""A suite env's steps with three ways of resetting, side by side, at steady state.

    python bench/resets.py                                   # Craftax-Classic, 256 envs
    python bench/resets.py --env navix/Navix-Empty-8x8-v0 --envs 64 --out /tmp/resets

Three ways of stepping N envs that reset themselves, timed on the same steps:

- ``every step``: ``jax.vmap(env.step)``, a reset computed for every env at every step (what an
  auto-reset wrapper under vmap does);
- ``any finished``: `SuiteEnv.batch_step` with every env's reset computed at a step where any
  env finished, none elsewhere (``slots=N``);
- ``slots``: `SuiteEnv.batch_step` with the finished envs' resets alone where at most
  `jaxppo.envs.core.reset_slots(N)` finished (its default, but for adapters that set
  ``partial_resets = False``, which take the second way).

The envs act at random. They first step --warmup steps together (so that episodes end at
their own pace, not all at once), then each way runs the same --steps steps from there, one
jitted scan, --repeats times after a compiling call; the table gives the median, the env steps
per second, and how often envs finished. Results go to OUT/resets.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import machine  # bench/machine.py
import numpy as np

from jaxppo import envs
from jaxppo.envs import core

RESULTS = machine.ROOT / "bench" / "results" / "resets"
WAYS = ("every step", "any finished", "slots")


def _stepper(env, way: str, num_envs: int):
    """A jitted (state, key) -> (state, finished per step [T]) over ``steps`` random steps."""
    if way == "every step":
        step = jax.vmap(env.step)
    elif way == "any finished":
        step = functools.partial(env.batch_step, slots=num_envs)
    else:
        step = functools.partial(env.batch_step, slots=core.reset_slots(num_envs))
    num_actions = env.action_space.num_actions

    def run(state, key, steps):
        def body(state, key):
            act_key, step_key = jax.random.split(key)
            action = jax.random.randint(act_key, (num_envs,), 0, num_actions)
            state, out = step(jax.random.split(step_key, num_envs), state, action)
            return state, jnp.sum(out.done)
        return jax.lax.scan(body, state, jax.random.split(key, steps))

    return jax.jit(run, static_argnums=2)


def measure(env_id: str, num_envs: int, warmup: int, steps: int, repeats: int) -> dict:
    env = envs.make(env_id)
    if not isinstance(env, core.SuiteEnv) or not env.action_space.discrete:
        raise SystemExit(f"resets: {env_id!r} is not a suite env with discrete actions")
    _, state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), num_envs))
    state, _ = _stepper(env, "slots", num_envs)(state, jax.random.key(1), warmup)
    rows = []
    for way in WAYS:
        run = _stepper(env, way, num_envs)
        start = time.perf_counter()
        jax.block_until_ready(run(state, jax.random.key(2), steps))
        compile_s = time.perf_counter() - start
        times, finished = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            _, finished = jax.block_until_ready(run(state, jax.random.key(2), steps))
            times.append(time.perf_counter() - start)
        finished = np.asarray(finished)
        seconds = statistics.median(times)
        rows.append({"way": way, "compile_s": round(compile_s, 2), "run_s": round(seconds, 3),
                     "env_steps_per_s": round(num_envs * steps / seconds),
                     "steps_with_a_finish": float(np.mean(finished > 0)),
                     "finished_per_step": float(np.mean(finished))})
        print(rows[-1], flush=True)
    base = rows[0]["env_steps_per_s"]
    for row in rows:
        row["ratio"] = round(row["env_steps_per_s"] / base, 2)
    return {"env_id": env_id, "num_envs": num_envs, "reset_slots": core.reset_slots(num_envs),
            "default": "slots" if env.partial_resets else "any finished",
            "warmup": warmup, "steps": steps, "repeats": repeats, "rows": rows}


def markdown(result: dict, before: list[str], after: list[str]) -> list[str]:
    lines = [f"# {result['env_id']}: {result['num_envs']} envs acting at random, "
             f"{result['steps']} steps after {result['warmup']} (reset slots: "
             f"{result['reset_slots']}; the adapter's way: {result['default']})", "",
             machine.header(result["machine"], before, after), "",
             f"Command: `{result['command']}`", "",
             "| way | compile (s) | run, median (s) | env steps/s | x every step | steps where "
             "an env finished | envs finished per step |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['way']} | {row['compile_s']} | {row['run_s']} | "
                     f"{row['env_steps_per_s']:,} | {row['ratio']} | "
                     f"{row['steps_with_a_finish']:.0%} | {row['finished_per_step']:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="craftax/Craftax-Classic-Symbolic-v1")
    parser.add_argument("--envs", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if min(args.envs, args.warmup + 1, args.steps, args.repeats) < 1:
        raise SystemExit("resets: --envs, --steps and --repeats must be >= 1, --warmup >= 0")
    if not envs.is_known(args.env):
        raise SystemExit(f"resets: unknown env id {args.env!r}; `jaxppo envs` lists them")
    before = machine.loadavg()
    result = measure(args.env, args.envs, args.warmup, args.steps, args.repeats)
    after = machine.loadavg()
    result.update(machine=machine.describe(), load_before=before, load_after=after,
                  command="python bench/resets.py" + "".join(
                      f" --{name} {getattr(args, name)}" for name in (
                          "env", "envs", "warmup", "steps", "repeats")
                      if getattr(args, name) != parser.get_default(name)))
    machine.write(args.out, "resets", result, markdown(result, before, after))


if __name__ == "__main__":
    main()
