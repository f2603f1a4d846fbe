"""Brax's own PPO trainer (``brax.training.agents.ppo``) on a MuJoCo Playground env, with a
jaxppo Config's numbers mapped onto its options; prints one JSON line.

    python bench/peer_brax.py '{"case": ..., "seed": 0, "epochs": 3, "eval_episodes": 16,
                                "hparams": {...}}'

Brax's trainer is a Python loop over compiled training epochs (``num_evals - 1`` of them); its
own ``training/sps`` times each epoch alone, evaluation outside. Here the first two epochs each
compile (the second call's inputs are the first's pmapped outputs, laid out differently from
the initial state), so the steady speed is the median over the epochs after the second, and
the compile time is what the epochs took beyond that steady pace. The return is the mean
over ``eval_episodes`` whole episodes (Brax's evaluator, with the policy's mode) after the
last epoch.

Mapping (jaxppo Config field -> Brax option): num_envs -> num_envs; num_steps ->
unroll_length; num_minibatches -> num_minibatches with batch_size = num_envs / num_minibatches
(so each training step collects one unroll of every env, as one jaxppo update does);
update_epochs -> num_updates_per_batch; learning_rate, gamma (discounting), gae_lambda,
ent_coef (entropy_cost), clip_eps (clipping_epsilon), vf_coef, max_grad_norm and
normalize_obs (normalize_observations) carry over; hidden_sizes and activation give both
networks; the policy is a Gaussian with a state-independent log std starting at init_log_std.
"""

from __future__ import annotations

import statistics
import time

import peer_common


def main() -> None:
    spec = peer_common.read_spec()
    import flax.linen as nn
    import jax
    from jax._src import api

    # brax 0.14's trainer still calls jax.device_put_replicated, which jax 0.10 keeps only
    # behind a deprecation error: give it back the same function.
    jax.device_put_replicated = api.device_put_replicated
    import numpy as np
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo
    from mujoco_playground import registry, wrapper

    h = spec["hparams"]
    name = h["env_id"].split("/", 1)[1]
    env_config = registry.dm_control_suite.get_default_config(name)
    env_config.impl = "jax"  # MJX in pure JAX, as jaxppo's adapter runs it
    env = registry.dm_control_suite.load(name, config=env_config)
    epochs = int(spec["epochs"])
    if epochs < 3:
        raise ValueError(f"epochs must be >= 3 (two of them compile), got {epochs}")
    per_update = h["num_envs"] * h["num_steps"]
    updates = h["total_timesteps"] // per_update
    if updates % epochs:
        raise ValueError(f"{updates} updates do not split into {epochs} epochs")
    activation = {"tanh": nn.tanh, "relu": nn.relu}[h.get("activation", "tanh")]
    sizes = tuple(h.get("hidden_sizes", (64, 64)))

    def network_factory(observation_size, action_size, preprocess_observations_fn):
        return ppo_networks.make_ppo_networks(
            observation_size, action_size,
            preprocess_observations_fn=preprocess_observations_fn,
            policy_hidden_layer_sizes=sizes, value_hidden_layer_sizes=sizes,
            activation=activation, distribution_type="normal", noise_std_type="log",
            init_noise_std=float(np.exp(h.get("init_log_std", 0.0))))

    epoch_times, sps = [], []
    final = {}

    def progress(step, metrics):
        if "training/walltime" in metrics:
            epoch_times.append(float(metrics["training/walltime"]) - sum(epoch_times))
            sps.append(float(metrics["training/sps"]))
        final.update({k: float(v) for k, v in metrics.items() if np.ndim(v) == 0})

    start = time.perf_counter()
    ppo.train(
        environment=env, num_timesteps=updates * per_update, num_evals=epochs + 1,
        episode_length=int(env_config.episode_length), action_repeat=1,
        wrap_env_fn=wrapper.wrap_for_brax_training, num_envs=h["num_envs"],
        unroll_length=h["num_steps"], num_minibatches=h["num_minibatches"],
        batch_size=h["num_envs"] // h["num_minibatches"],
        num_updates_per_batch=h["update_epochs"], learning_rate=h["learning_rate"],
        discounting=h["gamma"], gae_lambda=h["gae_lambda"], entropy_cost=h["ent_coef"],
        clipping_epsilon=h["clip_eps"], vf_loss_coefficient=h["vf_coef"],
        max_grad_norm=h["max_grad_norm"], normalize_observations=h["normalize_obs"],
        reward_scaling=1.0, network_factory=network_factory, seed=int(spec.get("seed", 0)),
        num_eval_envs=int(spec["eval_episodes"]), deterministic_eval=True,
        progress_fn=progress)
    wall = time.perf_counter() - start
    steady = statistics.median(epoch_times[2:])
    steps = updates * per_update
    peer_common.emit({
        "peer": "brax", "case": spec["case"], "seeds": 1, "env_steps": steps,
        "epoch_s": [round(t, 3) for t in epoch_times],
        "compile_s": round(sum(max(t - steady, 0.0) for t in epoch_times), 3),
        "run_s": round(steady * epochs, 3),
        "env_steps_per_s": round(statistics.median(sps[2:])),
        "wall_s": round(wall, 1),
        "final_returns": [final.get("eval/episode_reward")],
        "learning_measure": f"mean return of {spec['eval_episodes']} evaluation episodes "
                            "with the policy's mode (Brax's evaluator)",
        "versions": {"brax": _version("brax"), "playground": _version("playground"),
                     "jax": jax.__version__},
    })


def _version(dist: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(dist)


if __name__ == "__main__":
    main()
