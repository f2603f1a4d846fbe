"""Two normalization decisions, measured: what the first update normalizes with, and whether
scaled rewards should be clipped to +-10 as SB3's VecNormalize and CleanRL do.

    python bench/normalization.py            # every env below, 8 seeds each
    python bench/normalization.py --envs Pendulum-v1 --seeds 4 --timesteps 200000

jaxppo's statistics are frozen within an update and merged after it, so the first update
sees identity statistics: raw rewards and raw (clipped) observations. SB3 and CleanRL update
their statistics before normalizing. Variants, each on the same seeds:

- ``frozen``: jaxppo as it is.
- ``warmed``: the statistics of one rollout of the initial policy (observations and
  discounted returns) merged into the normalizers before the first update, through the public
  API (`jaxppo.init`, `jaxppo.rollout`, `jaxppo.normalize`); that rollout's T x N steps are
  not counted.
- ``clip10``: scaled rewards clipped to [-10, 10] (`normalize.scale_rewards` wrapped for the
  run).

Per env and variant: the final training return of each seed (mean of its last 10 updates),
its IQM [95% CI], and the value loss of updates 0 and 1 (median over seeds), where the first
update's raw targets show. Results: bench/results/normalization.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import pathlib
import platform
import sys
import time

import numpy as np

RESULTS = pathlib.Path(__file__).parent / "results"
NAME = "normalization"
VARIANTS = ("frozen", "warmed", "clip10")
SWITCHES = dict(normalize_obs=True, scale_rewards=True)


def configs() -> dict:
    """The envs where the first update's statistics matter: rewards far from unit scale."""
    import jaxppo

    return {
        # Rewards -16..0 per step: returns of -1000 at first.
        "Pendulum-v1": jaxppo.preset("Pendulum-v1").replace(**SWITCHES),
        # -1 per step until the goal: returns of -500 at first.
        "Acrobot-v1": jaxppo.Config(env_id="Acrobot-v1", total_timesteps=500_000, **SWITCHES),
        # +1 per step: returns of 20..500.
        "CartPole-v1": jaxppo.Config(env_id="CartPole-v1", total_timesteps=500_000,
                                     **SWITCHES),
    }


def warmed_state(config, key):
    """`jaxppo.init`'s state with one rollout's observations and returns merged in."""
    import jax

    import jaxppo
    from jaxppo import backend, envs, networks, normalize, policy, rollout

    state = jaxppo.init(config, key)
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    _, tr = rollout.rollout(config, env, network, policy.Policy(state.params, state.normalizers),
                            rollout.EnvCarry(state.obs, state.env_state),
                            backend.rollout_key(jax.random.fold_in(key, 7)))
    stats = state.normalizers
    _, returns = normalize.discounted_returns(stats.discounted_return, tr.reward, tr.done,
                                              config.gamma)
    stats = stats.replace(obs=normalize.merge(stats.obs, tr.raw_obs),
                          reward=normalize.merge(stats.reward, returns))
    return state.replace(normalizers=stats)


@contextlib.contextmanager
def clipped_rewards(limit: float):
    """`normalize.scale_rewards` clipped to [-limit, limit] while inside."""
    import jax.numpy as jnp

    from jaxppo import normalize

    original = normalize.scale_rewards
    normalize.scale_rewards = lambda stats, r: jnp.clip(original(stats, r), -limit, limit)
    try:
        yield
    finally:
        normalize.scale_rewards = original


def run(config, variant: str, seeds: int) -> dict:
    import jax

    import jaxppo
    from jaxppo import stats

    train_lib = importlib.import_module("jaxppo.train")
    keys = jax.random.split(jax.random.key(0), seeds)
    init = warmed_state if variant == "warmed" else jaxppo.init
    states = jax.jit(jax.vmap(init, in_axes=(None, 0)), static_argnums=0)(config, keys)
    loop = jax.jit(jax.vmap(train_lib.run_updates, in_axes=(None, 0, None)),
                   static_argnums=(0, 2))
    start = time.perf_counter()
    with clipped_rewards(10.0) if variant == "clip10" else contextlib.nullcontext():
        _, metrics = jax.block_until_ready(loop(config, states, config.num_updates))
    seconds = time.perf_counter() - start
    final = stats.final_returns(np.asarray(metrics.episode_return), 10)
    value_loss = np.median(np.asarray(metrics.value_loss)[:, :2], axis=0)
    return {"final_returns": [float(x) for x in final], "aggregate": stats.aggregate(final),
            "value_loss_update_0": float(value_loss[0]),
            "value_loss_update_1": float(value_loss[1]), "seconds": round(seconds, 1)}


def table(results: dict) -> str:
    from jaxppo import stats

    lines = ["# Normalization decisions: the first update's statistics, reward clipping", "",
             f"{results['machine']}; `{results['command']}`.", "",
             "Final training return (mean of each seed's last 10 updates): IQM [95% "
             "stratified-bootstrap CI] over seeds; value loss of updates 0 and 1: median over "
             "seeds. normalize_obs and scale_rewards on in every run.", "",
             "| env | env steps | seeds | variant | IQM [95% CI] | value loss, update 0 | "
             "update 1 |", "|---|---:|---:|---|---|---:|---:|"]
    for env_id, entry in results["envs"].items():
        for variant, r in entry["variants"].items():
            lines.append(f"| {env_id} | {entry['env_steps']:,} | {entry['seeds']} | {variant} "
                         f"| {stats.format_ci(r['aggregate']['iqm'])} | "
                         f"{r['value_loss_update_0']:.4g} | {r['value_loss_update_1']:.4g} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="*", default=None)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=None)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    import jax

    chosen = configs()
    results = {"machine": f"{platform.processor() or platform.machine()}, jax {jax.__version__}",
               "command": "python bench/normalization.py " + " ".join(sys.argv[1:]),
               "envs": {}}
    path = RESULTS / f"{NAME}.json"
    for env_id in args.envs or list(chosen):
        config = chosen[env_id]
        if args.timesteps:
            config = config.replace(total_timesteps=args.timesteps)
        entry = {"env_steps": config.num_updates * config.batch_size, "seeds": args.seeds,
                 "variants": {}}
        results["envs"][env_id] = entry
        for variant in args.variants:
            entry["variants"][variant] = run(config, variant, args.seeds)
            print(env_id, variant, entry["variants"][variant]["aggregate"], flush=True)
            # Written after every variant, so a stopped run keeps what it measured.
            RESULTS.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
            (RESULTS / f"{NAME}.md").write_text(table(results))


if __name__ == "__main__":
    main()
