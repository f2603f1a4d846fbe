"""Navix's DoorKey-8x8 with rejax's PPO as navix's own baseline ran it, on the packaged versions.

navix publishes rejax's PPO reaching 0.96 on Navix-DoorKey-8x8-v0 at 1M steps
(baselines/rejax/baselines.md), from git commits of rejax and navix pinned in its baseline's
pyproject. jaxppo scores 0.0 there (`jaxppo.presets.KNOWN_FAILURES`). This script runs the
same baseline config (baselines/rejax/configs/navix_doorkey_8x8_1m.yaml) with the packaged
rejax and navix, and measures how often uniformly random actions reach the goal, so that the
failure can be read against both. It runs in the rejax environment of `peers.py`, with navix
added:

    bench/.venvs/rejax/bin/pip install navix==0.7.4
    bench/.venvs/rejax/bin/python bench/navix_doorkey.py   # ~1 min on 2 cores

Writes results/navix_doorkey.{json,md}.
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import navix
import numpy as np
from rejax import PPO

ENV = "Navix-DoorKey-8x8-v0"
# navix's baselines/rejax/configs/navix_doorkey_8x8_1m.yaml, its "ppo" entry.
BASELINE = dict(
    env=f"navix/{ENV}", agent_kwargs={"activation": "tanh"}, num_envs=16, num_steps=128,
    num_epochs=2, num_minibatches=1, learning_rate=3e-4, max_grad_norm=1,
    total_timesteps=1_048_576, gamma=0.95, gae_lambda=0.9, clip_eps=0.2, ent_coef=0.01,
    vf_coef=0.5, normalize_observations=False)
EVAL_EVERY = 65_536
SEEDS = 8
RANDOM_EPISODES = 4_096
OUT = pathlib.Path(__file__).resolve().parent / "results"


def random_success(seed: int) -> float:
    """The fraction of first episodes (navix.make's 100 steps) that uniformly random
    actions end at the goal."""
    env = navix.make(ENV)

    def run(key):
        k0, k1 = jax.random.split(key)
        timestep = jax.vmap(env.reset)(jax.random.split(k0, RANDOM_EPISODES))

        def body(carry, k):
            timestep, done, ret = carry
            action = jax.random.randint(k, (RANDOM_EPISODES,), 0, len(env.action_set))
            timestep = jax.vmap(env.step)(timestep, action)
            ret = ret + jnp.where(done, 0.0, timestep.reward)  # the first episode only
            return (timestep, done | (timestep.step_type > 0), ret), None

        carry = (timestep, jnp.zeros(RANDOM_EPISODES, bool), jnp.zeros(RANDOM_EPISODES))
        (_, _, ret), _ = jax.lax.scan(body, carry, jax.random.split(k1, env.max_steps))
        return (ret > 0).mean()

    return float(jax.jit(run)(jax.random.PRNGKey(seed)))


def main() -> None:
    rates = [random_success(seed) for seed in range(4)]
    algo = PPO.create(**BASELINE, eval_freq=EVAL_EVERY)
    keys = jax.random.split(jax.random.PRNGKey(0), SEEDS)
    start = time.perf_counter()
    _, (_, returns) = jax.block_until_ready(
        jax.jit(jax.vmap(PPO.train, in_axes=(None, 0)))(algo, keys))
    seconds = time.perf_counter() - start
    # rejax's evaluation: 128 episodes of the stochastic policy at each evaluation step.
    curve = np.asarray(returns).mean(-1)  # [seed, evaluation]
    steps = [i * EVAL_EVERY for i in range(curve.shape[1])]
    versions = {name: importlib.metadata.version(name) for name in ("rejax", "navix", "jax")}
    result = {"env": ENV, "config": BASELINE, "seeds": SEEDS, "versions": versions,
              "machine": platform.processor() or platform.machine(), "seconds": round(seconds, 1),
              "random_success": {"episodes_per_seed": RANDOM_EPISODES, "per_seed": rates},
              "eval_steps": steps, "eval_return": np.round(curve, 4).tolist()}
    OUT.mkdir(exist_ok=True)
    (OUT / "navix_doorkey.json").write_text(json.dumps(result, indent=2) + "\n")
    finals = curve[:, -1]
    lines = [
        f"# {ENV}: rejax's PPO with navix's baseline config, packaged versions", "",
        "Command: `bench/.venvs/rejax/bin/python bench/navix_doorkey.py`. Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + f". {seconds:.0f} s for "
        f"{SEEDS} seeds in one call, compilation included.", "",
        f"Uniformly random actions reach the goal in {np.mean(rates):.2%} of first episodes "
        f"({', '.join(f'{r:.4f}' for r in rates)} over 4 x {RANDOM_EPISODES:,}).", "",
        "rejax's evaluation: the mean return of 128 episodes of the sampling policy.", "",
        "| env steps | mean return over seeds | best seed |", "|---:|---:|---:|",
        *(f"| {s:,} | {curve[:, i].mean():.3f} | {curve[:, i].max():.3f} |"
          for i, s in enumerate(steps) if i % 4 == 0 or i == len(steps) - 1),
        "", f"Final return per seed: {', '.join(f'{f:.3f}' for f in finals)}; the highest "
        f"of any seed at any of the {len(steps)} evaluations: {curve.max():.3f}. navix's "
        "published table (baselines/rejax/baselines.md, pinned git commits of rejax and "
        "navix): 0.770 at 131,080 steps and 0.960 +- 0.037 at 1,048,640.", ""]
    (OUT / "navix_doorkey.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
