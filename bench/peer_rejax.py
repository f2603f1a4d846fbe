"""rejax PPO on one benchmark case: S seeds in one vmapped call; prints one JSON line.

Runs in its own environment (rejax unpacks gymnax's old 5-value step, so gymnax < 1.0):

    bench/.venvs/rejax/bin/python bench/peer_rejax.py '{"case": ..., "hparams": {...}}'

The jaxppo Config fields of ``hparams`` are mapped onto rejax's PPO options (`rejax_options`);
what rejax cannot express is listed under "unmatched" in the output (`unmatched`).

rejax's own evaluation callback (128 greedy-free rollouts of the policy every eval_freq steps)
is replaced by a no-op and eval_freq is set to the whole run, so the timed call is training
only, as for jaxppo. Learning: an env wrapper records the return of each env's last finished
training episode; per seed, the mean over the envs.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import peer_common
from flax import struct
from rejax import PPO


class EpisodeState(struct.PyTreeNode):
    """The wrapped env state, the running return, and the return of the last finished episode."""

    env_state: Any
    running_return: jax.Array
    last_return: jax.Array
    finished: jax.Array


class EpisodeReturns:
    """A gymnax (< 1.0) env that also records finished episodes' returns in its state."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):
        # Dunder and self lookups must fail normally (deepcopy probes them before __init__).
        if name.startswith("__") or name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, key, params=None):
        obs, state = self.env.reset(key, params)
        zero = jnp.zeros((), jnp.float32)
        return obs, EpisodeState(state, zero, zero, jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params=None):
        obs, env_state, reward, done, info = self.env.step(key, state.env_state, action, params)
        running = state.running_return + reward
        last = jnp.where(done, running, state.last_return)
        new = EpisodeState(env_state, running * (1.0 - done), last,
                           state.finished + done.astype(jnp.int32))
        return obs, new, reward, done, info


def num_updates(h: dict) -> int:
    return h["total_timesteps"] // (h["num_envs"] * h["num_steps"])


def rejax_options(h: dict) -> dict:
    """rejax PPO.create keyword arguments for the jaxppo hyperparameters ``h``."""
    updates = num_updates(h)
    steps = updates * h["num_envs"] * h["num_steps"]
    gradient_steps = updates * h["update_epochs"] * h["num_minibatches"]
    lr = h["learning_rate"]
    if h["anneal_lr"]:
        # rejax hands learning_rate to optax.adam as is, so a schedule anneals it. Its count
        # is the optimizer's step count; jaxppo's rate is one per update, lr x (1 - k / U),
        # so the schedule holds each rate for the update's epochs x minibatches steps.
        per_update = gradient_steps // updates
        lr = optax.piecewise_constant_schedule(
            h["learning_rate"],
            {k * per_update: (updates - k) / (updates - k + 1) for k in range(1, updates)})
    return {
        "env": h["env_id"],
        "num_envs": h["num_envs"],
        "num_steps": h["num_steps"],
        "num_epochs": h["update_epochs"],
        "num_minibatches": h["num_minibatches"],
        "total_timesteps": steps,
        "eval_freq": steps,
        "skip_initial_evaluation": True,
        "learning_rate": lr,
        "gamma": h["gamma"],
        "gae_lambda": h["gae_lambda"],
        "clip_eps": h["clip_eps"],
        "vf_coef": h["vf_coef"],
        "ent_coef": h["ent_coef"],
        "max_grad_norm": h["max_grad_norm"],
        "normalize_observations": h["normalize_obs"],
        "normalize_rewards": h["scale_rewards"],
        "agent_kwargs": {"activation": h["activation"],
                         "hidden_layer_sizes": tuple(h["hidden_sizes"])},
    }


def unmatched(h: dict) -> list[str]:
    """The jaxppo settings of ``h`` that rejax's PPO does not implement the same way."""
    out = [
        f"max_grad_norm={h['max_grad_norm']}: rejax clips each gradient entry to "
        "+-max_grad_norm (optax.clip); jaxppo clips the global L2 norm",
        f"adam_eps={h['adam_eps']}: rejax uses optax's default 1e-8",
        "initialization: rejax uses flax's default (LeCun normal); jaxppo orthogonal with "
        "gains sqrt(2) / 0.01 / 1",
        "optimizers: rejax steps actor and critic with two Adams (vf_coef scales only the "
        "critic's gradient); jaxppo one Adam over both",
        "truncation: rejax (gymnax < 1.0) sees one done flag and does not bootstrap at "
        "time-limit truncation; jaxppo bootstraps V(final obs)",
    ]
    if not h["clip_value_loss"]:
        out.append("clip_value_loss=False: rejax always clips the value loss (by clip_eps)")
    elif h["vf_clip"] != h["clip_eps"]:
        out.append(f"vf_clip={h['vf_clip']}: rejax clips the value by clip_eps={h['clip_eps']}")
    if not h["normalize_advantages"]:
        out.append("normalize_advantages=False: rejax always normalizes per minibatch")
    for name in ("dual_clip", "normalize_values", "recompute_advantages", "kl_early_stop",
                 "squash_mean", "action_masking"):
        if h[name]:
            out.append(f"{name}=True: not in rejax")
    if h["fourier_features"]:
        out.append("fourier_features: not in rejax")
    if h["shuffle"] != "transitions":
        out.append(f"shuffle={h['shuffle']!r}: rejax shuffles transitions")
    if h["ent_schedule"] != "constant":
        out.append(f"ent_schedule={h['ent_schedule']!r}: rejax's ent_coef is constant")
    return out


def versions() -> dict:
    names = ("rejax", "jax", "jaxlib", "gymnax", "flax", "optax", "distrax")
    return {n: importlib.metadata.version(n) for n in names}


def main() -> None:
    spec = peer_common.read_spec()
    h = spec["hparams"]
    algo = PPO.create(**rejax_options(h))
    algo = algo.replace(env=EpisodeReturns(algo.env), eval_callback=lambda *_: ())
    keys = jax.random.split(jax.random.PRNGKey(spec.get("key", 0)), spec["seeds"])
    fn = jax.jit(jax.vmap(algo.train))
    if spec.get("compile_only"):
        peer_common.emit_compile_split("rejax", spec, fn, (keys,))
        return
    timing, (state, _) = peer_common.time_jitted(fn, (keys,), spec["repeats"])
    last = np.asarray(state.env_state.last_return, np.float64)      # [S, N]
    finished = np.asarray(state.env_state.finished) > 0
    finals = np.where(finished, last, 0.0).sum(1) / np.maximum(finished.sum(1), 1)
    finals = np.where(finished.any(1), finals, np.nan)
    steps = spec["seeds"] * num_updates(h) * h["num_envs"] * h["num_steps"]
    peer_common.emit({
        "peer": "rejax", "case": spec["case"], "seeds": spec["seeds"], "env_steps": steps,
        **timing, "env_steps_per_s": round(steps / timing["run_s_median"]),
        "final_returns": [float(x) for x in finals],
        "learning_measure": "return of each env's last finished training episode, mean over envs",
        "unmatched": unmatched(h), "versions": versions(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    })


if __name__ == "__main__":
    main()
