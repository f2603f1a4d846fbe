"""jaxppo on one benchmark case: S seeds in one vmapped call; prints one JSON line.

    python bench/peer_jaxppo.py '{"case": ..., "seeds": 8, "repeats": 3, "hparams": {...}}'

With ``"cores": true`` the host is first split into one JAX device per core
(`jaxppo.use_cpu_cores`) and the seeds are sharded over the devices, as `jaxppo.sweep` and the
command line do; the seed count must then be a multiple of the device count.

With ``"env_alone": true`` it times only the env: the config's num_envs stepping through
jaxppo's adapter with uniformly random actions, as many steps as one seed's run takes, in one
jitted scan (what any trainer on that env pays at least).

``hparams`` holds every jaxppo Config field. Learning: jaxppo.stats.final_returns (mean return
over the last 10 updates) per seed; with ``"eval_episodes": E`` also the mean return of E
evaluation episodes with the policy's mode (`jaxppo.evaluate`) per seed.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import peer_common

import jaxppo
from jaxppo import envs, placement, stats
from jaxppo.envs import core


def make_config(hparams: dict) -> jaxppo.Config:
    fields = dict(hparams)
    if "hidden_sizes" in fields:
        fields["hidden_sizes"] = tuple(fields["hidden_sizes"])
    return jaxppo.validate(jaxppo.Config(**fields))


def main() -> None:
    spec = peer_common.read_spec()
    if spec.get("cores"):
        jaxppo.use_cpu_cores()  # before any JAX operation
    config = make_config(spec["hparams"])
    if spec.get("env_alone"):
        env_alone(spec, config)
        return
    keys = jax.random.split(jax.random.key(spec.get("key", 0)), spec["seeds"])
    devices = (placement.default_devices(spec["seeds"]) if spec.get("cores")
               else jax.devices()[:1])
    if spec["seeds"] % len(devices):
        raise ValueError(f"{spec['seeds']} seeds do not split evenly over {len(devices)} "
                         "devices")
    keys = jax.device_put(keys, placement.runs_sharding(devices))
    fn = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))
    if spec.get("compile_only"):
        peer_common.emit_compile_split("jaxppo", spec, fn, (config, keys))
        return
    timing, (state, metrics) = peer_common.time_jitted(fn, (config, keys), spec["repeats"])
    finals = stats.final_returns(np.asarray(metrics.episode_return))
    evaluated = {}
    if spec.get("eval_episodes"):
        returns = jaxppo.evaluate(config, state, jax.random.key(1), spec["eval_episodes"]).returns
        evaluated = {"eval_returns": [float(x) for x in np.asarray(returns).mean(axis=-1)],
                     "eval_measure": f"mean return of {spec['eval_episodes']} evaluation "
                                     "episodes with the policy's mode"}
    steps = spec["seeds"] * config.num_updates * config.batch_size
    peer_common.emit({
        "peer": "jaxppo", "case": spec["case"], "seeds": spec["seeds"], "env_steps": steps,
        **timing, "env_steps_per_s": round(steps / timing["run_s_median"]),
        "final_returns": [float(x) for x in np.ravel(finals)],
        "learning_measure": "mean training return over the last 10 updates", **evaluated,
        "versions": {"jaxppo": jaxppo.__version__, "jax": jax.__version__},
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": len(devices),
    })


def env_alone(spec: dict, config: jaxppo.Config) -> None:
    """Emit the timing of one seed's env steps alone (random actions, no policy, no update)."""
    env = envs.make_for(config)
    space = env.action_space
    num_envs = config.num_envs

    def random_action(key):
        if space.discrete:
            return jax.random.randint(key, (num_envs,), 0, space.num_actions)
        return jax.random.uniform(key, (num_envs, *space.shape), minval=space.low,
                                  maxval=space.high)

    def run(key):
        _, state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def body(state, key):
            act_key, step_key = jax.random.split(key)
            state, _ = core.step_batch(env, jax.random.split(step_key, num_envs), state,
                                       random_action(act_key))
            return state, None

        steps = config.num_updates * config.num_steps
        return jax.lax.scan(body, state, jax.random.split(key, steps))[0]

    timing, _ = peer_common.time_jitted(jax.jit(run), (jax.random.key(0),), spec["repeats"])
    steps = config.num_updates * config.batch_size
    peer_common.emit({
        "peer": "env alone", "case": spec["case"], "seeds": 1, "env_steps": steps, **timing,
        "env_steps_per_s": round(steps / timing["run_s_median"]),
        "versions": {"jaxppo": jaxppo.__version__, "jax": jax.__version__},
    })


if __name__ == "__main__":
    main()
