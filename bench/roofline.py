"""Roofline of PPO training on this machine: FLOPs per env step against the measured matmul peak.

    python bench/roofline.py              # writes bench/results/roofline.{json,md}

1. FLOPs of one env step of training, counted by hand from the network sizes (`hand_count`),
   and cross-checked with XLA's cost analysis of the compiled pieces of one update
   (`xla_count`). XLA counts a while loop's body once, whatever its trip count, so the cost
   analysis of the whole compiled `train` (also recorded) is far below the real work; the
   pieces below are loop bodies, and we multiply them by their trip counts.
2. The machine's matmul peak: jit(jnp.dot) of two n x n float32 matrices, the fastest of the
   repeats (the median is recorded too; on a shared machine it moves with the load, and a
   lower peak would flatter the fraction);
   also the rate at the shapes training actually multiplies (a [64, 128, 64] x [64, 64, 64]
   batched matmul: 64 seeds' 128-sample minibatches through a 64-wide layer).
3. Achieved fraction = FLOPs per env step x env steps/s / peak, at the largest batch measured:
   the 64-seed CartPole row of bench/results/peers.json when present, else measured here.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import machine as machine_info  # bench/machine.py
from jax.flatten_util import ravel_pytree

import jaxppo
from jaxppo import envs, gae, networks, policy, rollout, update

# Adam with global-norm clipping, per parameter and gradient step: clip (square, sum, scale:
# 3), first moment (3), second moment (4), bias corrections (2), sqrt + eps + divide + scale
# (4), apply (1). An estimate; XLA's count of the same step is in the cross-check.
ADAM_FLOPS_PER_PARAM = 17


def mlp_flops(sizes: list[int]) -> tuple[int, int]:
    """(forward matmul FLOPs, parameter count) of an MLP with layer widths ``sizes``.

    A dense layer in -> out on one sample: 2 * in * out FLOPs (multiply-adds) and
    in * out + out parameters.
    """
    flops = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return flops, params


def hand_count(config: jaxppo.Config) -> dict:
    """FLOPs of one env step of training, from the layer sizes (matmuls and Adam only).

    rollout:  actor + critic forward on obs_t, and the critic on the pre-reset next obs
              (batched after the scan): F_actor + 2 F_critic
    update:   update_epochs passes of forward + backward over every transition; backward is
              2x forward (gradients w.r.t. weights and w.r.t. inputs, the first layer's input
              gradient excepted): E * (3 F - 2 * 2 * O * H1) with F = F_actor + F_critic
    optimizer: E * M gradient steps per T * N env steps, ADAM_FLOPS_PER_PARAM per parameter
    """
    env = envs.make(config.env_id)
    obs, hidden = env.observation_size, list(config.hidden_sizes)
    actions = env.action_space.num_actions if env.action_space.discrete else 2 * math_prod(
        env.action_space.shape)
    f_actor, p_actor = mlp_flops([obs, *hidden, actions])
    f_critic, p_critic = mlp_flops([obs, *hidden, 1])
    forward = f_actor + f_critic
    first_layer_input_grad = 2 * (2 * obs * hidden[0])
    rollout_flops = f_actor + 2 * f_critic
    update_flops = config.update_epochs * (3 * forward - first_layer_input_grad)
    steps_per_update = config.num_steps * config.num_envs
    gradient_steps = config.update_epochs * config.num_minibatches
    params = p_actor + p_critic
    adam = gradient_steps * params * ADAM_FLOPS_PER_PARAM / steps_per_update
    total = rollout_flops + update_flops + adam
    return {
        "forward_actor": f_actor, "forward_critic": f_critic, "params": params,
        "rollout": rollout_flops, "update": update_flops, "adam": round(adam),
        "per_env_step": round(total),
        "arithmetic": (
            f"F_actor = 2*({obs}*{hidden[0]} + "
            + " + ".join(f"{a}*{b}" for a, b in zip(hidden[:-1], hidden[1:], strict=True))
            + f" + {hidden[-1]}*{actions}) = {f_actor}; F_critic = {f_critic}; "
            f"rollout = F_actor + 2 F_critic = {rollout_flops}; update = "
            f"{config.update_epochs} * (3 * {forward} - {first_layer_input_grad}) = "
            f"{update_flops}; Adam = {gradient_steps} steps * {params} params * "
            f"{ADAM_FLOPS_PER_PARAM} / {steps_per_update} = {adam:.0f}; total = {total:.0f}"
        ),
    }


def math_prod(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def flops_of(fn, *args) -> float:
    """XLA's FLOP count of the compiled ``fn(*args)`` (loop bodies counted once)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))


