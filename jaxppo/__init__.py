"""jaxppo: a pure-functional PPO trainer in JAX.

    state, metrics = jax.jit(jaxppo.train)(jaxppo.Config(), jax.random.key(0))
"""

from jaxppo import envs, experiment, memory, rundir, spec, stats
from jaxppo.cache import use_compile_cache
from jaxppo.config import Config, stack_configs
from jaxppo.devices import use_cpu_cores
from jaxppo.evaluation import EvalResult, LoadedPolicy, evaluate, load
from jaxppo.presets import PRESETS, preset
from jaxppo.sweep import SweepResult, grid, random_search, run_sharded, sweep
from jaxppo.train import Metrics, TrainState, init, step, train, validate

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
    "rundir",
    "run_sharded",
    "spec",
    "sweep",
    "train",
    "use_compile_cache",
    "use_cpu_cores",
    "validate",
]
__version__ = "0.1.0"
