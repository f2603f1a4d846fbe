"""Learning with the new networks: a recurrent core on a memory task, the CNN on MinAtar.

    python bench/network_learning.py memory              # MemoryChain-bsuite, GRU vs MLP
    python bench/network_learning.py minatar RUN_DIR...  # tabulate `jaxppo train` runs
    python bench/network_learning.py table               # rewrite the markdown table

`memory` trains `jaxppo.preset("MemoryChain-bsuite")` (a GRU) and the same config without the
core, 8 seeds each in one vmapped call, and records the final training return of each seed
(mean over the last 10 updates) with its IQM and 95% stratified-bootstrap interval.

`minatar` reads run directories written by ``jaxppo train`` (their metrics.csv, one row per
seed and update), e.g. the Breakout run of the preset:

    jaxppo train --env Breakout-MinAtar --seeds 8 --out runs/breakout-cnn

and records for each the IQM [95% CI] of the final training return (last 10 updates) at the
last update done, the env steps it reached, and the IQM curve, then draws the curves with
their bands. Results: bench/results/networks_learning.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

RESULTS = pathlib.Path(__file__).parent / "results"
NAME = "networks_learning"
SEEDS = 8


def _load() -> dict:
    path = RESULTS / f"{NAME}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{NAME}.md").write_text(table(results))


def _report(final: np.ndarray) -> dict:
    from jaxppo import stats

    return {"final_returns": [float(x) for x in final],
            "iqm": stats.aggregate(final)["iqm"]}


def memory(seeds: int, timesteps: int | None) -> dict:
    import jax

    import jaxppo
    from jaxppo import stats

    recurrent = jaxppo.preset("MemoryChain-bsuite")
    if timesteps:
        recurrent = recurrent.replace(total_timesteps=timesteps)
    rows = {}
    for name, config in (("gru", recurrent), ("mlp", recurrent.replace(core="none"))):
        keys = jax.random.split(jax.random.key(0), seeds)
        start = time.perf_counter()
        _, metrics = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)),
                             static_argnums=0)(config, keys)
        returns = np.asarray(metrics.episode_return)
        seconds = time.perf_counter() - start
        rows[name] = {**_report(stats.final_returns(returns)),
                      "env_steps": config.num_updates * config.batch_size,
                      "wall_s": round(seconds, 1), "core": config.core,
                      "curve": [float(x) for x in np.nanmean(returns, axis=0)]}
        print(f"MemoryChain-bsuite {name}: IQM {stats.format_ci(rows[name]['iqm'], 3)} "
              f"({seconds:.0f} s)", flush=True)
    return {"env_id": "MemoryChain-bsuite", "seeds": seeds, "runs": rows}


def minatar(run_dirs: list[str]) -> dict:
    from jaxppo import rundir, stats

    out = {}
    for run_dir in run_dirs:
        spec = rundir.read_spec(run_dir)
        rows = rundir.read_metrics(run_dir)
        seeds = spec.seeds
        updates = max(int(r["update"]) for r in rows) + 1
        returns = np.full((seeds, updates), np.nan)
        for r in rows:
            if r["episode_return"] != "":
                returns[int(r["seed"]), int(r["update"])] = float(r["episode_return"])
        final = stats.final_returns(returns)
        # A point every 10 updates, from the first at which every seed has ended an episode
        # (Freeway's episodes are 2,500 steps: the first updates end none).
        points = [(u, stats.final_returns(returns[:, :u + 1])) for u in range(9, updates, 10)]
        points = [(u, stats.iqm(r)) for u, r in points if not np.isnan(r).any()]
        curve = [iqm for _, iqm in points]
        config = spec.config
        out[config.env_id] = {
            **_report(final), "run_dir": str(run_dir), "seeds": seeds,
            "env_steps": updates * config.batch_size,
            "config": {"encoder": config.encoder, "hidden_sizes": list(config.hidden_sizes),
                       "shared_encoder": config.shared_encoder,
                       "num_envs": config.num_envs, "num_steps": config.num_steps,
                       "learning_rate": float(config.learning_rate)},
            "curve_env_steps": [(u + 1) * config.batch_size for u, _ in points],
            "curve_iqm": curve,
        }
        print(f"{config.env_id}: IQM {stats.format_ci(out[config.env_id]['iqm'])} at "
              f"{updates * config.batch_size:,} env steps", flush=True)
    return out


# gymnax's README (its environment table, "PPO (R: ...)"): the return of the PPO checkpoint
# gymnax-blines trained per game (agents/<game>/ppo.yaml: 10M steps, 64 envs x 128 steps,
# 2 x 256 MLP on the flattened grid), seeds not stated. No published number at 2M was found.
PUBLISHED_MINATAR = {"Asterix-MinAtar": 15, "Breakout-MinAtar": 28, "Freeway-MinAtar": 58,
                     "SpaceInvaders-MinAtar": 131}
PUBLISHED_STEPS = 10_000_000


def table(results: dict) -> str:
    from jaxppo import stats

    lines = ["# Learning with the new networks", "",
             "Final training return: mean over each seed's last 10 updates; IQM over seeds "
             "[95% stratified-bootstrap CI].", ""]
    if "memory" in results:
        m = results["memory"]
        lines += [f"## {m['env_id']}: recurrent against feed-forward ({m['seeds']} seeds)", "",
                  "| policy | env steps | IQM [95% CI] | chance | solved |",
                  "|---|---:|---|---:|---:|"]
        for name, row in m["runs"].items():
            lines.append(f"| {name} | {row['env_steps']:,} | {stats.format_ci(row['iqm'], 3)}"
                         f" | 0 | 1 |")
        lines.append("")
    if results.get("minatar"):
        lines += ["## MinAtar with the CNN preset", "",
                  "| env | seeds | env steps | IQM [95% CI] | network | gymnax-blines PPO "
                  f"at {PUBLISHED_STEPS:,} steps |",
                  "|---|---:|---:|---|---|---:|"]
        for env_id, row in results["minatar"].items():
            c = row["config"]
            net = (f"{c['encoder']} + {c['hidden_sizes']}"
                   f"{', shared' if c['shared_encoder'] else ''}")
            lines.append(f"| {env_id} | {row['seeds']} | {row['env_steps']:,} | "
                         f"{stats.format_ci(row['iqm'])} | {net} | "
                         f"{PUBLISHED_MINATAR.get(env_id, 'none found')} |")
        lines += ["", "The published column is the return of the PPO checkpoint that gymnax's "
                  "README lists for each game (trained by gymnax-blines for 10M steps, 5 times "
                  "the budget here, with a 2 x 256 MLP on the flattened grid; seeds not "
                  "stated). No published PPO number at 2M steps was found, so the rows are "
                  "not compared at the same budget.", ""]
    return "\n".join(lines)


def figure(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results.get("minatar", {})
    if not rows:
        return
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3), squeeze=False)
    for ax, (env_id, row) in zip(axes[0], rows.items(), strict=True):
        ax.plot(np.asarray(row["curve_env_steps"]) / 1e6, row["curve_iqm"])
        ax.set_title(env_id)
        ax.set_xlabel("env steps (millions)")
        ax.set_ylabel("IQM training return")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("--seeds", type=int, default=SEEDS)
    mem.add_argument("--timesteps", type=int, default=None)
    mem.add_argument("--out", default=None, help="write here instead of bench/results")
    mini = sub.add_parser("minatar")
    mini.add_argument("run_dirs", nargs="+")
    sub.add_parser("table")
    args = parser.parse_args(argv)
    global RESULTS
    if getattr(args, "out", None):
        RESULTS = pathlib.Path(args.out)
    results = _load()
    if args.command == "memory":
        results["memory"] = memory(args.seeds, args.timesteps)
    elif args.command == "minatar":
        results.setdefault("minatar", {}).update(minatar(args.run_dirs))
    _save(results)
    figure(results)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