def xla_count(config: jaxppo.Config) -> dict:
    """FLOPs per env step from XLA's cost analysis of loop-free pieces times their trip counts.

    pieces: one rollout step (acting in N envs, env step included) x T; the batched critic pass
    over [T, N] next observations; GAE over [1, T * N] (its reverse scan has one step then);
    one minibatch gradient step (loss, gradient, clipping, Adam) x E * M; the shuffle x E.
    """
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    optimizer = update.make_optimizer(config)
    state = jaxppo.init(config, jax.random.key(0))
    acting = policy.Policy(state.params, state.normalizers)
    carry = rollout.EnvCarry(state.obs, state.env_state)
    step_fn = functools.partial(rollout.policy_step, config=config, env=env, network=network,
                                policy=acting)
    _, transitions = jax.jit(rollout.rollout, static_argnums=(0, 1, 2))(
        config, env, network, acting, carry, jax.random.key(1))
    t, n = config.num_steps, config.num_envs
    flat = jax.tree.map(lambda x: x.reshape(1, t * n, *x.shape[2:]), transitions)
    data = update.UpdateData(transitions, transitions.reward, state.normalizers)
    batch = update.make_batch(config, data, transitions.value, transitions.value)
    minibatches = update.shuffle_minibatches(batch, jax.random.key(2), config)
    minibatch = jax.tree.map(lambda x: x[0], minibatches)
    flat_params, unravel = ravel_pytree(state.params)  # an update's params are one vector
    opt = update.OptCarry(flat_params, state.opt_state, jnp.zeros((), jnp.bool_))
    pieces = {
        "rollout step x T": flops_of(step_fn, carry, jax.random.key(3)) * t,
        "next values": flops_of(lambda p, o: policy.critic_value(config, network, p, o),
                                acting, transitions.final_obs),
        # The next values' place takes any [T, N] array: the FLOP count is the same.
        "GAE": flops_of(lambda tr: gae.batched_gae(tr.reward, tr.value, tr.value,
                                                   tr.terminated, tr.truncated,
                                                   config.gamma, config.gae_lambda), flat),
        "gradient step x E*M": flops_of(
            lambda c, mb: update.minibatch_step(c, mb, unravel, network, config, optimizer,
                                                config.ent_coef, config.learning_rate),
            opt,
            minibatch) * config.update_epochs * config.num_minibatches,
        "shuffle x E": flops_of(lambda b, k: update.shuffle_minibatches(b, k, config), batch,
                                jax.random.key(4)) * config.update_epochs,
    }
    per_step = {k: round(v / (t * n)) for k, v in pieces.items()}
    whole = flops_of(jaxppo.train, config, jax.random.key(0))
    env_steps = config.num_updates * config.batch_size
    return {"pieces_per_env_step": per_step, "per_env_step": sum(per_step.values()),
            "whole_train_flops_loops_once": whole,
            "whole_train_flops_per_env_step_loops_once": round(whole / env_steps, 1)}


def timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(median, fastest) seconds of jit(fn)(*args) over ``repeats`` calls after a warm-up."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), min(runs)


