"""Search settings for one env with jaxppo's own sweep: every setting x 8 seeds in one call.

    python bench/zoo_search.py MountainCar-v0 --static '{"normalize_obs": true}' \\
        --grid ent_coef=0,0.01 gae_lambda=0.95,0.98 --steps 1000000
    python bench/zoo_search.py Acrobot-v1 --random learning_rate=log:1e-4:3e-3 --settings 16

The base config is `jaxppo.preset(env)` with --static's fields replaced (static fields, such as
sizes and switches, are one program; --steps sets total_timesteps). The space is a grid
(FIELD=V1,V2,...) or a random search (FIELD=LOW:HIGH, FIELD=log:LOW:HIGH, --settings draws);
its fields are Config's float fields, traced, so the whole search is one compile. All settings
x --seeds seeds train in one `jaxppo.sweep` call over one CPU device per core.

Each setting is scored by the IQM over seeds of the final training return (`stats.final_returns`
over the zoo's window, `zoo.score_window`) with its 95% interval, and ranked by the interval's
lower end, which prefers settings that work for every seed over a lucky best. The search's
base, space, budget, command, time and every seed's score go to OUT/NAME.{json,md} (NAME:
--name, default the env id), under bench/results/zoo/search by default.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys
import time

import jax
import machine  # bench/machine.py
import numpy as np
import zoo  # bench/zoo.py: its training score

import jaxppo
from jaxppo import stats

RESULTS = machine.ROOT / "bench" / "results" / "zoo" / "search"


def parse_space(grid: list[str], random: list[str], settings: int, seed: int
                ) -> tuple[dict[str, np.ndarray], dict]:
    """(the table of settings, the space as written) from --grid or --random."""
    if bool(grid) == bool(random):
        raise SystemExit("zoo_search: give exactly one of --grid and --random")
    written: dict = {}
    for item in grid or random:
        name, sep, spec = item.partition("=")
        if not sep or not spec:
            raise SystemExit(f"zoo_search: {item!r}: expected FIELD=VALUES")
        try:
            if grid:
                written[name] = [float(v) for v in spec.split(",")]
            else:
                log = spec.startswith("log:")
                low, high = spec.removeprefix("log:").split(":")  # ValueError unless two
                written[name] = ("log", float(low), float(high)) if log else (float(low),
                                                                              float(high))
        except ValueError:
            raise SystemExit(f"zoo_search: {item!r}: expected numbers, as in ent_coef=0,0.01 "
                             "or learning_rate=log:1e-4:1e-3") from None
    try:
        table = (jaxppo.grid(written) if grid
                 else jaxppo.random_search(written, settings, seed=seed))
    except (TypeError, ValueError) as error:
        raise SystemExit(f"zoo_search: {error}") from None
    return table, written


def markdown(result: dict) -> list[str]:
    m = result["machine"]
    lines = [
        f"# Search: {result['env_id']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['device']}; jax {m['jax']}. "
        f"{result['train_s']} s for {result['settings']} settings x {result['seeds']} seeds "
        f"at {result['env_steps']:,} env steps each.",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Base: `jaxppo.preset({result['env_id']!r})` with {json.dumps(result['static'])}.",
        f"Space: {json.dumps(result['space'])}.",
        "",
        "Ranked by the lower end of the 95% interval of the IQM over seeds of the final "
        f"training return (each seed's mean over its last {result.get('window', 10)} "
        "updates).",
        "",
        "| rank | " + " | ".join(result["fields"]) + " | IQM [95% CI] | seeds' range |",
        "|---:|" + "---:|" * len(result["fields"]) + "---|---|",
    ]
    for rank, row in enumerate(result["ranking"], 1):
        final = np.asarray(row["final"], np.float64)
        spread = (f"{np.nanmin(final):.1f} to {np.nanmax(final):.1f}"
                  if not np.isnan(final).all() else "no episode ended")
        cell = stats.format_ci(row["aggregate"]["iqm"]) if row["aggregate"] else "n/a"
        values = " | ".join(f"{row['setting'][f]:.4g}" for f in result["fields"])
        lines.append(f"| {rank} | {values} | {cell} | {spread} |")
    return lines


def output_name(env_id: str, name: str | None) -> str:
    """The results' file name: ``name``, else the env id with a suite's "/" as "_"."""
    chosen = name or env_id.replace("/", "_")
    if "/" in chosen or not chosen.strip("."):
        raise SystemExit(f"zoo_search: --name {name!r} must be a file name, without '/'")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("--static", default="{}",
                        help="JSON object of Config fields replaced in the preset")
    parser.add_argument("--steps", type=int, help="total_timesteps (default: the preset's)")
    parser.add_argument("--grid", nargs="+", default=[], metavar="FIELD=V1,V2")
    parser.add_argument("--random", nargs="+", default=[], metavar="FIELD=[log:]LOW:HIGH")
    parser.add_argument("--settings", type=int, default=16, help="random settings (16)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--name", help="output name (default: the env id, '/' as '_')")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.seeds < 1 or args.settings < 1 or (args.steps is not None and args.steps < 1):
        raise SystemExit(f"zoo_search: --seeds {args.seeds}, --settings {args.settings} and "
                         f"--steps {args.steps} must be >= 1")
    name = output_name(args.env_id, args.name)
    jaxppo.use_cpu_cores()
    if not jaxppo.envs.is_known(args.env_id):
        raise SystemExit(f"zoo_search: unknown env id {args.env_id!r}; `jaxppo envs` lists "
                         "them")
    try:
        static = json.loads(args.static)
        if args.steps is not None:
            static["total_timesteps"] = args.steps
        static = {k: tuple(v) if isinstance(v, list) else v for k, v in static.items()}
        config = jaxppo.validate(jaxppo.preset(args.env_id).replace(**static))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
        raise SystemExit(f"zoo_search: --static {args.static!r}: {error}") from None
    table, written = parse_space(args.grid, args.random, args.settings, seed=0)
    start = time.perf_counter()
    result = jaxppo.sweep(config, table, seeds=args.seeds, key=jax.random.key(0))
    train_s = round(time.perf_counter() - start, 1)
    returns = np.asarray(result.metrics.episode_return, np.float64)  # [H, S, U]
    window = zoo.score_window(config, returns.reshape(-1, returns.shape[-1]))
    final = stats.final_returns(returns, window)  # [H, S]
    rows = []
    for h in range(result.num_settings):
        finite = final[h][~np.isnan(final[h])]
        rows.append({
            "setting": {f: float(v[h]) for f, v in result.settings.items()},
            "final": [float(x) for x in final[h]],
            "aggregate": stats.aggregate(finite) if finite.size == final.shape[1] else None,
        })
    rows.sort(key=lambda r: -np.inf if r["aggregate"] is None
              else r["aggregate"]["iqm"]["ci_low"], reverse=True)
    out = {
        "env_id": args.env_id, "static": {k: list(v) if isinstance(v, tuple) else v
                                          for k, v in static.items()},
        "space": written, "fields": list(result.settings), "settings": result.num_settings,
        "seeds": args.seeds, "env_steps": config.num_updates * config.batch_size,
        "window": window,
        "train_s": train_s, "ranking": rows, "machine": machine.describe(),
        "command": "python bench/zoo_search.py " + shlex.join(sys.argv[1:]),
    }
    machine.write(pathlib.Path(args.out), name, out, markdown(out))
    print("\n".join(markdown(out)))


if __name__ == "__main__":
    main()
