"""Environments: the only package that knows gymnax.

`make(env_id)` returns a jaxppo env (see `core.GymnaxEnv`) for any id of the gymnax registry
or of jaxppo's probe environments (`probes`). Envs are cached per id, so the same object (a
static value for jit) comes back every time.

gymnax is imported on first use, not with jaxppo: importing it runs a JAX operation, which
fixes JAX's CPU device count, and `jaxppo.use_cpu_cores` must be able to run after
``import jaxppo``.
"""

from __future__ import annotations

import functools

from jaxppo.envs import core
from jaxppo.envs.core import ActionSpace, GymnaxEnv, Step

__all__ = ["ActionSpace", "GymnaxEnv", "Step", "make", "registered"]

# The ids of `probes.PROBES`, known without importing gymnax (a test checks they agree).
PROBE_IDS = ("ProbeValue-v0", "ProbeDiscount-v0", "ProbeTruncation-v0", "ProbePolicy-v0",
             "ProbeContinuous-v0", "ProbeMasked-v0")


def registered() -> tuple[str, ...]:
    """Every env id `make` accepts: gymnax's registry, then the probe environments."""
    import gymnax

    return tuple(gymnax.registered_envs) + PROBE_IDS


@functools.cache
def make(env_id: str) -> core.GymnaxEnv:
    """The env for ``env_id`` with its default parameters.

    Raises:
        ValueError: for an unknown id; the message lists the known ids.
    """
    import gymnax

    from jaxppo.envs import probes

    if env_id in probes.PROBES:
        env = probes.PROBES[env_id]()
        return core.GymnaxEnv(env_id, env, env.default_params)
    if env_id not in gymnax.registered_envs:
        known = ", ".join(registered())
        raise ValueError(f"unknown env_id {env_id!r}; known environments: {known}")
    env, params = gymnax.make(env_id)
    return core.GymnaxEnv(env_id, env, params)
