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
import os
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


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc; elsewhere None), to 10 ms."""
    try:
        with open("/proc/self/stat") as f:
            # Field 22, the start time in clock ticks after boot; the command name (field 2,
            # in parentheses) may hold spaces, so count from the closing parenthesis.
            started = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return uptime - started / os.sysconf("SC_CLK_TCK")


def compile_split(fn, args: tuple, profile: bool = False) -> dict:
    """Compile ``fn`` (a jax.jit-wrapped function) for ``args`` in its three stages, timed
    apart: tracing to a jaxpr, lowering to StableHLO, and XLA's compile.

    ``start_s`` is how long the process ran before tracing began: the interpreter, the
    imports, JAX's backend and the peer's setup of the work (None off Linux); a user pays it
    once per fresh process or notebook kernel.

    With ``profile`` the XLA compile runs under ``jax.profiler`` (a little slower) and the
    result also counts the kernels XLA's CPU backend compiled one by one
    (``FusionCompiler::Compile`` events) with their summed time over its threads.
    """
    import jax

    age = process_age()
    start = time.perf_counter()
    traced = fn.trace(*args)
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    if profile:
        events = _profiled(lowered.compile)
    else:
        lowered.compile()
    done = time.perf_counter()
    out = {"trace_s": round(traced_at - start, 3), "lower_s": round(lowered_at - traced_at, 3),
           "xla_s": round(done - lowered_at, 3), "compile_s": round(done - start, 3),
           "start_s": None if age is None else round(age, 2), "jax": jax.__version__}
    if profile:
        kernels = [e for e in events if e["name"] == "FusionCompiler::Compile"]
        out["kernels"] = len(kernels)
        out["kernel_ms"] = round(sum(e["dur"] for e in kernels) / 1e3, 1)
    return out


def emit_compile_split(peer: str, spec: dict, fn, args: tuple) -> None:
    """`compile_split` of ``fn`` for ``args`` as the runner's result line (a work spec with
    ``"compile_only": true``; ``"profile"`` is passed on)."""
    emit({"peer": peer, "case": spec["case"], "seeds": spec["seeds"],
          **compile_split(fn, args, spec.get("profile", False))})


def _profiled(thunk) -> list[dict]:
    """Run ``thunk`` under jax.profiler; its complete ("X") trace events."""
    import gzip
    import pathlib
    import tempfile

    import jax

    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            thunk()
        path = next(pathlib.Path(folder).rglob("perfetto_trace.json.gz"))
        trace = json.loads(gzip.decompress(path.read_bytes()))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    return [e for e in events if e.get("ph") == "X"]


def emit(result: dict) -> None:
    """Print the runner's result as one JSON line on stdout (the orchestrator reads the last)."""
    print(json.dumps(result), flush=True)
