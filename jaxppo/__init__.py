"""jaxppo: a pure-functional PPO trainer in JAX.

    state, metrics = jax.jit(jaxppo.train)(jaxppo.Config(), jax.random.key(0))
"""

from jaxppo import envs
from jaxppo.config import Config, stack_configs, validate
from jaxppo.train import Metrics, TrainState, init, step, train

__all__ = [
    "Config",
    "Metrics",
    "TrainState",
    "envs",
    "init",
    "stack_configs",
    "step",
    "train",
    "validate",
]
__version__ = "0.1.0"
