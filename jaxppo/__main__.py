"""`python -m jaxppo`: train over several seeds in one compiled call, print a table, plot.

    python -m jaxppo                      # CartPole-v1, 8 seeds, 500k env steps each
    python -m jaxppo --env Acrobot-v1 --seeds 4 --total-timesteps 200000 --out results/
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np

import jaxppo
from jaxppo import stats


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jaxppo",
        description="Train PPO over several seeds in one jitted, vmapped call.",
    )
    parser.add_argument("--env", default="CartPole-v1",
                        help="environment id (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds trained at once (default: 8)")
    parser.add_argument("--total-timesteps", type=int, default=None,
                        help="env steps per seed (default: Config's, 500000)")
    parser.add_argument("--seed", type=int, default=0, help="base PRNG seed (default: 0)")
    parser.add_argument("--out", default="jaxppo_results",
                        help="folder for the learning-curve plot (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.env not in jaxppo.envs.registered():
        parser.error(f"unknown --env {args.env!r}; known: {', '.join(jaxppo.envs.registered())}")
    return args


def _smoothed(returns: np.ndarray, window: int = 10) -> np.ndarray:
    """Trailing nan-mean over ``window`` updates per run, [S, U] -> [S, U]."""
    out = np.full(returns.shape, np.nan)
    for u in range(returns.shape[1]):
        chunk = returns[:, max(0, u - window + 1) : u + 1]
        seen = ~np.isnan(chunk)
        out[:, u] = np.where(seen.any(axis=1), np.nansum(chunk, axis=1) / np.maximum(
            seen.sum(axis=1), 1), np.nan)
    return out


def plot_learning_curves(env_steps: np.ndarray, returns: np.ndarray, title: str,
                         path: pathlib.Path) -> pathlib.Path:
    """Write a PNG: per-seed smoothed training return (thin) and their IQM (thick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    smooth = _smoothed(returns)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for run in smooth:
        ax.plot(env_steps, run, color="tab:blue", alpha=0.25, linewidth=0.8)
    center = [stats.iqm(col[~np.isnan(col)]) if (~np.isnan(col)).any() else np.nan
              for col in smooth.T]
    ax.plot(env_steps, center, color="tab:blue", linewidth=2.0,
            label=f"IQM over {returns.shape[0]} seeds")
    ax.set_xlabel("environment steps per seed")
    ax.set_ylabel("training episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    config = jaxppo.preset(args.env)
    if args.total_timesteps is not None:
        config = config.replace(total_timesteps=args.total_timesteps)
    try:
        jaxppo.validate(config)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    train_seeds = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))
    print(f"Training PPO on {args.env}: {args.seeds} seeds x {config.num_updates} updates x "
          f"{config.batch_size} env steps, in one compiled call ({jax.default_backend()})")
    start = time.perf_counter()
    compiled = train_seeds.lower(config, keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(config, keys))
    run_s = time.perf_counter() - start

    returns = np.asarray(metrics.episode_return)
    final = stats.final_returns(returns)
    steps = config.num_updates * config.batch_size
    print(f"\n{'seed':>4}  {'final return':>12}  {'episodes':>8}")
    for seed, (value, count) in enumerate(zip(final, np.asarray(metrics.episode_count).sum(1),
                                              strict=True)):
        print(f"{seed:>4}  {value:>12.1f}  {count:>8d}")
    finite = final[~np.isnan(final)]
    summary = stats.iqm(finite) if finite.size else float("nan")
    print(f"\nIQM final return over {args.seeds} seeds: {summary:.1f} "
          f"(mean {np.nanmean(final):.1f}, min {np.nanmin(final):.1f}, max {np.nanmax(final):.1f})")
    print("final return = mean training-episode return over the last 10 updates")
    print(f"compile {compile_s:.1f} s, run {run_s:.1f} s, "
          f"{args.seeds * steps / run_s:,.0f} env steps/s over all seeds")
    path = pathlib.Path(args.out) / f"{args.env}_learning_curve.png"
    plot_learning_curves(np.asarray(metrics.env_steps[0]), returns,
                         f"PPO on {args.env}", path)
    print(f"learning curve: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
