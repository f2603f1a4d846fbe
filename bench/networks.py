"""Env steps/s of the network family (MinAtar CNN, recurrent core) beside the MLP, and where
each network's cost goes.

    python bench/networks.py                        # writes bench/results/networks.{json,md}
    python bench/networks.py --seeds 1,8            # a quicker look, without the 64-seed calls
    python bench/networks.py --quick --out /tmp/networks     # smoke run: 1 seed, 1 update

Cases (`cases`), each beside a baseline that differs in the network only:

- ``breakout-mlp``: Breakout-MinAtar's preset batch (64 envs x 128 steps, 8 minibatches,
  4 epochs) with the library's default MLP shape, two tanh towers of (256, 256) on the
  flattened 10x10x4 grid. The baseline of:
- ``breakout-cnn``: the preset itself, MinAtar's network (one 3x3 conv of 16 channels, 128
  relu units, one torso under both heads).
- ``memorychain-mlp``: MemoryChain-bsuite's preset (16 envs x 20 steps, 2 minibatches, one
  32-wide layer, trajectory shuffle) without its core. The baseline of:
- ``memorychain-gru``: the preset itself, a GRU of 32 after the layer.

Speed, as bench/scaling.py measures it: S seeds are one vmapped `jaxppo.init` and then one
vmapped call of `jaxppo.train.run_updates` of ``updates`` updates (Breakout 2, MemoryChain 50:
16,384 and 16,000 env steps per seed; ``--updates`` sets both), compiled apart (lower +
compile of both, on one device) and run ``--repeats`` times, ended by ``block_until_ready``.
Env steps/s count the training call alone; the initial states' seconds are recorded apart,
since a call of 2 updates would charge a whole run's init to 2 updates. The cases of one seed
count are compiled first and then run round-robin, the order reversed every round; the ratio
to the baseline is the median of the within-round ratios.

Cost located, per network (`hand_count`, matmuls and Adam only, as bench/roofline.py counts):
one sample through one tower (or the shared torso) costs, forward,

    encoder  sum over convs of 2 H' W' (k k C) C'   (0 for "mlp": the input is flattened)
    hidden   sum of 2 a b over the widths [input, *hidden_sizes]
    core     2 G H (I + H), G = 3 (GRU) or 4 (LSTM) gates, I its input width
    heads    2 d K (policy) + 2 d (value), d the width the heads read

With n = 2 towers (1 shared), F = n (encoder + hidden + core) + heads and F_c = one tower +
the value head:

    rollout  F + F_c per env step: acting, then the critic on the pre-reset next observation
    update   E (3 F - n F_first): E epochs of forward and backward (twice the forward) over
             every transition, less the input gradient of the first matmul, which reads the
             observation and is never formed
    Adam     E M P 17 / (T N): E M gradient steps over P params per T N env steps

each split into the four parts (the first matmul's saving goes to its part). The
forward + backward of one minibatch per sample, 3 F - n F_first, is cross-checked against
XLA's cost analysis of ``jax.grad(update.loss)`` on a real minibatch (`xla_count`; XLA counts
a loop body once, so a recurrent loss's time scan gets its other T - 1 steps added as one
step's forward and backward), and the rollout against one `rollout.policy_step` (env step
and sampling included) plus the batched next-value pass. The achieved fraction is hand FLOPs
per env step x env steps/s over the matmul peak of bench/roofline.py (`roofline.matmul_peak`).

Memory, est.: `jaxppo.memory.estimate` of all the call's seeds (XLA's scratch bytes of the
compiled training program are in the JSON, ``xla_temp_bytes``).

Where the time goes (`pieces`): one update of one seed cut into its jitted pieces, the
rollout, the advantages (next values and GAE) and the epochs, each timed alone (median of
``--repeats``), beside the whole update (`jaxppo.train.step`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import machine as machine_info  # bench/machine.py
import roofline  # bench/roofline.py: the matmul peak, XLA's FLOP count, timed calls
import scaling  # bench/scaling.py: the sweep path's two vmapped programs

import jaxppo
from jaxppo import backend, envs, memory, networks, rollout, update
from jaxppo import policy as policy_lib

train_lib = importlib.import_module("jaxppo.train")  # the module; jaxppo.train is the function

PARTS = ("encoder", "hidden", "core", "heads")
CORE_GATES = {"gru": 3, "lstm": 4}


@dataclasses.dataclass(frozen=True)
class Case:
    """One measured configuration; ``baseline`` names the case its ratio divides by."""

    name: str
    network: str
    config: jaxppo.Config
    baseline: str
    updates: int


def cases() -> tuple[Case, ...]:
    breakout = jaxppo.preset("Breakout-MinAtar")
    chain = jaxppo.preset("MemoryChain-bsuite")
    return (
        Case("breakout-mlp", "MLP (256, 256) tanh, two towers",
             breakout.replace(encoder="mlp", hidden_sizes=(256, 256), activation="tanh",
                              shared_encoder=False), "breakout-mlp", 2),
        Case("breakout-cnn", "conv 3x3x16, 128 relu, shared torso", breakout, "breakout-mlp",
             2),
        Case("memorychain-mlp", "MLP (32,) tanh, two towers", chain.replace(core="none"),
             "memorychain-mlp", 50),
        Case("memorychain-gru", "MLP (32,) + GRU 32, two towers", chain, "memorychain-mlp",
             50),
    )


@dataclasses.dataclass(frozen=True)
class Tower:
    """Forward matmul FLOPs of one sample through one tower (or the shared torso)."""

    parts: dict[str, int]  # encoder, hidden, core
    first_part: str  # the part of the first matmul, which reads the network input
    first: int  # its FLOPs (0 when the heads read the input directly)
    width: int  # the features the heads read


def tower_flops(config: jaxppo.Config, env) -> Tower:
    """The per-part forward FLOPs of one sample through one tower (formulas: module doc)."""
    shape = networks.input_shape(config, env)
    layers = []  # (part, forward FLOPs) of each matmul, input first
    width = math.prod(shape)
    if config.encoder != "mlp":
        height, side, channels = shape
        for features, kernel, stride in networks.CONV_LAYERS[config.encoder]:
            height, side = (height - kernel) // stride + 1, (side - kernel) // stride + 1
            layers.append(("encoder", 2 * height * side * kernel * kernel * channels * features))
            channels = features
        width = height * side * channels
    for size in config.hidden_sizes:
        layers.append(("hidden", 2 * width * size))
        width = size
    if config.core != "none":
        gates = CORE_GATES[config.core] * config.core_size
        layers += [("core", 2 * width * gates), ("core", 2 * config.core_size * gates)]
        width = config.core_size
    parts = {part: sum(f for p, f in layers if p == part) for part in PARTS[:3]}
    first_part, first = layers[0] if layers else ("heads", 0)
    return Tower(parts, first_part, first, width)


def param_count(config: jaxppo.Config) -> int:
    env = envs.make(config.env_id)
    shapes = jax.eval_shape(lambda k: networks.init(config, env, k), jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def hand_count(config: jaxppo.Config) -> dict:
    """FLOPs per env step of training by part, rollout and update (formulas: module doc)."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    tower = tower_flops(config, env)
    towers = 1 if config.shared_encoder else 2
    actor_head = 2 * tower.width * (network.num_actions or network.action_size)
    critic_head = 2 * tower.width
    epochs = config.update_epochs
    rollout_ = {p: (towers + 1) * f for p, f in tower.parts.items()}
    rollout_["heads"] = actor_head + 2 * critic_head
    saved = {p: towers * tower.first * (p == tower.first_part) for p in PARTS}
    update_ = {p: epochs * (3 * towers * f - saved[p]) for p, f in tower.parts.items()}
    update_["heads"] = epochs * (3 * (actor_head + critic_head) - saved["heads"])
    forward = towers * sum(tower.parts.values()) + actor_head + critic_head
    params = param_count(config)
    gradient_steps = epochs * config.num_minibatches
    adam = gradient_steps * params * roofline.ADAM_FLOPS_PER_PARAM / config.batch_size
    total = sum(rollout_.values()) + sum(update_.values()) + adam
    return {
        "tower": dataclasses.asdict(tower), "towers": towers, "actor_head": actor_head,
        "critic_head": critic_head, "forward": forward, "params": params,
        "rollout": rollout_, "update": update_, "adam": round(adam),
        "forward_backward_per_sample": 3 * forward - towers * tower.first,
        "per_env_step": round(total),
        "arithmetic": (
            "one tower: " + ", ".join(f"{p} {f}" for p, f in tower.parts.items())
            + f" (first matmul {tower.first}, in {tower.first_part}); heads 2*{tower.width}*K"
            f" = {actor_head} and 2*{tower.width} = {critic_head}; n = {towers}: "
            f"F = {forward}; rollout F + F_c = {sum(rollout_.values())}; update "
            f"{epochs} * (3 * {forward} - {towers} * {tower.first}) = "
            f"{sum(update_.values())}; Adam {gradient_steps} * {params} * "
            f"{roofline.ADAM_FLOPS_PER_PARAM} / {config.batch_size} = {adam:.0f}; "
            f"total {total:.0f}"),
    }


