"""jaxppo: a pure-functional PPO trainer in JAX.

    state, metrics = jax.jit(jaxppo.train)(jaxppo.Config(), jax.random.key(0))
"""

from jaxppo import envs, experiment, memory, stats
from jaxppo.cache import use_compile_cache
from jaxppo.config import PRESETS, Config, preset, stack_configs, validate
from jaxppo.devices import use_cpu_cores
from jaxppo.evaluation import EvalResult, LoadedPolicy, evaluate, load
from jaxppo.sweep import SweepResult, grid, random_search, run_sharded, sweep
from jaxppo.train import Metrics, TrainState, init, step, train

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
    "use_compile_cache",
    "use_cpu_cores",
    "validate",
]
__version__ = "0.1.0"
