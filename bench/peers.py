"""jaxppo against its peers on the same work in one run: throughput, compile time and learning.

    python bench/peers.py                 # the whole grid; writes bench/results/peers.{json,md,png}
    python bench/peers.py --quick         # smoke run: 1% of the steps, at most 2 seeds
    python bench/peers.py --budget 0.5    # every case at half its timesteps
    python bench/peers.py --rounds 3 --cases cartpole-s1 cartpole-s8   # 3 alternating rounds
    python bench/peers.py --render bench/results/peers.json   # redraw the table and plot only

The "on every core" cases run jaxppo as its sweep, experiment runner and command line do on a
CPU: `jaxppo.use_cpu_cores()` (one JAX device per core) and the seeds sharded over the devices.
rejax runs as it always does (one device; its API has no sharding), so those rows compare what
each library gives a user who asks for 8 or 64 seeds on this machine.

Peers, each in its own virtual environment that this script creates from PyPI under
``--venv-dir`` (default ``bench/.venvs``, git-ignored):

- rejax (the packaged descendant of PureJaxRL), pinned with ``gymnax<1.0`` because it unpacks
  gymnax's old 5-value step, and the same jax as jaxppo; the jaxppo hyperparameters are mapped
  onto its PPO options and what it cannot express is listed per case.
- Stable-Baselines3 PPO on PyTorch (CPU build) and gymnasium's CartPole-v1: one run at a time,
  ``--sb3-timesteps`` per seed (default 100k, scaled by --budget).

Every measurement is a subprocess (`peer_jaxppo.py`, `peer_rejax.py`, `peer_sb3.py`) that prints
one JSON line: compile time (lower + compile) apart from run time (median of --repeats compiled
calls, block_until_ready), env steps/s over all seeds, and the final training return per seed.
Learning is the IQM over seeds (`jaxppo.stats.iqm`) of each peer's own final-return measure.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
import time

import machine as machine_info  # bench/machine.py
import numpy as np

import jaxppo
from jaxppo import stats

BENCH = pathlib.Path(__file__).resolve().parent

# Each peer's environment: the pip requirement lines, installed in this order.
VENVS = {
    "rejax": [["rejax==0.1.3", "gymnax<1.0", f"jax=={importlib.metadata.version('jax')}"]],
    # torch first and alone: the CPU build, so that SB3's torch requirement is already met.
    "sb3": [["torch==2.13.0"], ["stable-baselines3==2.9.2", "gymnasium"]],
}
RUNNERS = {"jaxppo": "peer_jaxppo.py", "rejax": "peer_rejax.py", "sb3": "peer_sb3.py"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One cell of the grid: a jaxppo config, seeds per call, and who runs it."""

    name: str
    title: str
    config: jaxppo.Config
    seeds: int
    peers: tuple[str, ...] = ("jaxppo", "rejax")
    scale: float = 1.0  # this case's share of the config's timesteps (before --budget)
    # jaxppo only: `jaxppo.use_cpu_cores()` first and the seeds sharded over the devices (what
    # `jaxppo.sweep`, `jaxppo.experiment.run` and the command line do); rejax runs as always.
    cores: bool = False


def grid() -> list[Case]:
    cartpole = jaxppo.preset("CartPole-v1")
    return [
        Case("cartpole-s1", "CartPole-v1 classic, 1 seed", cartpole, 1),
        Case("cartpole-s8", "CartPole-v1 classic, 8 seeds", cartpole, 8),
        Case("cartpole-256envs", "CartPole-v1, 256 envs, 1 seed",
             cartpole.replace(num_envs=256), 1),
        # A quarter of the run each: 64 whole runs per call would dominate the grid's time.
        Case("cartpole-s64", "CartPole-v1 classic, 64 seeds", cartpole, 64, scale=0.25),
        Case("cartpole-s8-cores", "CartPole-v1 classic, 8 seeds, jaxppo on every core",
             cartpole, 8, cores=True),
        Case("cartpole-s64-cores", "CartPole-v1 classic, 64 seeds, jaxppo on every core",
             cartpole, 64, scale=0.25, cores=True),
        Case("pendulum", "Pendulum-v1 preset, 1 seed", jaxppo.preset("Pendulum-v1"), 1),
        Case("breakout-minatar", "Breakout-MinAtar, classic config, 1 seed",
             jaxppo.preset("Breakout-MinAtar"), 1),
        Case("cartpole-sb3", "CartPole-v1 classic, SB3 (one run at a time)", cartpole, 3,
             ("sb3",)),
    ]


