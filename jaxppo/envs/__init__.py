"""Environments: the only package that imports an environment suite.

`make(env_id)` returns a jaxppo env for any id of the gymnax registry (bare ids, as
"CartPole-v1"; `core.GymnaxEnv`), of jaxppo's probe environments (`probes`), of another suite
("suite/Name", as "navix/Navix-Empty-5x5-v0"; one adapter module per suite in `SUITES`, each
built on `core.SuiteEnv` and imported on first use), or registered by the user (`register`,
or a package's ``jaxppo.envs`` entry point). Envs are cached per id, so the same object (a
static value for jit) comes back every time.

A suite that is not installed is one line naming the extra that brings it
(``pip install "jaxppo[navix]"``).

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
import typing

import jax

from jaxppo import config as config_lib
from jaxppo.envs import core
from jaxppo.envs.core import ActionSpace, GymnaxEnv, Step, SuiteEnv, step_batch


class Suite(typing.NamedTuple):
    """One suite beyond gymnax: its adapter module, the module it imports (to tell whether
    it is installed) and the extra that installs it."""

    adapter: str
    package: str
    extra: str


# The id prefix "suite/" -> how to reach the suite. Each adapter module gives
# ``ids() -> tuple[str, ...]`` (names after the prefix) and ``make(name) -> SuiteEnv``, and
# may give ``left_out() -> {name: why}`` for the suite's envs it does not offer.
SUITES: dict[str, Suite] = {
    "playground": Suite("jaxppo.envs.playground", "mujoco_playground", "playground"),
    "brax": Suite("jaxppo.envs.brax", "brax", "brax"),
    "jumanji": Suite("jaxppo.envs.jumanji", "jumanji", "jumanji"),
    "craftax": Suite("jaxppo.envs.craftax", "craftax", "craftax"),
    "navix": Suite("jaxppo.envs.navix", "navix", "navix"),
    "xminigrid": Suite("jaxppo.envs.xminigrid", "xminigrid", "xminigrid"),
}

__all__ = ["DOWNLOADS", "SUITES", "ActionSpace", "GymnaxEnv", "Step", "SuiteEnv", "catalog",
           "builtin_ids", "check", "check_params", "closest_ids", "is_known", "make", "make_for",
           "register", "registered", "step_batch", "unregister"]

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


def _suite_module(suite: str, env_id: str):
    """The adapter module of ``suite``; a ValueError naming the extra when the suite's
    package is not installed."""
    entry = SUITES[suite]
    if not _installed(entry.package):
        raise ValueError(f"env_id {env_id!r} is from {suite}, which is not installed; "
                         f"install it with: pip install \"jaxppo[{entry.extra}]\"")
    return importlib.import_module(entry.adapter)


def installed_suites() -> tuple[str, ...]:
    """The suites of `SUITES` whose package is installed."""
    return tuple(suite for suite, entry in SUITES.items() if _installed(entry.package))


def catalog() -> list[tuple[str, tuple[str, ...] | None, str | None]]:
    """(suite, its ids or None when not installed, the extra that installs it or None) per
    suite: "gymnax" (with the probes), each of `SUITES`, then "registered" (`register` and
    entry points) when there are any."""
    rows = [("gymnax", builtin_ids(), None)]
    for suite, entry in SUITES.items():
        ids = tuple(f"{suite}/{name}" for name in _suite_module(suite, suite).ids()) \
            if _installed(entry.package) else None
        rows.append((suite, ids, entry.extra))
    user = _user_ids()
    if user:
        rows.append(("registered", user, None))
    return rows


def builtin_ids() -> tuple[str, ...]:
    """gymnax's registry, then the probe environments: the ids known without another suite."""
    return tuple(_gymnax().registered_envs) + PROBE_IDS


def registered() -> tuple[str, ...]:
    """Every env id `make` accepts: gymnax's registry, the probe environments, the installed
    suites' ids, then the ids registered by the user or by entry points."""
    return tuple(env_id for _, ids, _ in catalog() for env_id in ids or ())


def is_known(env_id: str) -> bool:
    """Whether `make` knows ``env_id``, importing at most the one suite it names (a suite
    that is not installed: False)."""
    if env_id in _user_ids():
        return True
    suite, slash, name = env_id.partition("/")
    if slash and suite in SUITES:
        return suite in installed_suites() and name in _suite_module(suite, env_id).ids()
    return env_id in PROBE_IDS or env_id in _gymnax().registered_envs


