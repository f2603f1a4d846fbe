"""A/B of two versions of jaxppo on whole runs: a git revision against the working tree.

    python bench/ab.py --base HEAD~1                     # CartPole classic, 1 seed, 20% of 500k
    python bench/ab.py --base HEAD~1 --seeds 8 --fraction 0.05 --pairs 3
    python bench/ab.py --base HEAD~1 --env Pendulum-v1 --fraction 0.1
    python bench/ab.py --base HEAD~1 --num-envs 256 --fraction 0.25   # the preset with 256 envs
    python bench/ab.py --base HEAD --new-xla-flags=--xla_cpu_use_xnnpack=false   # a flag's cost

The base revision is checked out into a temporary git worktree. Each pair runs the base and
then the working tree, each in a fresh process (``PYTHONPATH`` picks the version) that
compiles ``jit(vmap(train))`` once and times ``--repeats`` calls. Alternating the two in
back-to-back processes is what makes the ratio trustworthy on a shared machine, where a whole
run's time can move by 1.5x between two minutes. Prints one line per process and the median
over pairs of (base time / new time): above 1 means the working tree is faster. The learning
result (IQM of the final returns) is printed next to each, so a faster run that learns
differently shows.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def child(env_id: str, seeds: int, fraction: float, repeats: int, num_envs: int) -> None:
    import time

    import jax
    import numpy as np

    import jaxppo
    from jaxppo import stats

    config = jaxppo.preset(env_id)
    if num_envs:
        config = config.replace(num_envs=num_envs)
    config = config.replace(total_timesteps=max(config.batch_size,
                                                int(config.total_timesteps * fraction)))
    keys = jax.random.split(jax.random.key(0), seeds)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0))).lower(config, keys).compile()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _, metrics = jax.block_until_ready(compiled(config, keys))
        times.append(time.perf_counter() - start)
    finals = stats.final_returns(np.asarray(metrics.episode_return))
    print(json.dumps({"jaxppo": jaxppo.__file__, "compile_s": compile_s,
                      "run_s": float(np.median(times)), "iqm": float(stats.iqm(finals))}))


def run(tree: pathlib.Path, args, xla_flags: str | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    command = [sys.executable, __file__, "--child", "--env", args.env, "--seeds",
               str(args.seeds), "--fraction", str(args.fraction), "--repeats", str(args.repeats),
               "--num-envs", str(args.num_envs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True,
                          cwd=tempfile.gettempdir())
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not out["jaxppo"].startswith(str(tree)):
        raise RuntimeError(f"imported {out['jaxppo']}, not the tree {tree}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare against")
    parser.add_argument("--env", default="CartPole-v1", help="a jaxppo.preset env id")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--num-envs", type=int, default=0, help="envs per run (0: the preset's)")
    parser.add_argument("--fraction", type=float, default=0.2, help="of the preset's timesteps")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per process")
    parser.add_argument("--new-xla-flags", default=None,
                        help="XLA_FLAGS for the working tree's processes only (with --base "
                             "HEAD: the cost of a flag)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("pairs", "repeats", "seeds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be at least 1")
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction {args.fraction}: must be in (0, 1]")
    if args.num_envs < 0:
        parser.error(f"--num-envs {args.num_envs}: must be 0 (the preset's) or a positive count")
    if args.child:
        child(args.env, args.seeds, args.fraction, args.repeats, args.num_envs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        args.base], check=True, capture_output=True)
        try:
            ratios = []
            for pair in range(args.pairs):
                a, b = run(base, args), run(ROOT, args, args.new_xla_flags)
                ratios.append(a["run_s"] / b["run_s"])
                for name, r in (("base", a), ("new", b)):
                    print(f"pair {pair + 1} {name:4s} compile {r['compile_s']:6.2f} s  run "
                          f"{r['run_s']:7.3f} s  IQM {r['iqm']:8.2f}", flush=True)
            ratios.sort()
            envs = f", {args.num_envs} envs" if args.num_envs else ""
            print(f"{args.env}{envs}, {args.seeds} seed(s), {args.fraction:g} of the run: "
                  f"base / new run time, median over {args.pairs} pairs: "
                  f"{statistics.median(ratios):.3f} "
                  f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)})")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False, capture_output=True)


if __name__ == "__main__":
    main()
