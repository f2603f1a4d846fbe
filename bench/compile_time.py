"""Compile time of jaxppo against rejax, cut into its stages, in alternating fresh processes.

    python bench/compile_time.py                       # 3 rounds of the single-device cases
    python bench/compile_time.py --profile --rounds 1  # also count the kernels XLA compiles

Each cell is one fresh process per peer (`peer_jaxppo.py`, `peer_rejax.py` with
``"compile_only": true``) that builds the same work as `peers.py` and times tracing, lowering
and XLA's compile apart (`peer_common.compile_split`); nothing runs. The peers alternate who
goes first from round to round, and the table gives each stage's median over the rounds and
the ratio of the medians. With ``--profile`` XLA's compile runs under ``jax.profiler`` and the
table adds how many kernels XLA's CPU backend compiled one by one and their summed time
(over its threads): on CPU each costs a few milliseconds whatever its size.

"start" is how long each process ran before tracing began (interpreter, imports, JAX's
backend, building the work; `peer_common.process_age`): what a fresh process or notebook
kernel pays once before its first compile, given next to compile for that reason.

Writes ``compile_time.{json,md}`` under ``--out`` (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import machine as machine_info
import numpy as np
import peers

DEFAULT_CASES = ("cartpole-s1", "cartpole-s8", "cartpole-256envs", "pendulum",
                 "breakout-minatar")
STAGES = ("trace_s", "lower_s", "xla_s", "compile_s")


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(float(np.median(values)), 3) if values else None


def rows(results: list[dict], cases: list[peers.Case]) -> list[dict]:
    out = []
    for case in cases:
        row = {"case": case.name, "title": case.title}
        for peer in ("jaxppo", "rejax"):
            runs = [r for r in results if r["case"] == case.name and r["peer"] == peer
                    and not r.get("error")]
            row[peer] = {key: median(runs, key) for key in (*STAGES, "start_s", "kernel_ms")}
            kernels = median(runs, "kernels")
            row[peer]["kernels"] = None if kernels is None else round(kernels)
            row[peer]["rounds"] = len(runs)
        ours, theirs = row["jaxppo"], row["rejax"]
        row["ratio"] = {key: peers.ratio(ours[key], theirs[key]) for key in ("xla_s", "compile_s")}
        row["ratio"]["start_and_compile"] = peers.ratio(_start_and_compile(ours),
                                                        _start_and_compile(theirs))
        out.append(row)
    return out


def _start_and_compile(stages: dict) -> float | None:
    if stages["start_s"] is None or stages["compile_s"] is None:
        return None
    return round(stages["start_s"] + stages["compile_s"], 3)


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [
        "# Compile time, jaxppo against rejax",
        "",
        machine_info.header(machine, result["loadavg_before"], result["loadavg_after"]),
        f"`{result['command']}`: {result['rounds']} round(s), one fresh process per peer and "
        "round, medians over the rounds (seconds). compile = trace + lower + XLA.",
        "",
    ]
    profiled = any(row["jaxppo"]["kernels"] for row in result["rows"])
    head = ("| case | jaxppo trace / lower / XLA | compile | rejax trace / lower / XLA | compile "
            "| XLA jaxppo/rejax | compile jaxppo/rejax | start jaxppo / rejax "
            "| start + compile jaxppo/rejax |")
    rule = "|---|---|---:|---|---:|---:|---:|---|---:|"
    if profiled:
        head += " jaxppo kernels (ms) | rejax kernels (ms) |"
        rule += "---:|---:|"
    lines += [head, rule]
    for row in result["rows"]:
        cells = [row["title"]]
        for peer in ("jaxppo", "rejax"):
            r = row[peer]
            cells += [f"{r['trace_s']} / {r['lower_s']} / {r['xla_s']}", f"{r['compile_s']}"]
        cells += [f"{row['ratio']['xla_s']}", f"**{row['ratio']['compile_s']}**",
                  f"{row['jaxppo']['start_s']} / {row['rejax']['start_s']}",
                  f"{row['ratio']['start_and_compile']}"]
        if profiled:
            cells += [f"{row[p]['kernels']} ({row[p]['kernel_ms']})" for p in ("jaxppo", "rejax")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", f"Versions: jax {machine['jax']}; the peers' environments as in `peers.md`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES))
    parser.add_argument("--profile", action="store_true",
                        help="count the kernels XLA compiles (compile under jax.profiler)")
    parser.add_argument("--venv-dir", default=str(peers.BENCH / ".venvs"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per subprocess")
    parser.add_argument("--out", default=str(peers.BENCH / "results"))
    args = parser.parse_args()
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be at least 1")
    if args.timeout <= 0:
        parser.error(f"--timeout {args.timeout}: must be a number of seconds > 0")
    known = {case.name: case for case in peers.grid()}
    unknown = [name for name in args.cases if name not in known]
    if unknown:
        parser.error(f"--cases {' '.join(unknown)}: not in the grid; known: "
                     f"{', '.join(known)}")
    cases = [known[name] for name in args.cases]
    pythons = {"jaxppo": sys.executable,
               "rejax": str(peers.venv_python(pathlib.Path(args.venv_dir), "rejax"))}
    env = peers.peer_env()
    before, started = machine_info.loadavg(), time.time()
    results = []
    for case in cases:
        for round_ in range(args.rounds):
            order = ("jaxppo", "rejax") if round_ % 2 == 0 else ("rejax", "jaxppo")
            for peer in order:
                spec = {"case": case.name, "seeds": case.seeds, "repeats": 1,
                        "hparams": peers.hparams(case.config), "cores": case.cores,
                        "compile_only": True, "profile": args.profile}
                r = peers.run_peer(pythons[peer], peer, spec, args.timeout, env)
                r["round"] = round_
                print(f"{case.name} / {peer} (round {round_ + 1}): "
                      + json.dumps({k: r.get(k) for k in (*STAGES, "kernels", "error")}),
                      file=sys.stderr, flush=True)
                results.append(r)
    result = {
        "benchmark": "compile time by stage, jaxppo against rejax, fresh processes",
        "command": " ".join(["python", "bench/compile_time.py", *sys.argv[1:]]),
        "rounds": args.rounds, "profile": args.profile,
        "machine": machine_info.describe(),
        "loadavg_before": before, "loadavg_after": machine_info.loadavg(),
        "wall_s": round(time.time() - started, 1),
        "rows": rows(results, cases), "results": results,
    }
    text = markdown(result)
    machine_info.write(args.out, "compile_time", result, text.splitlines())
    print(text)


if __name__ == "__main__":
    main()