def _loss_grad(config, params, minibatch, network):
    return jax.grad(update.loss, has_aux=True)(params, network, config, minibatch)


def _step_vjp(config, params, carry, obs, start, network):
    """One recurrent step's forward and backward to params and carry: a loss scan's body."""

    def forward(params, carry):
        carry, dist, value = networks.step(network, params, config, carry, obs, start)
        return carry, dist, value

    out, vjp = jax.vjp(forward, params, carry)
    return vjp(jax.tree.map(jnp.ones_like, out))


@dataclasses.dataclass(frozen=True)
class FirstUpdate:
    """One seed's initial state, its first rollout and what the update builds from it."""

    env: envs.GymnaxEnv
    network: networks.ActorCritic
    state: jaxppo.TrainState
    policy: policy_lib.Policy
    carry: rollout.EnvCarry
    transitions: rollout.Transition
    data: update.UpdateData
    batch: update.Batch


def first_update(config: jaxppo.Config, seed: int = 0) -> FirstUpdate:
    """One seed's initial state and first rollout, and the pieces an update takes."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    state = jaxppo.init(config, jax.random.key(seed))
    acting = policy_lib.Policy(state.params, state.normalizers)
    carry = rollout.EnvCarry(state.obs, state.env_state, state.core, state.start)
    _, transitions = jax.jit(lambda c, p, ca, k: rollout.rollout(c, env, network, p, ca, k))(
        config, acting, carry, backend.rollout_key(jax.random.key(seed + 1)))
    data = update.UpdateData(transitions, transitions.reward, state.normalizers, state.core)
    return FirstUpdate(env, network, state, acting, carry, transitions, data,
                       update.make_batch(config, data, transitions.value, transitions.value))


def xla_count(config: jaxppo.Config) -> dict:
    """XLA's FLOPs of one minibatch's forward + backward per sample, and of the rollout per
    env step (one acting step on N envs, plus the next-value pass over [T, N])."""
    u = first_update(config)
    network, tr = u.network, u.transitions
    minibatches = update.shuffle_minibatches(u.batch, jax.random.key(2), config)
    minibatch = jax.tree.map(lambda x: x[0], minibatches)
    grad = roofline.flops_of(lambda c, p, mb: _loss_grad(c, p, mb, network), config,
                             u.state.params, minibatch)
    samples = math.prod(minibatch.action.shape[:2 if network.recurrent else 1])
    if network.recurrent:  # the time scan's body was counted once: add the other T - 1 steps
        grad += (config.num_steps - 1) * roofline.flops_of(
            lambda c, p, h, o, s: _step_vjp(c, p, h, o, s, network), config, u.state.params,
            minibatch.core, minibatch.obs[0], minibatch.start[0])
    act = roofline.flops_of(
        lambda c, ca, k, p: rollout.policy_step(ca, k, c, u.env, network, p),
        config, u.carry, jax.random.key(3), u.policy)
    next_values = roofline.flops_of(
        lambda c, p, o, h: policy_lib.critic_value(c, network, p, o, h), config, u.policy,
        tr.final_obs, tr.core)
    return {"forward_backward_per_sample": round(grad / samples),
            "minibatch_samples": samples,
            "rollout_per_env_step": round(act / config.num_envs
                                          + next_values / config.batch_size)}


def pieces(config: jaxppo.Config, repeats: int) -> dict:
    """Milliseconds of one update of one seed: its pieces, each jitted alone, and the whole."""
    u = first_update(config)
    env, network, state = u.env, u.network, u.state
    opt = update.OptCarry(state.params, state.opt_state, jnp.zeros((), jnp.bool_))
    calls = {
        "rollout": (lambda c, p, ca, k: rollout.rollout(c, env, network, p, ca,
                                                        backend.rollout_key(k)),
                    (config, u.policy, u.carry, jax.random.key(4))),
        "advantages": (lambda c, p, d, v: update.advantages(c, network, p, d, v),
                       (config, u.policy, u.data, u.transitions.value)),
        "epochs": (lambda c, o, d, b, k: update.update(c, network, update.make_optimizer(c),
                                                       o, d, b, k),
                   (config, opt, u.data, u.batch, jax.random.key(5))),
        "whole update": (train_lib.step, (config, state)),
    }
    return {name: round(1e3 * roofline.timed(fn, *args, repeats=repeats)[0], 3)
            for name, (fn, args) in calls.items()}


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A case's two compiled programs at one seed count, with their inputs."""

    init: jax.stages.Compiled
    train: jax.stages.Compiled
    configs: jaxppo.Config
    keys: jax.Array
    compile_s: float

    @property
    def temp_bytes(self) -> int:
        """XLA's scratch memory of the training program, all seeds."""
        return self.train.memory_analysis().temp_size_in_bytes


