"""Ablation of jaxppo's implementation details: each switch flipped against a baseline.

    python bench/ablation.py                   # all three envs, at the budgets below
    python bench/ablation.py --envs CartPole-v1 --timesteps-scale 0.2   # a quick look

For every environment, the baseline is `jaxppo.preset(env)` at the budget below, and every
setting flips one switch of it. Each setting trains S seeds in one vmapped call. The score of
a run is its final training return (mean over the last 10 updates); a setting's score is the
IQM over seeds with a 95% percentile-bootstrap interval (resampling seeds, 2,000 draws).
Writes results/ablation.json, results/ablation.md and results/ablation.png.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time
import warnings

import jax
import machine as machine_info  # bench/machine.py
import numpy as np

import jaxppo
from jaxppo import stats

BUDGETS = {"CartPole-v1": 200_000, "Acrobot-v1": 200_000, "Pendulum-v1": 250_000}

# name -> Config fields flipped against the baseline; (env kinds it applies to).
SWITCHES: dict[str, tuple[dict, tuple[str, ...]]] = {
    "baseline": ({}, ("discrete", "continuous")),
    "normalize_obs": ({"normalize_obs": True}, ("discrete", "continuous")),
    "scale_rewards": ({"scale_rewards": True}, ("discrete", "continuous")),
    "normalize_values": ({"normalize_values": True}, ("discrete", "continuous")),
    "recompute_advantages": ({"recompute_advantages": True}, ("discrete", "continuous")),
    "shuffle=trajectories": ({"shuffle": "trajectories"}, ("discrete", "continuous")),
    "ent_schedule=linear": ({"ent_schedule": "linear", "ent_coef_end": 0.0}, ("discrete",)),
    "kl_early_stop(0.02)": ({"kl_early_stop": True, "target_kl": 0.02},
                            ("discrete", "continuous")),
    "grad_norm_type=max": ({"grad_norm_type": "max"}, ("discrete", "continuous")),
    "fourier_features=32": ({"fourier_features": 32}, ("discrete", "continuous")),
    "value clipping flipped": (None, ("discrete", "continuous")),  # see _settings
    "dual_clip(c=3)": ({"dual_clip": True, "dual_clip_c": 3.0}, ("discrete", "continuous")),
    "no advantage normalization": ({"normalize_advantages": False},
                                   ("discrete", "continuous")),
    "no lr annealing": ({"anneal_lr": False}, ("discrete", "continuous")),
    "temperature=0.5": ({"temperature": 0.5}, ("discrete",)),
    "squash_mean": ({"squash_mean": True}, ("continuous",)),
    "gsde (every 4 steps)": ({"gsde": True, "gsde_sample_freq": 4}, ("continuous",)),
}


def _settings(env_id: str, timesteps_scale: float) -> dict[str, jaxppo.Config]:
    base = jaxppo.preset(env_id)
    budget = int(BUDGETS.get(env_id, base.total_timesteps) * timesteps_scale)
    base = base.replace(total_timesteps=max(budget, base.batch_size))
    kind = "discrete" if jaxppo.envs.make(env_id).action_space.discrete else "continuous"
    out = {}
    for name, (fields, kinds) in SWITCHES.items():
        if kind not in kinds:
            continue
        fields = {"clip_value_loss": None} if fields is None else fields
        if fields.get("shuffle") == "trajectories" and base.num_envs % base.num_minibatches:
            # Whole-trajectory minibatches need num_minibatches to divide num_envs.
            fields = {**fields, "num_minibatches": math.gcd(base.num_envs, base.num_minibatches)}
            name = f"{name} (M={fields['num_minibatches']})"
        if fields.get("clip_value_loss", False) is None:  # flip whatever the preset does
            fields = {"clip_value_loss": not base.clip_value_loss}
            name = "value clipping on" if fields["clip_value_loss"] else "value clipping off"
        out[name] = base.replace(**fields)
    return out


def bootstrap_iqm(scores: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    samples = rng.choice(scores, size=(draws, scores.size), replace=True)
    iqms = [stats.iqm(s) for s in samples]
    return float(np.percentile(iqms, 2.5)), float(np.percentile(iqms, 97.5))


def run_setting(config: jaxppo.Config, seeds: int) -> dict:
    keys = jax.random.split(jax.random.key(0), seeds)
    fn = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))
    start = time.perf_counter()
    _, metrics = jax.block_until_ready(fn(config, keys))
    seconds = time.perf_counter() - start
    returns = np.asarray(metrics.episode_return)
    final = stats.final_returns(returns)
    finite = final[~np.isnan(final)]
    low, high = bootstrap_iqm(finite) if finite.size else (float("nan"),) * 2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # updates where no seed ended one
        curve = np.nanmean(returns, axis=0)
    return {
        "iqm": stats.iqm(finite) if finite.size else float("nan"),
        "ci95": [low, high],
        "final_per_seed": [float(x) for x in final],
        "seconds_with_compile": round(seconds, 1),
        "env_steps": np.asarray(metrics.env_steps[0]).tolist(),
        "mean_curve": [None if np.isnan(x) else float(x) for x in curve],
    }


def _plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs_ = list(results)
    fig, axes = plt.subplots(1, len(envs_), figsize=(5.5 * len(envs_), 6), dpi=110)
    axes = np.atleast_1d(axes)
    for ax, env_id in zip(axes, envs_, strict=True):
        rows = results[env_id]
        names = list(rows)
        iqms = np.array([rows[n]["iqm"] for n in names])
        lows = np.array([rows[n]["ci95"][0] for n in names])
        highs = np.array([rows[n]["ci95"][1] for n in names])
        y = np.arange(len(names))
        ax.errorbar(iqms, y, xerr=[iqms - lows, highs - iqms], fmt="o", color="tab:blue",
                    ecolor="black", capsize=3)
        ax.axvline(rows["baseline"]["iqm"], color="tab:gray", linestyle="--", linewidth=1)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(env_id)
        ax.set_xlabel("final training return, IQM over seeds (95% CI)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _table(results: dict, budgets: dict, seeds: int) -> str:
    lines = []
    for env_id, rows in results.items():
        lines += [f"## {env_id} ({budgets[env_id]:,} env steps per seed, {seeds} seeds)", "",
                  "| setting | IQM final return | 95% CI | vs baseline |", "|---|---:|---:|---:|"]
        base = rows["baseline"]["iqm"]
        for name, row in rows.items():
            lo, hi = row["ci95"]
            delta = "" if name == "baseline" else f"{row['iqm'] - base:+.1f}"
            lines.append(f"| {name} | {row['iqm']:.1f} | [{lo:.1f}, {hi:.1f}] | {delta} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--timesteps-scale", type=float, default=1.0)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args()
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, budgets = {}, {}
    start = time.perf_counter()
    for env_id in args.envs:
        settings = _settings(env_id, args.timesteps_scale)
        budgets[env_id] = next(iter(settings.values())).num_updates * next(
            iter(settings.values())).batch_size
        results[env_id] = {}
        for name, config in settings.items():
            row = run_setting(config, args.seeds)
            results[env_id][name] = row
            print(f"{env_id:12s} {name:28s} IQM {row['iqm']:9.1f}  CI [{row['ci95'][0]:.1f}, "
                  f"{row['ci95'][1]:.1f}]  {row['seconds_with_compile']:.0f} s", flush=True)
    total = time.perf_counter() - start
    machine = machine_info.describe()
    payload = {"seeds": args.seeds, "budgets": budgets, "total_seconds": round(total),
               "machine": machine, "results": results}
    (out / "ablation.json").write_text(json.dumps(payload, indent=1) + "\n")
    header = (f"# Ablation: one switch flipped at a time\n\nMachine: {machine['cpu']}, "
              f"{machine['cores']} cores, "
              f"{machine['device']}, jax {machine['jax']}; total {total / 60:.1f} min.\n"
              "Command: `python bench/ablation.py`\n\n")
    (out / "ablation.md").write_text(header + _table(results, budgets, args.seeds))
    _plot(results, out / "ablation.png")
    print(f"total {total / 60:.1f} min; wrote {out / 'ablation.md'}")


if __name__ == "__main__":
    main()
