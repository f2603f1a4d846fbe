"""Stable-Baselines3 PPO (PyTorch, CPU) on gymnasium's CartPole-v1; prints one JSON line.

    bench/.venvs/sb3/bin/python bench/peer_sb3.py '{"case": ..., "seeds": 3, "hparams": {...}}'

One process trains ``seeds`` runs one after another (SB3 has no batched seeds); each run is
timed whole (model construction excluded, nothing to compile), and the median is reported.
The jaxppo Config fields of ``hparams`` map onto SB3's PPO arguments (`sb3_options`).
Learning: the mean return of each run's last 10 finished training episodes.
"""

from __future__ import annotations

import importlib.metadata
import statistics
import time

import numpy as np
import peer_common
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

_ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


def sb3_options(h: dict) -> dict:
    """SB3 PPO keyword arguments for the jaxppo hyperparameters ``h``."""
    lr = h["learning_rate"]
    return {
        "n_steps": h["num_steps"],
        "batch_size": h["num_envs"] * h["num_steps"] // h["num_minibatches"],
        "n_epochs": h["update_epochs"],
        # SB3 calls a schedule with the fraction of training left (1 -> 0), once per rollout.
        "learning_rate": (lambda left: lr * left) if h["anneal_lr"] else lr,
        "gamma": h["gamma"],
        "gae_lambda": h["gae_lambda"],
        "clip_range": h["clip_eps"],
        "clip_range_vf": h["vf_clip"] if h["clip_value_loss"] else None,
        "normalize_advantage": h["normalize_advantages"],
        "ent_coef": h["ent_coef"],
        "vf_coef": h["vf_coef"],
        "max_grad_norm": h["max_grad_norm"],
        "stats_window_size": 10,
        "policy_kwargs": {
            "net_arch": {"pi": list(h["hidden_sizes"]), "vf": list(h["hidden_sizes"])},
            "activation_fn": _ACTIVATIONS[h["activation"]],
            "ortho_init": True,
            "optimizer_kwargs": {"eps": h["adam_eps"]},
        },
        "device": "cpu",
    }


def unmatched(h: dict) -> list[str]:
    out = ["learning-rate annealing: SB3 updates the rate once per rollout, jaxppo per "
           "gradient step"]
    if h["env_id"] != "CartPole-v1":
        out.append(f"env: only gymnasium CartPole-v1 is run, not {h['env_id']}")
    return out


def train_once(h: dict, timesteps: int, seed: int) -> tuple[float, float]:
    """One SB3 run: (seconds, mean return of the last 10 finished episodes)."""
    env = make_vec_env(h["env_id"], n_envs=h["num_envs"], seed=seed)
    model = PPO("MlpPolicy", env, seed=seed, verbose=0, **sb3_options(h))
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    seconds = time.perf_counter() - start
    returns = [info["r"] for info in model.ep_info_buffer]
    return seconds, float(np.mean(returns)) if returns else float("nan")


def main() -> None:
    spec = peer_common.read_spec()
    h = spec["hparams"]
    batch = h["num_envs"] * h["num_steps"]
    timesteps = max(batch, spec["timesteps"] // batch * batch)
    runs = [train_once(h, timesteps, seed) for seed in range(spec["seeds"])]
    seconds = [round(s, 3) for s, _ in runs]
    median = statistics.median(seconds)
    names = ("stable_baselines3", "torch", "gymnasium", "numpy")
    peer_common.emit({
        "peer": "sb3", "case": spec["case"], "seeds": spec["seeds"], "env_steps": timesteps,
        "compile_s": 0.0, "run_s_all": seconds, "run_s_median": median,
        "env_steps_per_s": round(timesteps / median),
        "final_returns": [r for _, r in runs],
        "learning_measure": "mean return of the last 10 finished training episodes",
        "timesteps_per_seed": timesteps, "torch_threads": torch.get_num_threads(),
        "unmatched": unmatched(h),
        "versions": {n: importlib.metadata.version(n) for n in names},
    })


if __name__ == "__main__":
    main()