def prepare(config: jaxppo.Config, seeds: int) -> Prepared:
    keys = jax.random.split(jax.random.key(0), seeds)
    configs = jaxppo.stack_configs([config] * seeds)
    start = time.perf_counter()
    init = scaling.init_batch.lower(configs, keys).compile()
    abstract = jax.eval_shape(scaling.init_batch, configs, keys)
    train = scaling.train_batch.lower(configs, abstract).compile()
    return Prepared(init, train, configs, keys, time.perf_counter() - start)


def run_once(prepared: Prepared) -> tuple[float, float]:
    """(initial states' seconds, training seconds) of one call of both programs."""
    start = time.perf_counter()
    states = jax.block_until_ready(prepared.init(prepared.configs, prepared.keys))
    middle = time.perf_counter()
    jax.block_until_ready(prepared.train(prepared.configs, states))
    return middle - start, time.perf_counter() - middle


def within_round_ratios(rates: list[float], baseline_rates: list[float]) -> float:
    """The median over rounds of rate / baseline rate, each pair measured in one round."""
    return statistics.median(r / b for r, b in zip(rates, baseline_rates, strict=True))


def measure(chosen: tuple[Case, ...], seeds: int, repeats: int) -> list[dict]:
    """Rows of the speed table at ``seeds``: the cases compiled, then run round-robin."""
    configs = {c.name: c.config.replace(total_timesteps=c.updates * c.config.batch_size)
               for c in chosen}
    prepared = {name: prepare(config, seeds) for name, config in configs.items()}
    times = {name: [] for name in configs}
    for round_ in range(repeats):
        for case in chosen if round_ % 2 == 0 else chosen[::-1]:
            times[case.name].append(run_once(prepared[case.name]))
    steps = {name: seeds * c.num_updates * c.batch_size for name, c in configs.items()}
    rates = {name: [steps[name] / run for _, run in times[name]] for name in configs}
    rows = []
    for case in chosen:
        ratio = (round(within_round_ratios(rates[case.name], rates[case.baseline]), 3)
                 if case.baseline in rates else None)
        rows.append(speed_row(case, seeds, configs[case.name].num_updates, steps[case.name],
                              prepared[case.name].compile_s, times[case.name], ratio))
        rows[-1]["xla_temp_bytes"] = prepared[case.name].temp_bytes
        print(rows[-1], flush=True)
    return rows