def scaled(config: jaxppo.Config, budget: float) -> jaxppo.Config:
    """The config with total_timesteps scaled by ``budget``, in whole updates (at least one)."""
    updates = max(1, int(config.total_timesteps * budget) // config.batch_size)
    return config.replace(total_timesteps=updates * config.batch_size)


def hparams(config: jaxppo.Config) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def peer_env() -> dict:
    """The environment for a peer process: this one's, so every runner starts with the same
    XLA_FLAGS (none unless the caller set some; jaxppo sets none)."""
    return dict(os.environ)


def venv_python(venv_dir: pathlib.Path, name: str) -> pathlib.Path:
    """The Python of peer ``name``'s environment, created and installed if missing or stale."""
    root = venv_dir / name
    python = root / "bin" / "python"
    wanted = json.dumps(VENVS[name])
    marker = root / "bench-requirements.json"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    venv_dir.mkdir(parents=True, exist_ok=True)
    ignore = venv_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    print(f"creating {root} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
    for group in VENVS[name]:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *group], check=True,
                       timeout=1800)
    marker.write_text(wanted)
    return python


def run_peer(python: str, peer: str, spec: dict, timeout: float, env: dict) -> dict:
    """Run one peer runner; its last stdout line is the result (or an error record)."""
    command = [python, str(BENCH / RUNNERS[peer]), json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=BENCH.parent)
    except subprocess.TimeoutExpired:
        return {"peer": peer, "case": spec["case"], "error": f"timed out after {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = done.stderr.strip().splitlines()[-5:]
        return {"peer": peer, "case": spec["case"],
                "error": f"exit {done.returncode}: " + " | ".join(tail)}
    result = json.loads(lines[-1])
    result["wall_s"] = round(time.perf_counter() - start, 2)
    return result


def learning(result: dict) -> float | None:
    """IQM over seeds of the peer's final training returns (NaN seeds, if any, left out)."""
    finals = np.asarray(result.get("final_returns", []), np.float64)
    finals = finals[~np.isnan(finals)]
    return round(stats.iqm(finals), 1) if finals.size else None


def load() -> list[float]:
    return [float(x) for x in pathlib.Path("/proc/loadavg").read_text().split()[:3]]


def ratio(a, b) -> float | None:
    return round(a / b, 2) if a and b else None


def merge_rounds(runs: list[dict]) -> dict:
    """One peer's results of one case over --rounds rounds: medians of the rounds' compile
    and run times, every call's time, the learning of the first round (same keys, same run)."""
    ok = [r for r in runs if not r.get("error")]
    if len(ok) < 2:
        return (ok or runs)[0]
    out = dict(ok[0])
    out["compile_s"] = round(float(np.median([r["compile_s"] for r in ok])), 3)
    out["run_s_median"] = round(float(np.median([r["run_s_median"] for r in ok])), 4)
    out["env_steps_per_s"] = round(out["env_steps"] / out["run_s_median"])
    out["run_s_all"] = [t for r in ok for t in r.get("run_s_all", [])]
    out["rounds"] = len(ok)
    return out


def summary_rows(results: list[dict], cases: list[Case]) -> list[dict]:
    """One row per case with each peer's numbers and the jaxppo / peer ratios.

    With several rounds, the speed ratio is the median over rounds of the ratio within a
    round (the two peers ran back to back), which drift in the machine's load cancels.
    """
    by: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        by.setdefault((r["case"], r["peer"]), []).append(r)
    rows = []
    for case in cases:
        row = {"case": case.name, "title": case.title, "seeds": case.seeds}
        for peer in ("jaxppo", "rejax", "sb3"):
            runs = by.get((case.name, peer))
            if not runs:
                continue
            r = merge_rounds(runs)
            row[peer] = {k: r.get(k) for k in ("compile_s", "run_s_median", "env_steps",
                                               "env_steps_per_s", "error", "rounds")}
            if r.get("run_s_all"):  # the least disturbed call, for a shared machine
                row[peer]["env_steps_per_s_best"] = round(r["env_steps"] / min(r["run_s_all"]))
            row[peer]["iqm_return"] = learning(r) if "error" not in r else None
        ours = row.get("jaxppo", {})
        if case.peers == ("sb3",):  # SB3 is compared with jaxppo's one-seed run
            ours = next((row_["jaxppo"] for row_ in rows if row_["case"] == "cartpole-s1"
                         and "jaxppo" in row_), {})
        for peer in ("rejax", "sb3"):
            if peer in row:
                row[f"speed_ratio_vs_{peer}"] = ratio(ours.get("env_steps_per_s"),
                                                      row[peer]["env_steps_per_s"])
                row[f"best_speed_ratio_vs_{peer}"] = ratio(
                    ours.get("env_steps_per_s_best"), row[peer].get("env_steps_per_s_best"))
                row[f"compile_ratio_vs_{peer}"] = ratio(ours.get("compile_s"),
                                                        row[peer]["compile_s"])
        mine, theirs = by.get((case.name, "jaxppo"), []), by.get((case.name, "rejax"), [])
        paired = [ratio(a.get("env_steps_per_s"), b.get("env_steps_per_s"))
                  for a, b in zip(mine, theirs, strict=False)
                  if not a.get("error") and not b.get("error")]
        if len(paired) > 1:
            row["speed_ratios_by_round_vs_rejax"] = paired
            row["speed_ratio_vs_rejax"] = round(float(np.median(paired)), 2)
        rows.append(row)
    return rows


def _cell(r: dict | None) -> str:
    if not r:
        return "| | | | "
    if r.get("error"):
        return f"| error: {r['error'][:60]} | | | "
    return (f"| {r['compile_s']:.1f} | {r['run_s_median']:.2f} | {r['env_steps_per_s']:,} | "
            f"{r['iqm_return']} ")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# jaxppo vs peers, one run"
        + (f" of {result['rounds']} rounds" if result.get("rounds", 1) > 1 else ""),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['device']}; jax {m['jax']}. "
        f"Load average before {result['loadavg_before']}, after {result['loadavg_after']} "
        "(a shared machine: other work may have slowed some cells).",
        f"Budget: {result['budget']} x each case's timesteps; SB3 "
        f"{result['sb3_timesteps']:,} steps per seed. Run time: median of {result['repeats']} "
        "compiled calls. Return: IQM over seeds of the final training return."
        + (f" Rounds: {result.get('rounds', 1)} per case, the peers' order alternating; times "
           "are medians over rounds, the speed ratio the median of the within-round ratios."
           if result.get("rounds", 1) > 1 else ""),
        "",
        "| case | jaxppo compile (s) | run (s) | steps/s | return "
        "| rejax compile (s) | run (s) | steps/s | return | speed jaxppo/rejax "
        "| (fastest calls) | compile jaxppo/rejax |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sb3 = []
    for row in result["rows"]:
        if "sb3" in row:
            sb3.append(row)
            continue
        steps = (row.get("jaxppo") or row.get("rejax") or {}).get("env_steps")
        title = row["title"] + (f", {steps // row['seeds']:,} steps each" if steps else "")
        lines.append(f"| {title} {_cell(row.get('jaxppo'))}{_cell(row.get('rejax'))}"
                     f"| {row.get('speed_ratio_vs_rejax')} | "
                     f"{row.get('best_speed_ratio_vs_rejax')} | "
                     f"{row.get('compile_ratio_vs_rejax')} |")
    for row in sb3:
        r = row["sb3"]
        lines += ["", "| SB3 PPO (PyTorch CPU), gymnasium CartPole-v1 | steps per seed | "
                  "run (s), median | steps/s | return | speed jaxppo (1 seed) / SB3 |",
                  "|---|---:|---:|---:|---:|---:|"]
        if r.get("error"):
            lines.append(f"| error: {r['error'][:80]} | | | | | |")
        else:
            lines.append(f"| {row['seeds']} seeds, one at a time | {r['env_steps']:,} | "
                         f"{r['run_s_median']:.1f} | {r['env_steps_per_s']:,} | "
                         f"{r['iqm_return']} | {row.get('speed_ratio_vs_sb3')} |")
    lines += ["", "rejax settings that differ from jaxppo's (same numbers otherwise):", ""]
    seen = []
    for r in result["results"]:
        for item in r.get("unmatched", []) if r["peer"] == "rejax" else []:
            if item not in seen:
                seen.append(item)
    lines += [f"- {item}" for item in seen]
    lines += ["", "Versions: " + "; ".join(
        f"{peer}: " + ", ".join(f"{k} {v}" for k, v in versions.items())
        for peer, versions in result["versions"].items())]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    peers = ("jaxppo", "rejax", "sb3")
    colors = {"jaxppo": "tab:blue", "rejax": "tab:orange", "sb3": "tab:green"}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.27
    for i, row in enumerate(rows):
        for j, peer in enumerate(peers):
            r = row.get(peer)
            if not r or not r.get("env_steps_per_s"):
                continue
            x = i + (j - 1) * width
            ax.bar(x, r["env_steps_per_s"], width, color=colors[peer],
                   label=peer if i == 0 or (peer == "sb3" and row["case"] == "cartpole-sb3")
                   else None)
            ax.text(x, r["env_steps_per_s"] * 1.05, f"{r['iqm_return']}", ha="center",
                    fontsize=7, rotation=90)
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 4)  # room for the return labels
    ax.set_xticks(range(len(rows)), [row["case"] for row in rows], rotation=20, fontsize=8)
    ax.set_ylabel("env steps / s (all seeds, log)")
    ax.set_title("jaxppo vs peers, same run (labels: IQM final training return)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys())
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0,
                        help="fraction of each case's timesteps (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: budget 0.01, at most 2 seeds, nothing written to results/")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run each case this many times, the peers' order alternating")
    parser.add_argument("--sb3-timesteps", type=int, default=100_000)
    parser.add_argument("--peers", nargs="+", default=["jaxppo", "rejax", "sb3"])
    parser.add_argument("--cases", nargs="+", default=None, help="case names (default all)")
    parser.add_argument("--venv-dir", default=str(BENCH / ".venvs"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    parser.add_argument("--render", metavar="PEERS_JSON",
                        help="only redraw peers.md and peers.png from an existing peers.json")
    parser.add_argument("--out", default=None,
                        help="results folder (default bench/results; --quick: /tmp/peers-quick)")
    args = parser.parse_args()
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be at least 1")
    if args.render:
        result = json.loads(pathlib.Path(args.render).read_text())
        folder = pathlib.Path(args.render).parent
        (folder / "peers.md").write_text(markdown(result))
        plot(result, folder / "peers.png")
        print(markdown(result))
        return
    budget = 0.01 if args.quick else args.budget
    out = pathlib.Path(args.out or ("/tmp/peers-quick" if args.quick else BENCH / "results"))
    cases = [c for c in grid() if args.cases is None or c.name in args.cases]
    if args.quick:
        cases = [dataclasses.replace(c, seeds=min(c.seeds, 2)) for c in cases]

    pythons = {"jaxppo": sys.executable}
    for peer in ("rejax", "sb3"):
        if peer in args.peers:
            pythons[peer] = str(venv_python(pathlib.Path(args.venv_dir), peer))
    env = peer_env()
    sb3_steps = max(1, int(args.sb3_timesteps * budget))
    loadavg_before = load()
    started = time.time()
    results = []
    for case in cases:
        config = scaled(case.config, budget * case.scale)
        peers_here = [p for p in case.peers if p in args.peers]
        for round_ in range(args.rounds):
            # Alternate who goes first, so that neither peer always runs on a warmer machine.
            for peer in peers_here if round_ % 2 == 0 else peers_here[::-1]:
                spec = {"case": case.name, "seeds": case.seeds, "repeats": args.repeats,
                        "hparams": hparams(config), "timesteps": sb3_steps,
                        "cores": case.cores}
                print(f"{case.name} / {peer} (round {round_ + 1}) ...", file=sys.stderr,
                      flush=True)
                r = run_peer(pythons[peer], peer, spec, args.timeout, env)
                r["round"] = round_
                print(json.dumps({k: r.get(k) for k in ("compile_s", "run_s_median",
                                                        "env_steps_per_s", "error")}),
                      file=sys.stderr, flush=True)
                results.append(r)
                # Kept as the run goes, so that an interrupted run leaves what it measured.
                out.mkdir(parents=True, exist_ok=True)
                (out / "peers.partial.json").write_text(json.dumps(results, indent=2) + "\n")
    versions = {}
    for r in results:
        versions.setdefault(r["peer"], r.get("versions", {}))
    result = {
        "benchmark": "jaxppo vs rejax vs Stable-Baselines3 PPO, same work, one run",
        "command": " ".join(["python", "bench/peers.py", *sys.argv[1:]]),
        "budget": budget, "repeats": args.repeats, "rounds": args.rounds,
        "sb3_timesteps": sb3_steps,
        "machine": machine_info.describe(), "versions": versions,
        "loadavg_before": loadavg_before, "loadavg_after": load(),
        "wall_s": round(time.time() - started, 1),
        "rows": summary_rows(results, cases), "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "peers.md").write_text(text)
    (out / "peers.partial.json").unlink(missing_ok=True)
    plot(result, out / "peers.png")
    print(text)


if __name__ == "__main__":
    main()
