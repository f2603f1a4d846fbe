"""jaxppo against Brax's own PPO trainer on a MuJoCo Playground env, side by side in one run.

    python bench/brax_ppo.py                    # speed and learning; bench/results/brax_ppo.*
    python bench/brax_ppo.py --quick            # smoke run: tiny budgets, 2 seeds
    python bench/brax_ppo.py --learn-steps 2000000 --seeds 4
    python bench/brax_ppo.py --render bench/results/brax_ppo.json   # redraw the table only

Both trainers get the same numbers (`CONFIG`, mapped onto Brax's options by
``peer_brax.py``), the same env (playground's CartpoleBalance on MJX's pure-JAX physics) and
the same JAX, each in its own process:

- speed: one seed each; jaxppo's compiled `train` timed apart from its compile (median of
  ``--repeats`` calls), Brax's steady epochs timed apart from the epochs that compile;
- learning: ``--seeds`` seeds at ``--learn-steps`` each, jaxppo's in one vmapped call, Brax's
  one call per seed (its trainer takes one seed); each seed's score is the mean return of
  ``--eval-episodes`` whole episodes with the policy's mode, and the table gives the IQM over
  seeds with its 95% interval (`jaxppo.stats`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import machine as machine_info  # bench/machine.py
import numpy as np

import jaxppo
from jaxppo import stats

BENCH = pathlib.Path(__file__).resolve().parent
RESULTS = BENCH / "results"

# The numbers both trainers get: jaxppo's preset for the env (Playground's tuned DM Control
# values with a batch sized for a 2-core CPU; see jaxppo/presets.py), as plain values.
_PRESET = jaxppo.preset("playground/CartpoleBalance")
CONFIG = {name: getattr(_PRESET, name) for name in (
    "env_id", "num_envs", "num_steps", "num_minibatches", "update_epochs", "learning_rate",
    "anneal_lr", "gamma", "gae_lambda", "ent_coef", "clip_eps", "vf_coef", "max_grad_norm",
    "normalize_obs", "clip_value_loss", "shuffle", "hidden_sizes", "activation")}
CONFIG["hidden_sizes"] = list(CONFIG["hidden_sizes"])
# What the two trainers still do differently with the same numbers.
DIFFERENCES = [
    "initialization: Brax LeCun uniform; jaxppo orthogonal (gains sqrt(2), 0.01 policy, 1 value)",
    "Adam epsilon: Brax optax's default 1e-8; jaxppo 1e-5",
    "time limits: Brax's GAE drops the step an episode was cut at (bootstrap_on_timeout "
    "False, its default); jaxppo bootstraps from the value of the final observation",
    "actions: Brax's Gaussian samples go to the env unclipped (MJX clamps controls to their "
    "range); jaxppo clips them to [-1, 1] before the env and keeps the sampled action's "
    "log-prob",
    "observation normalization: both running mean and std; Brax updates it from each batch "
    "before the update, jaxppo from each observation as the rollout sees it",
]
STEPS_PER_UPDATE = CONFIG["num_envs"] * CONFIG["num_steps"]


def run_peer(script: str, spec: dict) -> dict:
    """Run ``bench/<script>`` on ``spec`` in a fresh process; its last JSON line."""
    done = subprocess.run([sys.executable, str(BENCH / script), json.dumps(spec)],
                          capture_output=True, text=True, cwd=BENCH)
    if done.returncode:
        raise RuntimeError(f"{script} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def budget(steps: int, epochs: int) -> int:
    """``steps`` rounded down to whole updates that split into ``epochs`` Brax epochs."""
    updates = max(steps // STEPS_PER_UPDATE // epochs, 1) * epochs
    return updates * STEPS_PER_UPDATE


def measure(args) -> dict:
    speed_steps = budget(args.speed_steps, args.epochs)
    learn_steps = budget(args.learn_steps, args.epochs)
    speed_cfg = {**CONFIG, "total_timesteps": speed_steps}
    learn_cfg = {**CONFIG, "total_timesteps": learn_steps}
    load_before = machine_info.loadavg()
    print(f"speed: {speed_steps:,} steps, 1 seed each", flush=True)
    speed = {
        "jaxppo": run_peer("peer_jaxppo.py", {"case": "speed", "seeds": 1,
                                              "repeats": args.repeats, "hparams": speed_cfg}),
        "brax": run_peer("peer_brax.py", {"case": "speed", "seed": 0, "epochs": args.epochs,
                                          "eval_episodes": args.eval_episodes,
                                          "hparams": speed_cfg}),
        "env_alone": run_peer("peer_jaxppo.py", {"case": "speed", "env_alone": True,
                                                 "repeats": args.repeats,
                                                 "hparams": speed_cfg}),
    }
    print(f"learning: {learn_steps:,} steps x {args.seeds} seeds", flush=True)
    start = time.perf_counter()
    jaxppo_learn = run_peer("peer_jaxppo.py", {
        "case": "learning", "seeds": args.seeds, "repeats": 1, "hparams": learn_cfg,
        "eval_episodes": args.eval_episodes})
    jaxppo_learn["wall_s"] = round(time.perf_counter() - start, 1)
    brax_runs = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        brax_runs.append(run_peer("peer_brax.py", {
            "case": "learning", "seed": seed, "epochs": args.epochs,
            "eval_episodes": args.eval_episodes, "hparams": learn_cfg}))
        print(f"  brax seed {seed}: {brax_runs[-1]['final_returns'][0]:.1f}", flush=True)
    brax_wall = round(time.perf_counter() - start, 1)
    return {
        "config": CONFIG, "differences": DIFFERENCES, "machine": machine_info.describe(),
        "load_average": {"before": load_before, "after": machine_info.loadavg()},
        "speed": speed,
        "learning": {
            "env_steps_per_seed": learn_steps, "seeds": args.seeds,
            "eval_episodes": args.eval_episodes,
            "jaxppo": {"scores": jaxppo_learn["eval_returns"], "wall_s": jaxppo_learn["wall_s"],
                       "compile_s": jaxppo_learn["compile_s"],
                       "run_s": jaxppo_learn["run_s_median"]},
            "brax": {"scores": [r["final_returns"][0] for r in brax_runs], "wall_s": brax_wall,
                     "runs": brax_runs},
        },
        "command": "python bench/brax_ppo.py " + " ".join(sys.argv[1:]),
    }


def render(result: dict) -> str:
    speed, learn = result["speed"], result["learning"]
    jx, bx = speed["jaxppo"], speed["brax"]
    lines = [
        "# jaxppo against Brax's PPO trainer, one run",
        "",
        machine_info.header(result["machine"], result["load_average"]["before"],
                            result["load_average"]["after"]),
        "",
        f"Command: `{result['command']}`.",
        "",
        f"Env: {result['config']['env_id']} (MJX, pure-JAX physics, 1000-step episodes). "
        "Settings, the same in both: "
        + ", ".join(f"{k}={v}" for k, v in result["config"].items() if k != "env_id") + ".",
        "",
        "## Speed: one seed each",
        "",
        "| trainer | env steps | compile (s) | steady run (s) | env steps/s | return |",
        "|---|---:|---:|---:|---:|---:|",
        f"| jaxppo | {jx['env_steps']:,} | {jx['compile_s']:.1f} | {jx['run_s_median']:.2f} | "
        f"{jx['env_steps_per_s']:,} | {jx['final_returns'][0]:.1f} (training) |",
        f"| Brax PPO | {bx['env_steps']:,} | {bx['compile_s']:.1f} | {bx['run_s']:.2f} | "
        f"{bx['env_steps_per_s']:,} | {bx['final_returns'][0]:.1f} (evaluation) |",
        "",
        f"jaxppo / Brax env steps/s: **{jx['env_steps_per_s'] / bx['env_steps_per_s']:.2f}x**; "
        f"compile time jaxppo / Brax: {jx['compile_s'] / bx['compile_s']:.2f}.",
        "",
        *_beyond_env(speed),
        f"## Learning: {learn['seeds']} seeds x {learn['env_steps_per_seed']:,} env steps",
        "",
        f"Score per seed: the mean return of {learn['eval_episodes']} evaluation episodes "
        "with the policy's mode. IQM over seeds [95% CI].",
        "",
        "| trainer | IQM [95% CI] | per seed | wall time, all seeds (s) |",
        "|---|---|---|---:|",
    ]
    for name, label in (("jaxppo", "jaxppo (seeds in one call)"),
                        ("brax", "Brax PPO (one call per seed)")):
        scores = np.asarray(learn[name]["scores"], dtype=float)
        entry = stats.aggregate(scores)["iqm"]
        lines.append(f"| {label} | {stats.format_ci(entry)} | "
                     f"{', '.join(f'{s:.0f}' for s in scores)} | {learn[name]['wall_s']:.0f} |")
    lines += ["", "What still differs with the same numbers:", ""]
    lines += [f"- {d}" for d in result["differences"]]
    versions = {**bx.get("versions", {}), **jx.get("versions", {})}
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())), ""]
    return "\n".join(lines)


def _beyond_env(speed: dict) -> list[str]:
    """Where the time goes: the env's own steps (random actions, one jitted scan) against
    each trainer's steady run."""
    alone = speed.get("env_alone")
    if alone is None:
        return []
    jx, bx = speed["jaxppo"], speed["brax"]
    env_s = alone["run_s_median"] * jx["env_steps"] / alone["env_steps"]
    jx_rest, bx_rest = jx["run_s_median"] - env_s, bx["run_s"] - env_s
    return [
        f"The env alone (the same {alone['env_steps']:,} steps with uniformly random actions, "
        f"through jaxppo's adapter, one jitted scan): {alone['run_s_median']:.2f} s, "
        f"{alone['env_steps_per_s']:,} env steps/s. Beyond the env's steps, jaxppo's run "
        f"takes {jx_rest:.2f} s and Brax's {bx_rest:.2f} s ({bx_rest / jx_rest:.2f}x): the "
        "policy's actions, the advantages and the gradient steps.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-steps", type=int, default=1_536_000)
    parser.add_argument("--learn-steps", type=int, default=2_000_000)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4, help="Brax epochs (>= 3)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--eval-episodes", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--render", type=pathlib.Path)
    args = parser.parse_args()
    for name in ("speed_steps", "learn_steps", "seeds", "repeats", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.epochs < 3:
        parser.error(f"--epochs must be >= 3 (Brax compiles in its first two), got "
                     f"{args.epochs}")
    if args.render:
        result = json.loads(args.render.read_text())
    else:
        if args.quick:
            args.speed_steps, args.learn_steps, args.seeds = 4 * 4 * STEPS_PER_UPDATE, \
                4 * 4 * STEPS_PER_UPDATE, 2
        result = measure(args)
    out = args.render.parent if args.render else args.out
    table = render(result)
    machine_info.write(out, "brax_ppo", result, [table])
    print(table)


if __name__ == "__main__":
    main()