# Envs registered by `register` (id -> env), and the ``jaxppo.envs`` entry points
# (id -> entry point), read once on first use.
_USER: dict[str, object] = {}
ENTRY_POINT_GROUP = "jaxppo.envs"


@functools.cache
def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def _user_ids() -> tuple[str, ...]:
    return tuple(_USER) + tuple(name for name in _entry_points() if name not in _USER)


def as_env(env_id: str, made):
    """What a user's factory made, as a jaxppo env: an adapter-shaped env (reset, step,
    action_space as `ActionSpace`, observation_shape) as it is; a gymnax-style env with its
    ``default_params``, or a pair (env, params), through `core.GymnaxEnv`."""
    if isinstance(made, tuple) and len(made) == 2:
        env, params = made
        return core.GymnaxEnv(env_id, env, params)
    if isinstance(getattr(made, "action_space", None), ActionSpace):
        return made
    if hasattr(made, "default_params") and callable(getattr(made, "step", None)):
        return core.GymnaxEnv(env_id, made, made.default_params)
    raise ValueError(f"the factory for env_id {env_id!r} returned {type(made).__name__}: "
                     "expected a gymnax-style environment (with default_params), a pair "
                     "(env, params), or an adapter-shaped env (a jaxppo.envs.SuiteEnv)")


def register(env_id: str, factory, *, overwrite: bool = False, check: bool = True):
    """Make ``env_id`` trainable by id, from Python and (in a process that registered it,
    or through a package's ``jaxppo.envs`` entry point) the command line.

    Args:
        env_id: the new id: not a gymnax, probe or suite id.
        factory: a callable of no arguments returning a gymnax-style environment (with
            ``default_params``), a pair (env, params), or an adapter-shaped env (see
            `core.SuiteEnv`).
        overwrite: replace an id registered before (here or by an entry point).
        check: run `checker.check_env` first (shapes, dtypes, flags, final observations,
            jit and vmap); a ValueError lists every problem found, one per line.

    Returns:
        The env, as `make(env_id)` will return it.
    """
    if not isinstance(env_id, str) or not env_id.strip() or env_id != env_id.strip():
        raise ValueError(f"env_id {env_id!r}: expected a non-empty name without surrounding "
                         "spaces")
    replaces = env_id in _USER or env_id in _entry_points()
    if replaces and not overwrite:
        raise ValueError(f"env_id {env_id!r} is already registered; pass overwrite=True to "
                         "replace it")
    suite = env_id.partition("/")[0]
    if env_id not in _USER and (env_id in PROBE_IDS or suite in SUITES
                                or env_id in _gymnax().registered_envs):
        raise ValueError(f"env_id {env_id!r} is taken by jaxppo's own environments; choose "
                         "another id")
    if not callable(factory):
        raise ValueError(f"factory for env_id {env_id!r}: expected a callable of no "
                         f"arguments, got {type(factory).__name__}")
    with jax.ensure_compile_time_eval():
        env = as_env(env_id, factory())
    if check:
        from jaxppo.envs import checker

        checker.check_env(env, env_id)
    _USER[env_id] = env
    make.cache_clear()
    if replaces:
        _forget_programs()
    return env


def unregister(env_id: str) -> None:
    """Forget an id `register` added (a KeyError for any other), and every program traced
    with its env (`jax.clear_caches`)."""
    del _USER[env_id]
    make.cache_clear()
    _forget_programs()


def _forget_programs() -> None:
    """Drop what was traced or estimated with an env an id no longer names: jit keys its
    traces by the config, hence by the id, not the env; so do the runner's compiled chunks
    and the memory estimate."""
    jax.clear_caches()
    for module, clear in (("jaxppo.experiment", "clear_compiled"), ("jaxppo.memory",
                                                                    "clear_estimates")):
        if module in sys.modules:
            getattr(sys.modules[module], clear)()


