"""Where the time of one PPO update goes, and what jaxppo's XLA CPU flag costs.

    python bench/profile_update.py        # writes bench/results/profile_update.{json,md}

Pieces of one update at the CartPole-v1 classic config, vmapped over --seeds seeds, each jitted
alone as a lax.scan that repeats it --count times (as inside the training loop: no per-call
dispatch), on the inputs the previous piece produced; median of --repeats round-robin
rounds (every piece once per round) / count:

    rollout      T policy steps in N envs (lax.scan) and the batched critic pass over the
                 pre-reset next observations
    next values  that critic pass alone (part of rollout)
    rewards      the running discounted return (a forward scan over T, for reward scaling;
                 run even when scale_rewards is off) and the rewards GAE sees
    GAE          reverse scan over T
    update       batch, E epochs x M shuffled minibatch gradient steps
    whole step   train.step: all of it plus metrics and normalizer merges

XLA flag: jaxppo once set --xla_cpu_enable_concurrency_optimized_scheduler=false at import
(a guard against a hang whose cause, a batched LAPACK QR at init, was fixed in
networks.init); it sets no flag now. Whole runs (peer_jaxppo.py subprocesses, --flag-budget of
the run) with the flag added by hand and with XLA's default back to back, --flag-trials pairs
at 1 and at 8 seeds; a run that does not finish within --flag-timeout seconds is recorded as
hung. The summary is the median over pairs of the speed ratio.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import machine as machine_info  # bench/machine.py

import jaxppo
from jaxppo import envs, gae, networks, rollout, update

# The module (the package's `jaxppo.train` name is the function).
train_lib = importlib.import_module("jaxppo.train")

BENCH = pathlib.Path(__file__).resolve().parent
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def _parts(config):
    env = envs.make(config.env_id)
    return env, networks.make(config, env), update.make_optimizer(config)


def _repeat(piece, inputs, advance, count: int):
    """``piece(inputs)`` run ``count`` times in a lax.scan, as inside the training loop (no
    per-call dispatch). Every output is carried to the end, so none is dead code, and the
    inputs pass an optimization barrier each time, so nothing is hoisted out of the loop as
    invariant; ``advance(inputs, outputs)`` gives the next inputs (the new state, or the same
    inputs for pure pieces)."""

    def body(carry, _):
        inputs = jax.lax.optimization_barrier(carry[0])
        outputs = piece(inputs)
        return (advance(inputs, outputs), outputs), None

    first = piece(inputs)  # the first of the ``count`` repetitions, the carry's initial output
    return jax.lax.scan(body, (inputs, first), None, length=count - 1)[0]


def _same(inputs, outputs):
    return inputs


def rollout_piece(config, state, count):
    env, network, _ = _parts(config)
    policy = rollout.Policy(state.params, state.normalizers)

    def once(c):
        carry, key = c
        return rollout.rollout(config, env, network, policy, carry, key), jax.random.split(key)[0]

    def advance(inputs, outputs):
        (carry, _), key = outputs
        return carry, key

    return _repeat(once, (rollout.EnvCarry(state.obs, state.env_state), state.key), advance,
                   count)


def next_values_piece(config, state, transitions, count):
    _, network, _ = _parts(config)
    policy = rollout.Policy(state.params, state.normalizers)
    return _repeat(lambda obs: rollout.critic_value(config, network, policy, obs),
                   transitions.final_obs, _same, count)


def rewards_piece(config, state, transitions, count):
    return _repeat(lambda tr: train_lib._scaled_rewards(config, state.normalizers, tr),
                   transitions, _same, count)


def gae_piece(config, transitions, reward, count):
    def once(inputs):
        r, tr = inputs
        return gae.batched_gae(r, tr.value, tr.next_value, tr.terminated, tr.truncated,
                               config.gamma, config.gae_lambda)

    return _repeat(once, (reward, transitions), _same, count)


def update_piece(config, state, transitions, reward, advantages, targets, count):
    _, network, optimizer = _parts(config)
    data = update.UpdateData(transitions, reward, state.normalizers)
    batch = update.make_batch(config, data, advantages, targets)

    def once(c):
        carry, key = c
        out = update.update(config, network, optimizer, carry, data, batch, key)
        return out, jax.random.split(key)[0]

    def advance(inputs, outputs):
        (carry, _), key = outputs
        return carry, key

    carry = update.OptCarry(state.params, state.opt_state, jnp.zeros((), jnp.bool_))
    return _repeat(once, (carry, state.key), advance, count)


def step_piece(config, state, count):
    return _repeat(lambda s: train_lib.step(config, s), state, lambda i, o: o[0], count)


def round_robin(calls: dict, repeats: int, count: int) -> dict:
    """Seconds per repetition of each compiled call (which repeats its piece ``count`` times):
    the median over ``repeats`` rounds, each round calling every piece once, so that all
    pieces see the same load on a shared machine."""
    for fn, args in calls.values():
        jax.block_until_ready(fn(*args))
    runs = {name: [] for name in calls}
    for _ in range(repeats):
        for name, (fn, args) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            runs[name].append(time.perf_counter() - start)
    return {name: statistics.median(r) / count for name, r in runs.items()}


def profile_pieces(seeds: int, repeats: int, count: int, num_envs: int = 0) -> dict:
    config = jaxppo.preset("CartPole-v1")
    if num_envs:
        config = config.replace(num_envs=num_envs)
    keys = jax.random.split(jax.random.key(0), seeds)
    state = jax.jit(jax.vmap(jaxppo.init, in_axes=(None, 0)))(config, keys)
    one_step = jax.jit(jax.vmap(train_lib.step, in_axes=(None, 0)))
    for _ in range(3):  # a few updates first, so that episodes end and the data is realistic
        state, _ = one_step(config, state)

    # Inputs of the later pieces: one update's rollout, rewards and GAE, as train.step makes.
    def prepare(state):
        env, network, _ = _parts(config)
        policy = rollout.Policy(state.params, state.normalizers)
        _, tr = rollout.rollout(config, env, network, policy,
                                rollout.EnvCarry(state.obs, state.env_state), state.key)
        reward, _, _ = train_lib._scaled_rewards(config, state.normalizers, tr)
        advantages, targets = gae.batched_gae(reward, tr.value, tr.next_value, tr.terminated,
                                              tr.truncated, config.gamma, config.gae_lambda)
        return tr, reward, advantages, targets

    tr, reward, advantages, targets = jax.jit(jax.vmap(prepare))(state)

    def compiled(piece, *args):
        fn = jax.jit(jax.vmap(functools.partial(piece, config, count=count)))
        return fn.lower(*args).compile(), args

    times = round_robin({
        "rollout (T env steps + acting)": compiled(rollout_piece, state),
        "  of which next values (critic on [T, N])": compiled(next_values_piece, state, tr),
        "rewards (discounted-return scan)": compiled(rewards_piece, state, tr),
        "GAE (reverse scan)": compiled(gae_piece, tr, reward),
        "update (E x M minibatch steps)": compiled(update_piece, state, tr, reward, advantages,
                                                   targets),
        "whole step": compiled(step_piece, state),
    }, repeats, count)
    parts = ("rollout (T env steps + acting)", "rewards (discounted-return scan)",
             "GAE (reverse scan)", "update (E x M minibatch steps)")
    times["rest (metrics, merges: whole step - pieces)"] = times["whole step"] - sum(
        times[p] for p in parts)
    return {"config": f"CartPole-v1 classic ({config.num_envs} envs x 128 steps, 4 epochs x 4 "
                      "minibatches)",
            "seeds": seeds, "repeats": repeats, "count": count,
            "ms": {k: round(v * 1e3, 3) for k, v in times.items()}}


def flag_env(keep_default: bool) -> dict:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").replace(SCHEDULER_FLAG, "").strip()
    env["XLA_FLAGS"] = flags if keep_default else f"{flags} {SCHEDULER_FLAG}".strip()
    return env


def flag_run(seeds: int, budget: float, keep_default: bool, timeout: float) -> dict:
    config = jaxppo.preset("CartPole-v1")
    updates = max(1, int(config.num_updates * budget))
    fields = {"total_timesteps": updates * config.batch_size}
    spec = {"case": "xla-flag", "seeds": seeds, "repeats": 3, "hparams": fields}
    command = [sys.executable, str(BENCH / "peer_jaxppo.py"), json.dumps(spec)]
    label = "XLA default scheduler" if keep_default else "scheduler flag"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=flag_env(keep_default), cwd=BENCH.parent)
    except subprocess.TimeoutExpired:
        return {"setting": label, "seeds": seeds, "hung": True, "timeout_s": timeout}
    if done.returncode:
        return {"setting": label, "seeds": seeds, "error": done.stderr[-300:]}
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"setting": label, "seeds": seeds, "hung": False, "compile_s": r["compile_s"],
            "run_s_median": r["run_s_median"], "env_steps_per_s": r["env_steps_per_s"],
            "xla_flags": r["xla_flags"]}


def flag_cost(budget: float, trials: int, timeout: float) -> list[dict]:
    """Pairs of runs (flag, then XLA's default) back to back, so that each pair sees about the
    same load on a shared machine; ``trials`` pairs at 1 and at 8 seeds."""
    rows = []
    for seeds in (1, 8):
        for trial in range(trials):
            for keep_default in (False, True):
                rows.append(flag_run(seeds, budget, keep_default, timeout) | {"pair": trial})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def flag_summary(rows: list[dict]) -> dict:
    """Per seed count: the median over pairs of (default scheduler steps/s) / (flag steps/s),
    and how many default-scheduler runs hung."""
    out = {}
    for seeds in sorted({r["seeds"] for r in rows}):
        pairs = {}
        for r in rows:
            if r["seeds"] == seeds:
                pairs.setdefault(r["pair"], {})[r["setting"]] = r
        default, flag = "XLA default scheduler", "scheduler flag"
        ratios = [p[default]["env_steps_per_s"] / p[flag]["env_steps_per_s"]
                  for p in pairs.values()
                  if all(p.get(k, {}).get("env_steps_per_s") for k in (default, flag))]
        hung = sum(1 for r in rows if r["seeds"] == seeds and r.get("hung"))
        out[str(seeds)] = {"pairs": len(pairs), "hung_runs": hung,
                           "median_speed_ratio_default_over_flag":
                           round(statistics.median(ratios), 3) if ratios else None,
                           "ratios": [round(x, 3) for x in ratios]}
    return out


def markdown(result: dict) -> str:
    p = result.get("pieces")
    lines = ["# Where the time of one update goes", ""]
    if p:
        whole = p["ms"]["whole step"]
        lines += [f"{p['config']}, {p['seeds']} seeds vmapped; each piece jitted alone as a "
                  f"scan of {p['count']} repetitions, median of {p['repeats']} round-robin "
                  f"calls. Load average {result['loadavg']}.", "",
                  "| piece | ms per update (all seeds) | share of the whole step |",
                  "|---|---:|---:|"]
        lines += [f"| {k} | {v:.2f} | {v / whole:.0%} |" for k, v in p["ms"].items()]
    if result.get("flag"):
        lines += ["", "## XLA flag", "",
                  f"Whole CartPole runs ({result['flag_budget']} of 500k steps per seed), "
                  "median of 3 compiled calls per trial.", "",
                  "| setting | seeds | compile (s) | run (s) | env steps/s |",
                  "|---|---:|---:|---:|---:|"]
        for r in result["flag"]:
            if r.get("hung"):
                lines.append(f"| {r['setting']} | {r['seeds']} | hung (no result in "
                             f"{r['timeout_s']:.0f} s) | | |")
            elif r.get("error"):
                lines.append(f"| {r['setting']} | {r['seeds']} | error | | |")
            else:
                lines.append(f"| {r['setting']} | {r['seeds']} | {r['compile_s']:.1f} | "
                             f"{r['run_s_median']:.2f} | {r['env_steps_per_s']:,} |")
        lines.append("")
        for seeds, summary in flag_summary(result["flag"]).items():
            lines.append(f"- {seeds} seed(s): default scheduler / flag env steps/s, median over "
                         f"{summary['pairs']} back-to-back pairs: "
                         f"{summary['median_speed_ratio_default_over_flag']} "
                         f"(pairs: {summary['ratios']}); default-scheduler runs that hung: "
                         f"{summary['hung_runs']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--count", type=int, default=20, help="repetitions inside one call")
    parser.add_argument("--num-envs", type=int, default=0,
                        help="envs per seed (0: the preset's 4)")
    parser.add_argument("--skip-pieces", action="store_true")
    parser.add_argument("--skip-flag", action="store_true")
    parser.add_argument("--flag-budget", type=float, default=0.25)
    parser.add_argument("--flag-trials", type=int, default=3)
    parser.add_argument("--flag-timeout", type=float, default=120)
    parser.add_argument("--out", default=str(BENCH / "results"))
    args = parser.parse_args()
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    if args.count < 2:
        parser.error(f"--count {args.count}: must be at least 2")
    if args.num_envs < 0:
        parser.error(f"--num-envs {args.num_envs}: must be 0 (the preset's) or a positive count")
    loadavg = [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]
    result = {"benchmark": "where time goes in one update; XLA flag cost",
              "machine": machine_info.describe(), "loadavg": loadavg,
              "flag_budget": args.flag_budget}
    if not args.skip_pieces:
        result["pieces"] = profile_pieces(args.seeds, args.repeats, args.count, args.num_envs)
    if not args.skip_flag:
        result["flag"] = flag_cost(args.flag_budget, args.flag_trials, args.flag_timeout)
        result["flag_summary"] = flag_summary(result["flag"])
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile_update.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "profile_update.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
