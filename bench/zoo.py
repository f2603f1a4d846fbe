"""Re-measure the presets: every env's IQM over seeds, training and evaluation, with curves.

    python bench/zoo.py                                  # every env of ENVS, full budgets
    python bench/zoo.py --envs Acrobot-v1 Catch-bsuite   # a subset
    python bench/zoo.py --budget 0.1 --seeds 4 --out /tmp/zoo   # a quick look
    python bench/zoo.py --render                         # the table again, from zoo.json
    python bench/zoo.py --envs craftax/Craftax-Classic-Symbolic-v1 --runs runs/zoo  # a long row

For each env, `jaxppo.preset(env)` (Config's defaults where the env has no preset of its own)
trains --seeds seeds in one `jaxppo.sweep` call over one CPU device per core
(`jaxppo.use_cpu_cores`, as the command line does). Two scores per seed: the final training
return (`stats.final_returns`: the mean training-episode return over the last 10 updates, or
over the updates one episode at the env's time limit spans where a seed ended none in those,
`score_window`) and
the deterministic evaluation return (`jaxppo.evaluate`, --episodes fresh episodes per seed, the
policy's mode); each is aggregated as the IQM with its 95% stratified-bootstrap interval
(`stats.aggregate`). Results go to OUT/zoo.{json,md} and a grid of learning curves (the IQM over
seeds every few updates, with the interquartile band) to OUT/zoo.png. Each env is written as it
finishes, so a stopped run keeps what it measured; with --runs, each env trains as a
checkpointed run (`jaxppo.experiment.run`, a checkpoint per chunk) in RUNS/<env>, and the same
command continues a row that was stopped.

``PUBLISHED`` holds, per env, the best published PPO result found at the same budget, with its
source and protocol; an env without one says so in the table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import machine  # bench/machine.py
import numpy as np

import jaxppo
from jaxppo import experiment, rundir, stats

RESULTS = machine.ROOT / "bench" / "results" / "zoo"

# The envs measured by default: those with a preset, then envs the defaults are known to
# learn (tests/test_learning.py).
ENVS = (*jaxppo.PRESETS, "Catch-bsuite")

# env id -> {"value", "env_steps", "source", "protocol"}: the best published PPO result found.
# RL Baselines3 Zoo's table is one agent trained with its tuned settings (hyperparams/ppo.yml),
# scored by its deterministic policy, so it is read beside the evaluation IQM.
_SB3_ZOO = ("RL Baselines3 Zoo, benchmark.md",
            "one agent, deterministic policy, mean over 150k evaluation steps")
PUBLISHED: dict[str, dict] = {
    env_id: {"value": value, "env_steps": steps, "source": _SB3_ZOO[0],
             "protocol": _SB3_ZOO[1] + note}
    for env_id, value, steps, note in (
        ("CartPole-v1", 500.0, 100_000, ""),
        ("Acrobot-v1", -73.5, 1_000_000, ""),
        ("Pendulum-v1", -172.2, 100_000, "; state-dependent exploration (gSDE)"),
        ("MountainCar-v0", -110.4, 1_000_000, ""),
        ("MountainCarContinuous-v0", 88.3, 20_000, "; state-dependent exploration (gSDE)"),
    )
}
# Navix's own baselines (baselines/rejax/baselines.md): rejax's PPO with the settings of
# navix's configs, the mean return at 1,048,640 steps (a success rate: the goal pays 1); the
# table gives mean +- spread and no seed count.
_NAVIX = ("Navix repository, baselines/rejax/baselines.md (PPO)",
          "rejax PPO with navix's settings; mean +- spread over seeds, count not stated")
PUBLISHED.update({
    f"navix/Navix-{name}-v0": {"value": value, "env_steps": 1_048_640, "source": _NAVIX[0],
                               "protocol": f"{_NAVIX[1]}: {value:.3f} +- {spread:.3f}"}
    for name, value, spread in (("Empty-Random-8x8", 1.0, 0.0), ("DoorKey-8x8", 0.96, 0.037))
})
# gymnax's README lists one gymnax-blines PPO checkpoint per MinAtar game (10M steps, a 2 x
# 256 MLP on the flattened grid, gamma 0.999); no PPO figure at 2M steps was found.
PUBLISHED.update({
    f"{game}-MinAtar": {
        "value": value, "env_steps": 10_000_000,
        "source": "gymnax README, gymnax-blines' PPO checkpoint (agents/<env>/ppo.yaml)",
        "protocol": "one checkpoint, return of its evaluation rollouts; seeds not stated"}
    for game, value in (("Asterix", 15.0), ("Breakout", 28.0), ("Freeway", 58.0),
                        ("SpaceInvaders", 131.0))
})
# Craftax-Classic is Crafter rewritten in JAX, with Crafter's rewards (+1 per achievement
# unlocked, +-0.1 per health point); Crafter's scoreboard is at its 1M-step budget.
PUBLISHED["craftax/Craftax-Classic-Symbolic-v1"] = {
    "value": 4.2, "env_steps": 1_000_000,
    "source": "Crafter's scoreboard (danijar/crafter README): PPO, Stable-Baselines3",
    "protocol": ("Crafter itself, 64x64 pixel observations, reward 4.2 +- 1.2 over its "
                 "seeds; the same board lists PPO with a ResNet encoder at 10.3 +- 0.5")}
# No published PPO figure at this budget was found for Playground's CartpoleBalance: its
# reference is Brax's own PPO trainer given the preset's numbers, measured here side by side.
PUBLISHED["playground/CartpoleBalance"] = {
    "value": 994.5, "env_steps": 1_996_800,
    "source": "Brax's PPO trainer (brax.training.agents.ppo), measured here: "
              "bench/results/brax_ppo.md",
    "protocol": ("the preset's numbers, 8 seeds, IQM of the mean return of 8 episodes with "
                 "the policy's mode: 994.5 [688.0, 999.6]; not a published figure")}


# What a row alone does not say.
NOTES: dict[str, str] = {
    "craftax/Craftax-Classic-Symbolic-v1": (
        "Crafter's paper computes its scores from the episodes played within the 1M-step "
        "budget while training, so the training column, 4.6 [4.5, 4.7], is the closer one "
        "to 4.2 +- 1.2 (which was on Crafter's pixels, not Craftax's symbols); acting by the "
        "policy's mode scores 2.6 [2.2, 3.0]. 2,336 s for 8 seeds here, as a checkpointed "
        "run (--runs)"),
    "jumanji/Snake-v1": (
        "no published PPO result on Jumanji's Snake was found; Jumanji's own baseline is A2C, "
        "published as curves. Uniformly random valid actions score 6.22 +- 0.11 (256 first "
        "episodes), random actions without the mask 0.12 +- 0.02. jaxppo's search at 500k "
        "steps, 8 seeds (search/jumanji_Snake-v1_*.md): without the mask 0.2 [0.1, 0.2]; with "
        "it 6.2 [6.1, 6.4], no better than random valid actions; normalized observations (the "
        "step count reaches 4,000) 7.6 [7.2, 8.0]; 8 epochs 12.3 [11.8, 12.9]: the preset, "
        "which reaches 19.1 at 2M"),
    "MountainCarContinuous-v0": (
        "every action costs reward and the flag pays 100. Without gSDE, Config's defaults "
        "stood still (-2.0 [-2.1, -2.0] at 500k steps); the preset's settings with gSDE off "
        "stand still in every seed at its initial log std, -3.29, and with -1 or 0 end "
        "between -99.9 and 82.2, IQM -98.0 and -4.2 (search/MountainCarContinuous-v0_no_gsde"
        ".md). With gSDE, RL Baselines3 Zoo's settings reach the flag in some seeds and not "
        "in others: acting by the mode, 3 of these 8 seeds score 90 to 98, the others -99 to "
        "-3; two other sets of 8 seeds had 3 and 7 above 85. RL Zoo's 88.3 is one agent. A "
        "larger initial log std (search/MountainCarContinuous-v0*.md) made the training "
        "return steadier (-1: every seed 68 to 86) but not the mode's: 2 and 4 of 8 seeds "
        "above 80 on two sets. Two and a half times the steps (search/MountainCarContinuous-"
        "v0_50k.md) left the seeds as split, -99.7 to 93.6, so the preset keeps RL Zoo's 20k"),
    "Pong-misc": (
        "every step the ball stays in play pays 1, up to gymnax's 1,000-step limit; uniformly "
        "random actions score 91.7 +- 3.1 (256 first episodes). With the defaults, acting by "
        "the mode returns every ball for the whole episode in every seed (1,000); 8 seeds x "
        "500k steps took 439 s, at about 9k env steps/s"),
    "Seaquest-MinAtar": (
        "the MinAtar CNN preset at its 2M steps, 2,532 s for 8 seeds here; gymnax lists no PPO "
        "checkpoint for Seaquest, and no PPO figure was found. The first updates score 0.1 to "
        "0.3; at 500k steps the preset stood at 1.2 [1.1, 1.3], and its curve is nearly flat "
        "over the last 200k steps (4.4 to 4.5). Breakout's and Asterix's entropy bonus, 0.1, "
        "did worse as a whole zoo row at 2M (search/Seaquest-MinAtar_entropy_row.json, 2,458 "
        "s): training 3.0 [2.8, 3.2], evaluation 4.5 [4.0, 5.2], so the preset keeps 0.01"),
    "Asterix-MinAtar, Breakout-MinAtar, Freeway-MinAtar, SpaceInvaders-MinAtar": (
        "the MinAtar CNN preset at its 2M steps (Freeway's and SpaceInvaders' at 4M, "
        "Breakout's at 6M), 20 to 38 minutes per game for 8 seeds here at 2M (most rows shared "
        "the 2 cores with another run). The published figures are gymnax-blines' checkpoints "
        "at 10M steps, 1.7 to 5 times these budgets, and no PPO figure at 2M, 4M or 6M was "
        "found. "
        "Asterix's curve still rises at 2M"),
    "Freeway-MinAtar": (
        "at 2M steps, the preset's budget before, the curve still rose (52.2 at 1.6M, 54.6 at "
        "2M) and the row stood at 54.6 [53.1, 56.4] in training and 55.1 [52.3, 57.0] acting "
        "by the mode, 2.9 short of gymnax-blines' 58 at 10M; the preset now trains 4M steps "
        "(4,751 s for 8 seeds, most of it sharing the 2 cores with other runs). Its 2,500-step "
        "episodes span 20 updates, which the training score averages over"),
    "Asterix-MinAtar": (
        "with the other games' entropy bonus (0.01): training 6.8 [5.4, 10.0], seeds 3.8 to "
        "14.2, evaluation 10.5 [6.3, 20.0]. jaxppo's search at 2M with Breakout's 0.1 "
        "(search/Asterix-MinAtar_entropy.md, 1,300 s): 8.7 [8.0, 10.3], seeds 7.8 to 10.7, "
        "the preset's now; acting by the mode it scores 32.8, twice gymnax-blines' 15 at 10M"),
    "SpaceInvaders-MinAtar": (
        "Breakout's and Asterix's entropy bonus, 0.1, cut the training IQM at 2M from 64.7 to "
        "37.7 [36.1, 40.3] (search/SpaceInvaders-MinAtar_entropy.md), so the preset keeps "
        "0.01. Its curve still rose at 2M, where the row stood at 64.7 [57.4, 74.7] in "
        "training and 101.2 [64.2, 145.2] acting by the mode; the preset now trains 4M steps "
        "(3,128 s for 8 seeds, alone on the machine)"),
    "Breakout-MinAtar": (
        "with the other games' entropy bonus (0.01) the policy settled on a few bricks by "
        "500k steps and stayed at 6.6 [6.4, 8.0] to 2M (0.26 nats of entropy left). jaxppo's "
        "searches, 8 seeds each: gamma (0.99, 0.999) x ent_coef (0.01, 0.03) at 1M ranged "
        "from 6.2 to 6.8 (search/Breakout-MinAtar.md); at 2M, ent_coef 0.03 reached 7.0 "
        "[6.8, 9.0], 0.05 6.9 [6.9, 12.3] and 0.1 19.9 [15.5, 24.4], seeds 11.0 to 30.2 "
        "(search/Breakout-MinAtar_entropy*.md): the preset's 0.1. Its curve still rose at 2M, "
        "where the row stood at 19.9 [15.5, 24.4] in training and 23.3 [17.5, 32.3] acting by "
        "the mode, and at 4M (2,625 s, alone on the machine), where it still rose (23.0 at "
        "3.3M, 25.2 at 3.9M), at 25.0 [20.6, 28.4] and 27.3 [21.7, 31.0], 0.7 below "
        "gymnax-blines' 28 at 10M. The preset now trains 6M steps (4,004 s for 8 seeds, "
        "sharing the 2 cores with lighter runs for a few minutes); its seeds evaluate "
        "from 17.9 to 70.1"),
    "xminigrid/MiniGrid-DoorKey-5x5": (
        "the goal pays 1 - 0.9 t / 250 after t steps (pick up the key, open the door, reach "
        "the goal), so the best return is about 0.96: 7 seeds end at 0.96, one at 0.46. "
        "Uniformly random actions score 0.054 +- 0.010 (256 first episodes, 12.9% reach the "
        "goal). No published PPO figure for XLand-MiniGrid's MiniGrid envs was found"),
    "FrozenLake-misc": (
        "gymnax's 4x4 slippery lake: the return is the share of episodes that reach the goal "
        "within 100 steps, at best 0.744 and at random 0.014 (dynamic programming over the "
        "map); the defaults reach 0.73 [0.71, 0.76] in training and 0.77 [0.72, 0.81] acting "
        "by the mode. Its observation is a Discrete(16) index, which reaches the network "
        "one-hot; as one number, the defaults scored 0.1 and a search of gamma (0.99, 0.999) "
        "x lr (3e-4, 1e-3, 3e-3) reached no better than 0.1 [0.1, 0.2] "
        "(search/FrozenLake-misc.md)"),
    "DeepSea-bsuite": (
        "gymnax's default size is 8, where the defaults find the treasure in most seeds; the "
        "deep-exploration failure bsuite documents grows with the size, a constructor "
        "argument of gymnax's env rather than an env parameter, so it is not measured here"),
    "MetaMaze-misc": (
        "a meta-learning maze (the goal is drawn per episode and the agent sees the 3 x 3 "
        "cells around it), measured with the defaults' memoryless MLP. BernoulliBandit-misc's "
        "GRU recipe, which PointRobot-misc's preset took, scored 8.5 [7.8, 9.2] in jaxppo's "
        "search at lr 3e-3 (search/MetaMaze-misc.md) and, as a zoo row, 8.1 [7.2, 8.8] in "
        "training and 2.5 [1.6, 3.8] acting by the mode (265 s), against the MLP's row here: "
        "no better where the policy acts alone, so not a preset"),
    "PointRobot-misc": (
        "a meta-learning task: the goal on a half circle is drawn per episode and paid for "
        "within 0.2 of it, and the robot restarts elsewhere each time it gets there. The "
        "defaults' memoryless MLP reached 2.2 [1.9, 2.6] goals an episode in training and 2.1 "
        "[1.8, 2.4] acting by the mode; BernoulliBandit-misc's GRU recipe, the preset, "
        "reaches three times that (search/PointRobot-misc.md: 6.9 [5.6, 7.8] at lr 3e-3, 5.0 "
        "[4.4, 5.8] at 1e-3)"),
}

# gymnax ids without a row, and why.
NOT_MEASURED: dict[str, str] = {
    "MNISTBandit-bsuite": "downloads MNIST on first use, and this machine has no network",
}


def verdict(row: dict) -> str:
    """The evaluation IQM against the published value (higher is better in every env here):
    "meets" when the interval's upper end reaches it, else how far the IQM falls short; with
    the ratio of the budgets where they differ by more than a quarter."""
    published, aggregate = row["published"], row["eval_aggregate"]
    if not published or not aggregate:
        return ""
    iqm = aggregate["iqm"]
    said = ("meets" if iqm["ci_high"] >= published["value"]
            else f"short by {published['value'] - iqm['value']:.3g}")
    ratio = row["env_steps"] / published["env_steps"]
    if ratio > 1.25:
        said += f", with {ratio:.2g}x the published steps"
    elif ratio < 0.8:
        said += f", with 1/{1 / ratio:.2g} of the published steps"
    return said


def _trained(config: jaxppo.Config, seeds: int, run_dir: pathlib.Path | None):
    """(returns [S, U], state [S, ...], seconds) of ``seeds`` seeds of ``config``: one
    `jaxppo.sweep` call, or, with ``run_dir``, a checkpointed run there (continued where a
    stopped one left off), so that a long row keeps what it trained."""
    start = time.perf_counter()
    if run_dir is None:
        result = jaxppo.sweep(config, seeds=seeds, key=jax.random.key(0))
        returns, state = result.metrics.episode_return[0], jax.tree.map(lambda x: x[0],
                                                                          result.state)
        return np.asarray(returns, np.float64), state, time.perf_counter() - start
    quiet = experiment.Output(plots=False)
    if (run_dir / "config.json").exists():
        held = rundir.read_spec(run_dir)
        if (held.config, held.seeds, held.seed, dict(held.settings)) != (
                config, seeds, 0, {}):
            raise SystemExit(f"zoo: {run_dir} holds another run than {config.env_id}'s preset "
                             f"with {seeds} seeds; delete it or give another --runs")
        result = experiment.resume(run_dir, output=quiet)
    else:
        result = experiment.run(config, seeds, run_dir, seed=0, checkpoint_every=1,
                                output=quiet)
    if not result.finished:
        raise SystemExit(f"zoo: stopped; the same command continues {run_dir}")
    returns = np.asarray(result.metrics["episode_return"][0], np.float64)
    return returns, result.state, time.perf_counter() - start


def score_window(config: jaxppo.Config, returns: np.ndarray) -> int:
    """Updates each seed's training score averages over: the last 10, or, where a seed ended
    no episode in those (``returns`` [S, U] NaN throughout), as many as one episode at the
    env's time limit spans (Playground's 1,000-step episodes in 30-step rollouts: 34)."""
    if not np.isnan(stats.final_returns(returns)).any():
        return 10
    limit = jaxppo.envs.make(config.env_id).max_episode_steps
    return max(10, -(-limit // config.num_steps)) if limit else 10


def measure(env_id: str, budget: float, seeds: int, episodes: int,
            runs: pathlib.Path | None = None) -> dict:
    base = jaxppo.preset(env_id)
    steps = max(base.batch_size, int(base.total_timesteps * budget))
    config = base.replace(total_timesteps=steps)
    run_dir = None if runs is None else runs / env_id.replace("/", "_")
    returns, state, train_s = _trained(config, seeds, run_dir)  # [S, U], [S, ...]
    window = score_window(config, returns)
    final = stats.final_returns(returns, window)
    evaluated = jaxppo.evaluate(config, state, jax.random.key(1), num_episodes=episodes)
    eval_returns = evaluated.returns.mean(axis=-1)
    # Every 1/40 of the run, the IQM of each seed's mean return over the window's updates,
    # from the first point at which every seed has ended an episode.
    every = max(1, config.num_updates // 40)
    curve = []
    for u in range(every - 1, config.num_updates, every):
        point = stats.final_returns(returns[:, :u + 1], window)
        if not np.isnan(point).any():
            low, high = np.percentile(point, [25, 75])
            curve.append([(u + 1) * config.batch_size, stats.iqm(point), low, high])
    return {
        "env_id": env_id, "seeds": seeds, "env_steps": config.num_updates * config.batch_size,
        "preset": env_id in jaxppo.PRESETS, "train_s": round(train_s, 1), "window": window,
        "final": [float(x) for x in final], "eval": [float(x) for x in eval_returns],
        "train_aggregate": stats.aggregate(final) if not np.isnan(final).any() else None,
        "eval_aggregate": stats.aggregate(eval_returns),
        "eval_episodes": episodes, "curve": curve,
        "published": PUBLISHED.get(env_id),
    }


def _cell(aggregate: dict | None) -> str:
    return stats.format_ci(aggregate["iqm"]) if aggregate else "no episode ended"


def _windows(result: dict) -> str:
    wider = [f"{env_id}: {row['window']}" for env_id, row in result["envs"].items()
             if row.get("window", 10) > 10]
    return "; ".join(wider) if wider else "none here"


def _machine(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores, {m['device']}; jax {m['jax']}"


def machines(result: dict) -> str:
    """Where the rows were measured: one machine, or each machine with its rows (a row keeps
    the machine it ran on; rows from before that was recorded have the result's)."""
    rows: dict[str, list[str]] = {}
    for row in result["envs"].values():
        rows.setdefault(_machine(row.get("machine", result["machine"])), []).append(
            row["env_id"])
    if len(rows) == 1:
        return f"Machine: {next(iter(rows))}."
    return "Machines: " + "; ".join(f"{name} ({', '.join(ids)})"
                                    for name, ids in rows.items()) + "."


def markdown(result: dict) -> list[str]:
    lines = [
        "# The zoo: every preset re-measured",
        "",
        f"{machines(result)} Commands:",
        "",
        *sorted({f"- `{row.get('command', result['command'])}`"
                 for row in result["envs"].values()}),
        "",
        "IQM over seeds [95% CI]. Training: each seed's mean training-episode return over its "
        "last 10 updates, or, where a seed ended no episode in those, over as many as one "
        "episode at the env's time limit spans (" + _windows(result) + "). Evaluation: the "
        "mean return of fresh episodes with the policy's mode.",
        "",
        "| env | settings | seeds | env steps | training IQM | evaluation IQM | published PPO "
        "(source, protocol) | verdict | train time (s) |",
        "|---|---|---:|---:|---|---|---|---|---:|",
    ]
    for row in result["envs"].values():
        published = row["published"]
        cited = (f"{published['value']} at {published['env_steps']:,} steps "
                 f"({published['source']}; {published['protocol']})" if published
                 else "none found yet")
        lines.append(
            f"| {row['env_id']} | {'preset' if row['preset'] else 'defaults'} | "
            f"{row['seeds']} | {row['env_steps']:,} | {_cell(row['train_aggregate'])} | "
            f"{_cell(row['eval_aggregate'])} | {cited} | {verdict(row)} | {row['train_s']} |")
    for title, entries in (
            ("**Known failures** (`jaxppo.presets.KNOWN_FAILURES`, shown by `jaxppo envs`):",
             jaxppo.presets.KNOWN_FAILURES),
            ("**Notes**:", NOTES), ("**Not measured**:", NOT_MEASURED)):
        lines += ["", title, "", *(f"- {ids}: {why}." for ids, why in entries.items())]
    return lines + ["", "![learning curves](zoo.png)"]


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["envs"].values() if r["curve"]]
    cols = min(4, max(1, len(rows)))
    lines_ = -(-len(rows) // cols) if rows else 1
    fig, axes = plt.subplots(lines_, cols, figsize=(3.2 * cols, 2.6 * lines_), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, rows, strict=False):
        curve = np.asarray(row["curve"])
        ax.set_visible(True)
        ax.plot(curve[:, 0] / 1e6, curve[:, 1])
        ax.fill_between(curve[:, 0] / 1e6, curve[:, 2], curve[:, 3], alpha=0.3)
        ax.set_title(row["env_id"], fontsize=9)
        ax.set_xlabel("env steps (M)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("IQM over seeds of the training return (band: interquartile range)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--budget", type=float, default=1.0,
                        help="fraction of each preset's total_timesteps (default: 1)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=32,
                        help="evaluation episodes per seed (default: 32)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--runs", default=None,
                        help="train each env as a checkpointed run in RUNS/<env> (continued "
                             "there if stopped), not in one call that keeps nothing until "
                             "it ends")
    parser.add_argument("--render", action="store_true",
                        help="rewrite OUT/zoo.{md,png} from OUT/zoo.json, training nothing")
    args = parser.parse_args()
    jaxppo.use_cpu_cores()  # before any JAX operation, which checking an id can be
    for env_id in args.envs:  # one line for a typo, before anything trains
        if not jaxppo.envs.is_known(env_id):
            raise SystemExit(f"zoo: unknown env id {env_id!r}; `jaxppo envs` lists them")
    if not 0 < args.budget <= 10 or args.seeds < 1 or args.episodes < 1:
        raise SystemExit("zoo: --budget must be in (0, 10], --seeds and --episodes >= 1")
    if args.runs and pathlib.Path(args.runs).exists() and not pathlib.Path(args.runs).is_dir():
        raise SystemExit(f"zoo: --runs {args.runs!r} is a file; it must be a directory (made "
                         "if missing)")
    out = pathlib.Path(args.out)
    path = out / "zoo.json"
    result = json.loads(path.read_text()) if path.exists() else {"envs": {}}
    command = "python bench/zoo.py" + (
        f" --envs {' '.join(args.envs)}" if args.envs != list(ENVS) else "") + (
        f" --budget {args.budget}" if args.budget != 1.0 else "") + (
        f" --seeds {args.seeds}" if args.seeds != 8 else "") + (
        f" --episodes {args.episodes}" if args.episodes != 32 else "") + (
        f" --runs {args.runs}" if args.runs else "")
    for row in result["envs"].values():  # sources found after a row was measured
        row["published"] = PUBLISHED.get(row["env_id"])
    if args.render:
        machine.write(out, "zoo", result, markdown(result))
        plot(result, out / "zoo.png")
        return
    for env_id in args.envs:
        row = measure(env_id, args.budget, args.seeds, args.episodes,
                      None if args.runs is None else pathlib.Path(args.runs))
        print(f"{env_id}: training {_cell(row['train_aggregate'])}, evaluation "
              f"{_cell(row['eval_aggregate'])} at {row['env_steps']:,} steps "
              f"({row['train_s']} s)", flush=True)
        row["command"] = command
        row["machine"] = machine.describe()
        result["envs"][env_id] = row
        result.update(machine=machine.describe(), command=command)
        machine.write(out, "zoo", result, markdown(result))  # each env as it finishes
        plot(result, out / "zoo.png")


if __name__ == "__main__":
    main()