def speed_row(case: Case, seeds: int, updates: int, steps: int, compile_s: float,
              times: list[tuple[float, float]], ratio: float | None) -> dict:
    run_s = statistics.median(run for _, run in times)
    return {"case": case.name, "network": case.network, "env_id": case.config.env_id,
            "seeds": seeds, "updates_per_call": updates, "env_steps": steps,
            "compile_s": round(compile_s, 2),
            "init_s_median": round(statistics.median(init for init, _ in times), 3),
            "run_s_median": round(run_s, 3), "run_s_all": [round(run, 3) for _, run in times],
            "env_steps_per_s": round(steps / run_s),
            "baseline": case.baseline, "ratio_to_baseline": ratio,
            "memory_estimate_bytes": memory.estimate(case.config, seeds).total}


def speed_lines(result: dict) -> list[str]:
    lines = ["| case | network | seeds | env steps/s | ratio to baseline | compile (s) | "
             "initial states (s) | of the matmul peak | memory, est. |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        ratio = ("" if r["ratio_to_baseline"] is None
                 else f"{r['ratio_to_baseline']:.2f} ({r['baseline']})")
        lines.append(f"| {r['case']} | {r['network']} | {r['seeds']} | "
                     f"{r['env_steps_per_s']:,} | {ratio} | {r['compile_s']} | "
                     f"{r['init_s_median']} | {r['fraction_of_peak']:.1%} | "
                     f"{r['memory_estimate_bytes'] / 2**20:,.1f} MiB |")
    return lines


