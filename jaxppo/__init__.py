"""jaxppo: a pure-functional PPO trainer in JAX.

    state, metrics = jax.jit(jaxppo.train)(jaxppo.Config(), jax.random.key(0))
"""

import os as _os

# XLA's CPU runtime (jaxlib 0.10) hung, all threads idle, on vmapped whole-run programs. The
# cause was found later: a batched LAPACK QR (the orthogonal init under vmap) blocks threads of
# the pool it hands its parts to; `networks.init` now runs vmapped inits one after another.
# This flag, which made the hang rarer, stays as a guard (its speed cost was within noise).
# It is read when the CPU backend starts, so it must be set before the first computation; it
# is a CPU-only flag. Set JAXPPO_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS untouched.
_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if not _os.environ.get("JAXPPO_KEEP_XLA_FLAGS") and "concurrency_optimized" not in _os.environ.get(
    "XLA_FLAGS", ""
):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

from jaxppo import envs, experiment, memory, stats  # noqa: E402
from jaxppo.config import PRESETS, Config, preset, stack_configs, validate  # noqa: E402
from jaxppo.evaluation import EvalResult, LoadedPolicy, evaluate, load  # noqa: E402
from jaxppo.sweep import SweepResult, grid, random_search, run_sharded, sweep  # noqa: E402
from jaxppo.train import Metrics, TrainState, init, step, train  # noqa: E402

__all__ = [
    "Config",
    "PRESETS",
    "Metrics",
    "TrainState",
    "EvalResult",
    "LoadedPolicy",
    "envs",
    "evaluate",
    "experiment",
    "load",
    "memory",
    "stats",
    "init",
    "preset",
    "stack_configs",
    "step",
    "SweepResult",
    "grid",
    "random_search",
    "run_sharded",
    "sweep",
    "train",
    "validate",
]
__version__ = "0.1.0"
