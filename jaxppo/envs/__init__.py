"""Environments: the only package that knows gymnax.

`make(env_id)` returns a jaxppo env (see `core.GymnaxEnv`) for any id of the gymnax registry
or of jaxppo's probe environments (`probes`). Envs are cached per id, so the same object (a
static value for jit) comes back every time.

gymnax is imported on first use, not with jaxppo: importing it runs a JAX operation, which
fixes JAX's CPU device count, and `jaxppo.use_cpu_cores` must be able to run after
``import jaxppo``. It is imported with seaborn and matplotlib.pyplot deferred (`_gymnax`).
"""

from __future__ import annotations

import difflib
import functools
import importlib.machinery
import importlib.util
import sys
import types

import jax

from jaxppo import config as config_lib
from jaxppo.envs import core
from jaxppo.envs.core import ActionSpace, GymnaxEnv, Step

__all__ = ["DOWNLOADS", "ActionSpace", "GymnaxEnv", "Step", "check", "closest_ids", "make",
           "registered"]

# The ids of `probes.PROBES`, known without importing gymnax (a test checks they agree).
PROBE_IDS = ("ProbeValue-v0", "ProbeDiscount-v0", "ProbeTruncation-v0", "ProbePolicy-v0",
             "ProbeContinuous-v0", "ProbeMasked-v0", "ProbeMemory-v0", "ProbeMultiDiscrete-v0",
             "ProbeImage-v0")

# The ids whose first `make` downloads data (gymnax fetches it), and what it fetches.
DOWNLOADS = {"MNISTBandit-bsuite": "the MNIST data set (to /tmp/mnist)"}


# Imported by gymnax's environment modules at import time but used only to render, which jaxppo
# never does; seaborn alone (scipy.stats, pandas) is 1 s of a fresh process's first `make`.
_RENDERING_MODULES = ("seaborn", "matplotlib.pyplot")


class _Deferred(types.ModuleType):
    """Stands in for a module in gymnax's namespaces: imports it on first use, then forwards."""

    def __getattr__(self, attribute: str):
        return getattr(importlib.import_module(self.__name__), attribute)


def _gymnax():
    """gymnax, imported without loading `_RENDERING_MODULES`.

    Each of them not imported yet stands as a `_Deferred` module in ``sys.modules`` while
    gymnax imports, and is taken out again right after: gymnax's modules keep the stand-in,
    which imports the real module the first time they use it (to render), and everyone
    else's ``import seaborn`` finds the real one, as without jaxppo.
    """
    if "gymnax" in sys.modules:
        return sys.modules["gymnax"]
    stand_ins = {}
    for name in _RENDERING_MODULES:
        if name not in sys.modules and _installed(name):
            stand_ins[name] = _Deferred(name)
            stand_ins[name].__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules.update(stand_ins)
    try:
        import gymnax
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return gymnax


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def registered() -> tuple[str, ...]:
    """Every env id `make` accepts: gymnax's registry, then the probe environments."""
    gymnax = _gymnax()

    return tuple(gymnax.registered_envs) + PROBE_IDS


def closest_ids(env_id: str) -> list[str]:
    """Up to 3 known ids closest to ``env_id`` (difflib), best first: for "did you mean"."""
    return difflib.get_close_matches(env_id, registered(), n=3)


@functools.cache
def make(env_id: str) -> core.GymnaxEnv:
    """The env for ``env_id`` with its default parameters.

    Raises:
        ValueError: for an unknown id (the message suggests the closest ids and lists
            the known ones), or an env whose data could not be downloaded (`DOWNLOADS`).
    """
    gymnax = _gymnax()

    from jaxppo.envs import probes

    # Some envs build arrays in __init__ (MinAtar's); made while a caller traces (a first
    # `jax.jit(jaxppo.train)`), the cached env would hold tracers of that one trace.
    with jax.ensure_compile_time_eval():
        return _make(gymnax, probes, env_id)


def _make(gymnax, probes, env_id: str) -> core.GymnaxEnv:
    if env_id in probes.PROBES:
        env = probes.PROBES[env_id]()
        return core.GymnaxEnv(env_id, env, env.default_params)
    if env_id not in gymnax.registered_envs:
        close = closest_ids(env_id)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        known = ", ".join(registered())
        raise ValueError(f"unknown env_id {env_id!r}; {hint}known environments: {known}")
    try:
        env, params = gymnax.make(env_id)
    except (OSError, EOFError) as error:  # a failed or cut download (URLError is an OSError)
        if env_id not in DOWNLOADS:
            raise
        cause = getattr(error, "reason", None) or error
        raise ValueError(f"env_id {env_id!r} could not be created: it downloads "
                         f"{DOWNLOADS[env_id]} on first use, which failed ({cause}); run it "
                         "once with network access or choose another env") from None
    return core.GymnaxEnv(env_id, env, params)


def check(config) -> None:
    """Check ``config`` against its environment; a `ValueError` names the bad field.

    The checks `jaxppo.config.validate` cannot make without the env: the action distribution
    against the action space, squash_mean and temperature against it, action_masking against
    the env's masks (their shape too). The network's checks against the observations are
    `jaxppo.networks.check`'s.
    """
    env = make(config.env_id)
    space = env.action_space
    discrete = space.discrete
    kind = ("multi_discrete" if space.multi_discrete else "categorical") if discrete \
        else "gaussian"
    if config.action_dist not in ("auto", kind):
        described = {"multi_discrete": f"a multi-discrete action space {space.nvec}",
                     "categorical": "a discrete action space",
                     "gaussian": "a continuous action space"}[kind]
        config_lib.fail("action_dist", config.action_dist,
                        f"{config.env_id} has {described}, so it needs {kind!r} (or 'auto')")
    if config.squash_mean and discrete:
        config_lib.fail("squash_mean", True, f"applies to continuous actions only; "
                        f"{config.env_id} has discrete actions")
    if config.action_masking:
        _check_masks(config, env)
    if not discrete:
        config_lib.check_range(config, "temperature", 1.0, 1.0,
                               f"applies to discrete actions only; {config.env_id} has "
                               "continuous actions, so it must stay 1.0")


def _check_masks(config, env) -> None:
    if not env.has_action_mask:
        config_lib.fail("action_masking", True, f"{config.env_id} provides no action masks (an "
                        "env provides them with an action_mask(state, params) method, as "
                        "ProbeMasked-v0 does)")
    state = jax.eval_shape(env.reset, jax.random.key(0))[1]
    shape = tuple(jax.eval_shape(env.action_mask, state).shape)
    expected = (env.action_space.num_actions,)
    if shape != expected:
        config_lib.fail("action_masking", True,
                        f"{config.env_id}'s action_mask gives shape {list(shape)}, but its "
                        f"action space needs one flag per action, {list(expected)}")