def matmul_peak(n: int, repeats: int) -> dict:
    """FLOP/s of jit(jnp.dot) on n x n float32, and of a training-shaped batched matmul."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    seconds, best = timed(jnp.dot, a, b, repeats=repeats)
    x = jax.random.normal(jax.random.key(2), (64, 128, 64), jnp.float32)
    w = jax.random.normal(jax.random.key(3), (64, 64, 64), jnp.float32)
    small, _ = timed(lambda x, w: jnp.einsum("sbi,sio->sbo", x, w), x, w, repeats=repeats * 20)
    return {"n": n, "seconds": seconds, "median_flops_per_s": 2 * n**3 / seconds,
            "flops_per_s": 2 * n**3 / best,
            "training_shape": "[64,128,64] x [64,64,64] batched",
            "training_shape_flops_per_s": 2 * 64 * 128 * 64 * 64 / small}


def largest_batch(config: jaxppo.Config, peers_json: pathlib.Path, seeds: int,
                  budget: float, case: str = "cartpole-s64") -> dict:
    """env steps/s at the largest batch: from peers.json's ``case`` row (the median over its
    rounds), else measured here."""
    if peers_json.exists():
        result = json.loads(peers_json.read_text())
        runs = [r for r in result["results"]
                if r["peer"] == "jaxppo" and r["case"] == case and "error" not in r]
        if runs:
            return {"source": f"{peers_json.parent.name}/{peers_json.name}", "case": case,
                    "seeds": runs[0]["seeds"],
                    "env_steps_per_s": round(statistics.median(r["env_steps_per_s"]
                                                               for r in runs)),
                    "rounds": len(runs), "budget": result["budget"]}
        cases = sorted({r["case"] for r in result["results"] if r["peer"] == "jaxppo"})
        print(f"{peers_json} has no jaxppo row for case {case!r} (it has {cases}); "
              "measuring here", file=sys.stderr)
    updates = max(1, int(config.num_updates * budget))
    config = config.replace(total_timesteps=updates * config.batch_size)
    keys = jax.random.split(jax.random.key(0), seeds)
    fn = jax.vmap(jaxppo.train, in_axes=(None, 0))
    seconds, _ = timed(fn, config, keys, repeats=3)
    return {"source": "measured here", "seeds": seeds, "budget": budget,
            "env_steps_per_s": round(seeds * updates * config.batch_size / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="matmul size for the peak")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=64,
                        help="seeds per call when measuring here (no peers.json row)")
    parser.add_argument("--budget", type=float, default=0.1,
                        help="fraction of the run when measuring here")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument("--peers-json", default=None,
                        help="the peers.py result to read the rate from (default: OUT/peers.json)")
    parser.add_argument("--case", default="cartpole-s64",
                        help="its case to read (e.g. cartpole-s64-cores: seeds on every core)")
    args = parser.parse_args()
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    out = pathlib.Path(args.out)
    peers_json = pathlib.Path(args.peers_json) if args.peers_json else out / "peers.json"
    config = jaxppo.preset("CartPole-v1")
    hand = hand_count(config)
    xla = xla_count(config)
    peak = matmul_peak(args.n, args.repeats)
    speed = largest_batch(config, peers_json, args.seeds, args.budget, args.case)
    achieved = hand["per_env_step"] * speed["env_steps_per_s"]
    result = {
        "benchmark": "roofline, CartPole-v1 classic config",
        "machine": machine_info.describe(),
        "loadavg": [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]],
        "hand_count": hand, "xla_count": xla, "peak": peak, "largest_batch": speed,
        "achieved_flops_per_s": achieved,
        "achieved_fraction_of_peak": achieved / peak["flops_per_s"],
        "achieved_fraction_xla_count": xla["per_env_step"] * speed["env_steps_per_s"]
        / peak["flops_per_s"],
        "achieved_fraction_of_training_shape_rate": achieved
        / peak["training_shape_flops_per_s"],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "roofline.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [
        "# Roofline, CartPole-v1 classic config", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['device']}; jax {m['jax']}; "
        f"load average {result['loadavg']} (shared machine).", "",
        "| | FLOPs per env step |", "|---|---:|",
        f"| hand count: rollout | {hand['rollout']:,} |",
        f"| hand count: update (epochs x forward + backward) | {hand['update']:,} |",
        f"| hand count: Adam | {hand['adam']:,} |",
        f"| **hand count, total** | **{hand['per_env_step']:,}** |",
    ]
    lines += [f"| XLA: {k} | {v:,} |" for k, v in xla["pieces_per_env_step"].items()]
    lines += [
        f"| **XLA cost analysis, total** | **{xla['per_env_step']:,}** |",
        f"| XLA on the whole compiled train (loop bodies counted once) | "
        f"{xla['whole_train_flops_per_env_step_loops_once']:,} |", "",
        f"Arithmetic: {hand['arithmetic']}.", "",
        "| | FLOP/s |", "|---|---:|",
        f"| matmul peak, jit(jnp.dot) {peak['n']}x{peak['n']} f32, fastest of {args.repeats} "
        f"(the machine's capability; the median, {peak['median_flops_per_s'] / 1e9:.1f} G, "
        f"moves with the shared load) | {peak['flops_per_s'] / 1e9:.1f} G |",
        f"| at training's shape, {peak['training_shape']} | "
        f"{peak['training_shape_flops_per_s'] / 1e9:.1f} G |",
        f"| achieved: {hand['per_env_step']:,} x {speed['env_steps_per_s']:,} env steps/s "
        f"({speed['seeds']} seeds, {speed['source']}) | {achieved / 1e9:.1f} G |", "",
        f"**Achieved fraction of the matmul peak: {result['achieved_fraction_of_peak']:.1%}** "
        f"(with XLA's count: {result['achieved_fraction_xla_count']:.1%}; of the rate at "
        f"training's shape: {result['achieved_fraction_of_training_shape_rate']:.1%}).",
    ]
    (out / "roofline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
