"""The minibatch permutation: ``jax.random.permutation`` against jaxppo's two.

    python bench/permutation.py        # writes bench/results/permutation.{json,md}

One permutation of n elements per step of a jitted ``lax.scan`` (as an epoch's shuffle runs
inside the training loop), for the batch sizes of the presets: 512 (CartPole's classic 4 envs x
128 steps), 2,048 (Pendulum's 16 x 128), 8,192 and 32,768 (256 envs x 128 steps), and 30,000
(not a power of two: the bijection's values past n are left out). ``jaxppo.prng.permutation`` is
``sort_permutation`` up to 256 elements and ``bijective_permutation`` above, so at these sizes
it is the latter; the sort is timed too. Time per permutation: the median of --repeats calls of
the scan / its length. The functions are timed round-robin, each call after the others'.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import jax
import machine as machine_info  # bench/machine.py

from jaxppo import prng

SIZES = (512, 2048, 8192, 32768, 30000)
FUNCTIONS = {"jax.random.permutation": jax.random.permutation,
             "jaxppo.prng.sort_permutation": prng.sort_permutation,
             "jaxppo.prng.bijective_permutation": prng.bijective_permutation}


def scanned(fn, n: int, length: int):
    def body(carry, key):
        return carry, fn(key, n)

    return jax.jit(lambda key: jax.lax.scan(body, 0, jax.random.split(key, length))[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args()
    machine_info.jaxppo_source()  # a stale jaxppo is refused before, not after, the runs
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: must be at least 1")
    key = jax.random.key(0)
    load_before = machine_info.loadavg()
    rows = []
    for n in SIZES:
        length = max(10, 51_200 // n)
        fns = {name: scanned(fn, n, length) for name, fn in FUNCTIONS.items()}
        for fn in fns.values():
            jax.block_until_ready(fn(key))  # compile
        times = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(key))
                times[name].append((time.perf_counter() - start) / length)
        us = {name: round(1e6 * statistics.median(t), 1) for name, t in times.items()}
        jax_us = us["jax.random.permutation"]
        rows.append({"n": n, "scan_length": length, "us_per_permutation": us,
                     "speedup_over_jax": {name: round(jax_us / t, 2) for name, t in us.items()
                                          if name != "jax.random.permutation"}})
    load_after = machine_info.loadavg()
    result = {"benchmark": "one random permutation of n elements inside a jitted scan",
              "machine": machine_info.describe(), "loadavg_before": load_before,
              "loadavg_after": load_after, "repeats": args.repeats, "rows": rows}
    lines = [f"# {result['benchmark']}", "",
             f"{machine_info.header(result['machine'], load_before, load_after)} Median of "
             f"{args.repeats} calls.", "",
             "| n | jax.random.permutation (us) | sort_permutation (us) | "
             "bijective_permutation (us) | sort / jax speed-up | bijective / jax speed-up |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        us, up = row["us_per_permutation"], row["speedup_over_jax"]
        lines.append(f"| {row['n']:,} | {us['jax.random.permutation']:,} | "
                     f"{us['jaxppo.prng.sort_permutation']:,} | "
                     f"{us['jaxppo.prng.bijective_permutation']:,} | "
                     f"{up['jaxppo.prng.sort_permutation']}x | "
                     f"{up['jaxppo.prng.bijective_permutation']}x |")
    machine_info.write(args.out, "permutation", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
