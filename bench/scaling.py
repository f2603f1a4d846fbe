"""Aggregate throughput against the number of agents trained in one call (CartPole-v1).

    python bench/scaling.py                 # writes bench/results/scaling.{json,md}
    python bench/scaling.py --cores --out /tmp/scaling-cores   # over one CPU device per core
    python bench/scaling.py --env craftax/Craftax-Classic-Symbolic-v1 --agents 1 8 64 \
        --updates 4 --out bench/results/craftax_scaling     # another env, from its preset

The default `jaxppo.Config()` (4 envs x 128 steps = 512 env steps per update) with
``total_timesteps`` cut to 20 updates per agent (``--updates``; 976 is the whole 500k-step
run): an update costs the same early and late in a run, so throughput per update is what
scales. A agents are A seeds through the sweep path, as `jaxppo.run_sharded` runs them: the
initial states built by one vmapped `jaxppo.init`, then every update of every agent in one
vmapped call of `jaxppo.train.run_updates`. Compile time (lower + compile of both) is apart
from run time (median of --repeats calls of both, ended by block_until_ready; the initial
states' share is recorded too). The memory column is `jaxppo.memory.estimate` for one agent.

``--cores`` first splits the host into one JAX device per core (`jaxppo.use_cpu_cores`) and
shards the agents over `jaxppo.placement.default_devices`, as the sweep and the runner do.
``--matmul-dtype bfloat16`` trains every agent with bfloat16 matmuls (`Config.matmul_dtype`).
``--env ID`` measures `jaxppo.preset(ID)` instead of CartPole's defaults.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import statistics
import time

import jax
import machine as machine_info  # bench/machine.py

import jaxppo
from jaxppo import config as config_lib
from jaxppo import memory, placement

train_lib = importlib.import_module("jaxppo.train")  # the module; jaxppo.train is the function

UPDATES = 20


def train_from(config: jaxppo.Config, state: jaxppo.TrainState):
    """`jaxppo.train` after its `init`: the config's updates run from ``state``."""
    return train_lib.run_updates(config, state, config.num_updates)


# The sweep path's two programs: configs and keys [A] to states [A], then states to the end.
init_batch = jax.jit(jax.vmap(jaxppo.init))
train_batch = jax.jit(jax.vmap(train_from))


def loadavg() -> str:
    try:
        return pathlib.Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


def measure(config: jaxppo.Config, agents: int, repeats: int) -> dict:
    keys = jax.random.split(jax.random.key(0), agents)
    configs = jaxppo.stack_configs([config] * agents)
    devices = placement.default_devices(agents)
    sharding = placement.runs_sharding(devices)
    # As `jaxppo.run_sharded` does: initial states built on one device, then laid out.
    sharded_configs = placement.put(configs, sharding)
    start = time.perf_counter()
    init = init_batch.lower(configs, keys).compile()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                            jax.eval_shape(init_batch, configs, keys))
    train = train_batch.lower(sharded_configs, abstract).compile()
    compile_s = time.perf_counter() - start
    runs, inits = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        states = jax.block_until_ready(init(configs, keys))
        inits.append(time.perf_counter() - start)
        if len(devices) > 1:
            states = placement.put(states, sharding)
        jax.block_until_ready(train(sharded_configs, states))
        runs.append(time.perf_counter() - start)
    run_s = statistics.median(runs)
    steps = agents * config.num_updates * config.batch_size
    row = {"agents": agents, "devices": len(devices), "env_steps": steps,
           "compile_s": round(compile_s, 2),
           "run_s_median": round(run_s, 3), "run_s_all": [round(r, 3) for r in runs],
           "init_s_median": round(statistics.median(inits), 3),
           "env_steps_per_s": round(steps / run_s),
           "env_steps_per_s_per_agent": round(steps / run_s / agents),
           "memory_per_agent_bytes": memory.estimate(config).per_run}
    print(row, flush=True)
    return row


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [f"# {result['benchmark']}", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['device']}, "
             f"jax {machine['jax']}. Load average before: {result['loadavg_before']}; "
             f"after: {result['loadavg_after']}.", "",
             "| agents | devices | compile (s) | run, median (s) | of which initial states (s) | "
             "env steps/s (all agents) | env steps/s per agent | memory per agent (est.) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['agents']} | {r.get('devices', 1)} | {r['compile_s']} | {r['run_s_median']} | "
              f"{r.get('init_s_median', '')} | "
              f"{r['env_steps_per_s']:,} | {r['env_steps_per_s_per_agent']:,} | "
              f"{r['memory_per_agent_bytes'] / 2**20:.2f} MiB |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument("--updates", type=int, default=UPDATES,
                        help="updates per agent (976 is the classic 500k-step run)")
    parser.add_argument("--cores", action="store_true",
                        help="one JAX CPU device per core, the agents sharded over them")
    parser.add_argument("--env", default="CartPole-v1",
                        help="env id; its preset (jaxppo.preset) is the config")
    parser.add_argument("--matmul-dtype", default="float32",
                        choices=config_lib.MATMUL_DTYPES,
                        help="Config.matmul_dtype of every agent")
    args = parser.parse_args()
    if args.updates < 1:
        parser.error(f"--updates {args.updates}: expected an integer >= 1")
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    if args.cores:
        jaxppo.use_cpu_cores()  # before any JAX operation
    if not jaxppo.envs.is_known(args.env):
        parser.error(f"--env {args.env!r}: not a known env id (jaxppo envs lists them)")
    config = jaxppo.preset(args.env).replace(matmul_dtype=args.matmul_dtype)
    config = config.replace(total_timesteps=args.updates * config.batch_size)
    before = loadavg()
    rows = [measure(config, a, args.repeats) for a in args.agents]
    # CartPole's preset is Config's defaults: say "preset" only where it changes something.
    setting = ("default config" if jaxppo.preset(args.env) == jaxppo.Config(env_id=args.env)
               else "preset")
    result = {"benchmark": f"{args.env} {setting}, {args.updates} updates x "
                           f"{config.batch_size} env steps per agent, A agents in one call"
                           + (f" sharded over {len(jax.devices())} {jax.default_backend()} "
                              "devices (one per core)" if args.cores
                              else f" on one {jax.default_backend()} device")
                           + ("" if args.matmul_dtype == "float32"
                              else f", {args.matmul_dtype} matmuls"),
              "env_id": args.env, "matmul_dtype": args.matmul_dtype,
              "total_timesteps_per_agent": config.total_timesteps,
              "machine": machine_info.describe(), "loadavg_before": before,
              "loadavg_after": loadavg(), "rows": rows}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "scaling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