def cost_lines(result: dict) -> list[str]:
    lines = ["| case | | encoder | hidden | core | heads | Adam | total |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, cost in result["costs"].items():
        hand = cost["hand"]
        both = {p: hand["rollout"][p] + hand["update"][p] for p in PARTS}
        for label, row, adam, total in (
                ("rollout", hand["rollout"], "", sum(hand["rollout"].values())),
                ("update", hand["update"], "", sum(hand["update"].values())),
                ("**per env step**", both, hand["adam"], hand["per_env_step"])):
            cells = " | ".join(f"{row[p]:,}" for p in PARTS)
            adam = adam if adam == "" else f"{adam:,}"
            lines.append(f"| {name} | {label} | {cells} | {adam} | {total:,} |")
    return lines


def check_lines(result: dict) -> list[str]:
    lines = ["| case | forward + backward per sample: hand | XLA | XLA / hand | "
             "rollout per env step: hand | XLA (env step and sampling in) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, cost in result["costs"].items():
        hand = cost["hand"]["forward_backward_per_sample"]
        xla = cost["xla"]["forward_backward_per_sample"]
        rollout_ = sum(cost["hand"]["rollout"].values())
        lines.append(f"| {name} | {hand:,} | {xla:,} | {xla / hand:.3f} | {rollout_:,} | "
                     f"{cost['xla']['rollout_per_env_step']:,} |")
    return lines


def piece_lines(result: dict) -> list[str]:
    names = ("rollout", "advantages", "epochs")
    lines = ["| case | rollout | advantages (next values, GAE) | epochs | sum of pieces | "
             "whole update |", "|---|---:|---:|---:|---:|---:|"]
    for name, ms in result["pieces_ms"].items():
        total = sum(ms[n] for n in names)
        cells = " | ".join(f"{ms[n]:.1f} ({ms[n] / total:.0%})" for n in names)
        lines.append(f"| {name} | {cells} | {total:.1f} | {ms['whole update']:.1f} |")
    return lines


def markdown(result: dict) -> list[str]:
    peak, machine = result["peak"], result["machine"]
    return [
        "# Network family: env steps/s and where the cost goes", "",
        machine_info.header(machine, result["loadavg_before"], result["loadavg_after"]), "",
        f"S seeds in one vmapped call on one {machine['device']} device, "
        f"`{result['command']}`: env steps/s of the training call (median of "
        f"{result['repeats']}; initial states apart), the cases of one seed count run "
        "round-robin; ratio: the median within-round ratio to the baseline's env steps/s. "
        "Of the matmul peak: the hand count per env step below x env steps/s / "
        f"{peak['flops_per_s'] / 1e9:.1f} GFLOP/s (jit(jnp.dot) {peak['n']}x{peak['n']} "
        "float32, fastest call).", "",
        *speed_lines(result), "",
        "FLOPs per env step by part, counted by hand from the layer sizes (matmuls and Adam; "
        "formulas in `bench/networks.py`):", "",
        *cost_lines(result), "",
        "The hand count against XLA's cost analysis (a real minibatch's `jax.grad` of the "
        "loss; one acting step plus the next-value pass):", "",
        *check_lines(result), "",
        "One update of one seed, ms (median of each piece jitted alone; share of the pieces' "
        "sum):", "",
        *piece_lines(result), "",
        *(f"- {name}: {cost['hand']['arithmetic']}." for name, cost in result["costs"].items()),
    ]


def seed_counts(text: str) -> list[int]:
    counts = [int(s) for s in text.split(",")]
    if min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected seed counts >= 1, as 1,8,64")
    return counts


def arguments() -> argparse.Namespace:
    names = [c.name for c in cases()]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_counts, default=None,
                        help="seed counts, comma-separated (default 1,8,64)")
    parser.add_argument("--updates", type=int, default=None,
                        help="updates per call for every case (default: Breakout 2, "
                             "MemoryChain 50)")
    parser.add_argument("--repeats", type=int, default=None, help="calls per case (default 3)")
    parser.add_argument("--cases", nargs="+", choices=names, default=names)
    parser.add_argument("--n", type=int, default=None, help="matmul size for the peak (2048)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, 1 update, 1 repeat, a 512 matmul peak")
    args = parser.parse_args()
    quick = {"seeds": [1], "updates": 1, "repeats": 1, "n": 512}
    full = {"seeds": [1, 8, 64], "updates": None, "repeats": 3, "n": 2048}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.repeats < 1 or (args.updates is not None and args.updates < 1):
        parser.error("--repeats and --updates: expected integers >= 1")
    return args


def main() -> None:
    args = arguments()
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    chosen = tuple(c if args.updates is None else dataclasses.replace(c, updates=args.updates)
                   for c in cases() if c.name in args.cases)
    before = machine_info.loadavg()
    rows = [row for seeds in args.seeds for row in measure(chosen, seeds, args.repeats)]
    costs = {c.name: {"hand": hand_count(c.config), "xla": xla_count(c.config)}
             for c in chosen}
    pieces_ms = {c.name: pieces(c.config, args.repeats) for c in chosen}
    peak = roofline.matmul_peak(args.n, 10 if args.n >= 1024 else 3)
    for row in rows:
        achieved = costs[row["case"]]["hand"]["per_env_step"] * row["env_steps_per_s"]
        row["achieved_flops_per_s"] = achieved
        row["fraction_of_peak"] = achieved / peak["flops_per_s"]
    result = {"benchmark": "network family: MinAtar CNN and recurrent core beside the MLP",
              "command": " ".join(["python bench/networks.py", *sys.argv[1:]]),
              "repeats": args.repeats, "machine": machine_info.describe(),
              "loadavg_before": before, "loadavg_after": machine_info.loadavg(),
              "cases": {c.name: {"network": c.network, "env_id": c.config.env_id,
                                 "updates_per_call": c.updates, "baseline": c.baseline,
                                 "config": repr(c.config)} for c in chosen},
              "rows": rows, "costs": costs, "pieces_ms": pieces_ms, "peak": peak}
    lines = markdown(result)
    machine_info.write(args.out, "networks", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
