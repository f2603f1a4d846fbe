"""What every peer runner shares: read the work spec, time a compiled call, print one JSON line.

Runners (``peer_jaxppo.py``, ``peer_rejax.py``, ``peer_sb3.py``) each run in their own Python
environment, so this module imports nothing beyond the standard library at import time.

A work spec is a JSON object passed as the runner's only argument:

    {"case": "cartpole-classic-s8", "seeds": 8, "repeats": 3, "hparams": {...}}

where ``hparams`` holds every field of the jaxppo Config of the case (so each peer maps the
same numbers onto its own options).
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def read_spec() -> dict:
    """The work spec of argv[1]."""
    return json.loads(sys.argv[1])


def time_jitted(fn, args: tuple, repeats: int) -> tuple[dict, object]:
    """Compile ``fn`` (a jax.jit-wrapped function) for ``args``, then run it ``repeats`` times.

    Returns:
        ({"compile_s", "run_s_all", "run_s_median"}, the output of the first compiled call).
        compile_s is lower + compile; every run ends with block_until_ready.
    """
    import jax

    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    runs, first = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - start)
        if first is None:
            first = out
    timing = {"compile_s": round(compile_s, 3), "run_s_all": [round(r, 3) for r in runs],
              "run_s_median": round(statistics.median(runs), 3)}
    return timing, first


def emit(result: dict) -> None:
    """Print the runner's result as one JSON line on stdout (the orchestrator reads the last)."""
    print(json.dumps(result), flush=True)