def closest_ids(env_id: str) -> list[str]:
    """Up to 3 known ids closest to ``env_id`` (difflib), best first: for "did you mean".
    Among gymnax's, the probes' and the registered ids, or the one suite ``env_id`` names
    (other suites are not imported: some take seconds)."""
    suite, slash, _ = env_id.partition("/")
    if slash and suite in installed_suites():
        ids = tuple(f"{suite}/{name}" for name in _suite_module(suite, env_id).ids())
    else:
        ids = builtin_ids() + _user_ids()
    return difflib.get_close_matches(env_id, ids, n=3)


@functools.cache
def make(env_id: str):
    """The env for ``env_id`` with its default parameters (a `core.GymnaxEnv`, a
    `core.SuiteEnv`, or a registered env).

    Raises:
        ValueError: for an unknown id (the message suggests the closest ids and lists
            the known ones), a suite that is not installed (naming its extra), or an env
            whose data could not be downloaded (`DOWNLOADS`).
    """
    gymnax = _gymnax()

    from jaxppo.envs import probes

    # Some envs build arrays in __init__ (MinAtar's); made while a caller traces (a first
    # `jax.jit(jaxppo.train)`), the cached env would hold tracers of that one trace.
    with jax.ensure_compile_time_eval():
        return _make(gymnax, probes, env_id)


def _make(gymnax, probes, env_id: str):
    if env_id in _USER:
        return _USER[env_id]
    suite, slash, name = env_id.partition("/")
    if slash and suite in SUITES:
        module = _suite_module(suite, env_id)
        if name not in module.ids():
            left_out = getattr(module, "left_out", dict)()
            if name in left_out:  # the suite has it, the adapter does not offer it
                raise ValueError(f"env_id {env_id!r} is not offered by jaxppo's {suite} "
                                 f"adapter: {left_out[name]}")
            ids = [f"{suite}/{known}" for known in module.ids()]
            close = difflib.get_close_matches(env_id, ids, n=3)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise ValueError(f"unknown env_id {env_id!r}; {hint}{suite}'s environments: "
                             f"{', '.join(ids)}")
        return module.make(name)
    if env_id in _entry_points() and env_id not in PROBE_IDS \
            and env_id not in gymnax.registered_envs:  # jaxppo's own ids are not shadowed
        from jaxppo.envs import checker

        env = as_env(env_id, _entry_points()[env_id].load()())
        checker.check_env(env, env_id)  # as `register` checks, once per process
        return env
    if env_id in probes.PROBES:
        env = probes.PROBES[env_id]()
        return core.GymnaxEnv(env_id, env, env.default_params)
    if env_id not in gymnax.registered_envs:
        close = closest_ids(env_id)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        known = ", ".join(builtin_ids() + _user_ids())
        raise ValueError(f"unknown env_id {env_id!r}; {hint}known environments: {known}; and "
                         f"those of the suites {', '.join(SUITES)} (`jaxppo envs` lists them)")
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


def check_params(config) -> None:
    """Check ``config.env_params``' names against its environment (after
    `jaxppo.config.validate`, which checks that their values are finite), and their values
    where the env bounds them (its ``value_error``); a `FieldError` of ``env_params`` names
    the parameter, why it cannot be set and the env's numeric parameters."""
    params = config.env_params
    if not params:
        return
    env = make(config.env_id)
    if not callable(getattr(env, "param_error", None)):
        name = next(iter(params))
        config_lib.fail("env_params", {name: params[name]},
                        f"{config.env_id} takes no env params (gymnax, Craftax and Playground "
                        "envs do)")
    value_error = getattr(env, "value_error", None)
    for name, value in params.items():
        error = env.param_error(name) or (value_error(name, value) if value_error else None)
        if error:
            config_lib.fail("env_params", {name: value}, error)


def make_for(config):
    """The env a run of ``config`` steps: `make(config.env_id)`, with ``config.env_params``
    set (its ``with_params``, `core.TunableParams`). Call it where the env is reset or
    stepped, inside the traced program (the values may be tracers; the env is built anew, not
    cached); spaces and shapes are those of `make(config.env_id)`.

    Raises:
        ValueError: env_params for an env that takes none (`check_params` says which).
    """
    env = make(config.env_id)
    if not config.env_params:
        return env
    if not callable(getattr(env, "with_params", None)):
        raise ValueError(f"Config.env_params: {config.env_id} takes no env params (gymnax, "
                         "Craftax and Playground envs do)")
    return env.with_params(config.env_params)
