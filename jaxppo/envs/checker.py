"""The environment check `jaxppo.envs.register` runs before jaxppo trains on a user's env.

In the spirit of Stable-Baselines3's ``env_checker``: the env is run the ways jaxppo runs it
(reset and step traced, under jax.jit and jax.vmap, with auto-reset) and every problem found is
collected; `check_env` raises one ValueError with a line per problem, each naming the bad value
and what is expected. Whatever the env raises becomes such a line (its type and first line),
never a traceback. Checked:

- the attributes jaxppo reads: ``action_space`` (a `core.ActionSpace` whose fields agree),
  ``observation_shape``, ``observation_size``, ``has_action_mask``, ``max_episode_steps``;
- ``reset(key)``: a floating observation of ``observation_shape``, finite;
- ``step(key, state, action)`` with actions sampled from the space (valid ones where the env has
  masks): a `core.Step` whose obs and final_obs have that shape, a float scalar reward, bool
  scalar terminated and truncated, an int episode_length, and a new state shaped as the old;
- auto-reset: ``final_obs == obs`` where the episode did not end; where it ended, ``obs`` is a
  fresh episode's (a reset's) observation; episode_length and episode_return count the episode;
- jit and vmap: NUM_STEPS steps of NUM_ENVS vmapped envs in one compiled program agree with
  reset and step run eagerly per env, on the first step and on a step that ends an episode;
- masks: ``action_mask(state)`` is bool [num_actions];
- for a gymnax-style env (`core.GymnaxEnv`), the gymnax env's own outputs, which the adapter
  would otherwise reshape or cast: the observation against its observation_space, the flags.
"""

from __future__ import annotations

import contextlib
import functools
import math
import typing

import jax
import jax.numpy as jnp
import numpy as np

from jaxppo.envs import core

NUM_ENVS = 4
NUM_STEPS = 64
# jit fuses float arithmetic differently from eager dispatch: one step agrees to about 1 ulp.
RTOL, ATOL = 1e-4, 1e-5
STEP_FIELDS = ("obs", "reward", "terminated", "truncated", "final_obs", "episode_return",
               "episode_length")


class _Failed(Exception):
    """A check could not go on (what it needs raised or is malformed); its line is recorded."""


class _Report:
    """The problems found so far. ``explained``: the gymnax env's own problems were found,
    so the adapter's errors on top of them (a reshape that fails) add no line."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.explained = False

    def add(self, line: str) -> None:
        self.problems.append(line)

    def call(self, what: str, fn, *args):
        """``fn(*args)``; if it raises, a line naming the exception, then `_Failed`."""
        try:
            return fn(*args)
        except Exception as error:  # the env's own code: reported, not raised
            if not self.explained:
                self.add(f"{what} raised {_describe(error)}")
            raise _Failed from None


class _Usable(typing.NamedTuple):
    """Which parts of the env's outputs are well-formed enough for the value checks."""

    flags: bool  # terminated and truncated hold one value per env
    obs: bool  # reset's obs, Step.obs and Step.final_obs are arrays of one shape
    counts: bool  # reward, episode_return and episode_length hold one value per env
    mask: bool  # action_mask(state) is [num_actions]: actions are sampled from it


class _Keys(typing.NamedTuple):
    """Key data (uint32 [..., 2], numpy: `_key` makes keys of it)."""

    reset: np.ndarray  # [N, 2]
    step: np.ndarray  # [T, N, 2]


class _Trace(typing.NamedTuple):
    """What the compiled program gives: N envs stepped T times."""

    reset_obs: jax.Array  # [N, *obs]
    actions: jax.Array  # [T, N, *action]
    steps: core.Step  # [T, N]
    # [T, N, *obs]: the reset observation under `_reset_key` of each step's key
    reset_candidates: jax.Array | None
    first_state: typing.Any  # [N]: each env's state before the step its first episode ended


def check_env(env, env_id: str) -> None:
    """Check that ``env`` is a jaxppo env jaxppo can train on.

    Args:
        env: a `core.GymnaxEnv`, a `core.SuiteEnv` subclass or an adapter-shaped env (reset,
            step, action_space, observation_shape, ...; see `core.SuiteEnv`).
        env_id: its id, for the message.

    Raises:
        ValueError: one line per problem found, after the line
            ``env_id '<id>' failed the environment check:``.
    """
    report = _Report()
    space, obs_shape = _check_attributes(env, report)
    if isinstance(env, core.GymnaxEnv):
        _check_gymnax(env, report)
    if space is not None and obs_shape is not None:
        try:
            _check_behaviour(env, space, obs_shape, report)
        except _Failed:
            pass
        except Exception as error:  # an output of an odd kind broke a check: still one line
            report.add(f"checking the env's outputs raised {_describe(error)}")
    if report.problems:
        lines = [f"env_id {env_id!r} failed the environment check:"]
        raise ValueError("\n".join(lines + [f"  - {line}" for line in report.problems]))


# ---------------------------------------------------------------------------------------------
# Describing values.


def _describe(error: BaseException) -> str:
    """An exception as its type and the first line of its message."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    first = lines[0].strip() if lines else ""
    if len(first) > 200:
        first = first[:197] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _kind(x) -> str:
    """An (abstract) array as "a float32 scalar" or "int32 of shape (3,)"; else its type."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        return f"a {type(x).__name__}"
    if tuple(x.shape) == ():
        return f"{'an' if str(x.dtype)[0] in 'aeiou' else 'a'} {x.dtype} scalar"
    return f"{x.dtype} of shape {tuple(x.shape)}"


def _show(x) -> str:
    """A value, its first 6 entries, in one line."""
    flat = np.ravel(np.asarray(x))
    text = ", ".join(f"{v:.4g}" if isinstance(v, np.floating) else str(v) for v in flat[:6])
    if np.ndim(x) == 0:
        return text
    return f"[{text}{', ...' if flat.size > 6 else ''}]"


def _is(x, kind: str) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None or jax.dtypes.issubdtype(dtype, jax.dtypes.extended):
        return False
    return {"floating": jnp.issubdtype(dtype, jnp.floating),
            "bool": dtype == jnp.bool_,
            "integer": jnp.issubdtype(dtype, jnp.integer)}[kind]


# ---------------------------------------------------------------------------------------------
# Attributes and the action space.


def _check_attributes(env, report: _Report):
    """The attributes jaxppo reads. Returns the action space and observation shape, each None
    where it is unusable (the checks that run the env then cannot run)."""
    try:
        hash(env)
    except TypeError as error:
        report.add(f"the env is unhashable ({_describe(error)}); jaxppo passes it to jax.jit "
                   "as a static value: keep the default identity hash (no __eq__)")
    for name, signature in (("reset", "reset(key) -> (obs, state)"),
                            ("step", "step(key, state, action) -> (state, Step)")):
        if not callable(getattr(env, name, None)):
            report.add(f"the env has no {name} method; expected {signature}")
    obs_shape = _observation_shape(env, report)
    mask = getattr(env, "has_action_mask", None)
    if not isinstance(mask, bool):
        report.add(f"has_action_mask is {mask!r}; expected True or False")
    elif mask and not callable(getattr(env, "action_mask", None)):
        report.add("has_action_mask is True but the env has no action_mask(state) method")
    try:
        limit = env.max_episode_steps
        if limit is not None and (not isinstance(limit, int | np.integer) or limit < 1):
            report.add(f"max_episode_steps is {limit!r}; expected None or an integer >= 1")
    except Exception as error:
        report.add(f"max_episode_steps raised {_describe(error)}")
    space = _check_action_space(getattr(env, "action_space", None), report)
    if not all(callable(getattr(env, name, None)) for name in ("reset", "step")):
        return None, obs_shape
    return space, obs_shape


def _observation_shape(env, report: _Report) -> tuple[int, ...] | None:
    try:
        shape = env.observation_shape
    except Exception as error:
        report.add(f"observation_shape raised {_describe(error)}")
        return None
    if not isinstance(shape, tuple | list) or not shape or not all(
            isinstance(d, int | np.integer) and d >= 1 for d in shape):
        report.add(f"observation_shape is {shape!r}; expected a non-empty tuple of positive "
                   "ints")
        return None
    shape = tuple(int(d) for d in shape)
    try:
        size = env.observation_size
    except Exception as error:
        report.add(f"observation_size raised {_describe(error)}")
        return shape
    if size != math.prod(shape):
        report.add(f"observation_size is {size!r}; expected {math.prod(shape)}, the product "
                   f"of observation_shape {shape}")
    return shape


def _check_action_space(space, report: _Report) -> core.ActionSpace | None:
    """The space if its fields agree (actions can be sampled from it), else None."""
    if not isinstance(space, core.ActionSpace):
        report.add(f"action_space is a {type(space).__name__}; expected a "
                   "jaxppo.envs.ActionSpace")
        return None
    start = len(report.problems)
    shape = space.shape
    if not isinstance(shape, tuple) or not all(
            isinstance(d, int | np.integer) and d >= 1 for d in shape):
        report.add(f"action_space.shape is {shape!r}; expected a tuple of positive ints")
        return None
    if space.discrete:
        _check_discrete(space, report)
    else:
        _check_continuous(space, report)
    return space if len(report.problems) == start else None


def _check_discrete(space: core.ActionSpace, report: _Report) -> None:
    nvec = space.nvec
    if nvec:
        if not isinstance(nvec, tuple) or not all(
                isinstance(k, int | np.integer) and k >= 1 for k in nvec):
            report.add(f"action_space.nvec is {nvec!r}; expected a tuple of ints >= 1 (one "
                       "per component)")
            return
        if space.num_actions != sum(nvec):
            report.add(f"action_space.num_actions is {space.num_actions!r}; expected "
                       f"{sum(nvec)}, the sum of nvec {nvec} (the size of a flat mask)")
        if space.shape != (len(nvec),):
            report.add(f"action_space.shape is {space.shape}; expected {(len(nvec),)}, one "
                       f"entry per component of nvec {nvec}")
        return
    if not isinstance(space.num_actions, int | np.integer) or space.num_actions < 1:
        report.add(f"action_space.num_actions is {space.num_actions!r}; expected an int >= 1 "
                   "for a discrete space")
    if space.shape != ():
        report.add(f"action_space.shape is {space.shape}; expected () for a discrete space "
                   "(one int per action)")


def _check_continuous(space: core.ActionSpace, report: _Report) -> None:
    if space.num_actions != 0 or space.nvec:
        report.add(f"action_space has num_actions={space.num_actions!r}, "
                   f"nvec={space.nvec!r}; expected 0 and () for a continuous space")
    for name in ("low", "high"):
        bound = getattr(space, name)
        if not isinstance(bound, np.ndarray) or not np.issubdtype(bound.dtype, np.floating) \
                or bound.shape != space.shape:
            report.add(f"action_space.{name} is {_kind(bound)}; expected a float32 numpy "
                       f"array of the action's shape {space.shape}")
            return
    if np.any(np.isnan(space.low) | np.isnan(space.high) | (space.low > space.high)):
        report.add(f"action_space bounds low={_show(space.low)}, high={_show(space.high)}; "
                   "expected low <= high, without nan")


# ---------------------------------------------------------------------------------------------
# A gymnax-style env's own outputs.


def _check_gymnax(env: core.GymnaxEnv, report: _Report) -> None:
    """The gymnax env under the adapter: the adapter reshapes its observations to the
    observation_space's shape and casts its flags, which would hide or garble these."""
    start = len(report.problems)
    with contextlib.suppress(_Failed):
        _check_gymnax_outputs(env._env, env._params, env.action_space, report)
    report.explained = len(report.problems) > start


def _check_gymnax_outputs(raw, params, space: core.ActionSpace, report: _Report) -> None:
    key = jax.random.key(0)
    name = type(raw).__name__
    shape = tuple(report.call(f"{name}.observation_space(params)", raw.observation_space,
                              params).shape)
    expected = f"{shape}, the shape of observation_space(params)"
    what = f"{name}.reset(key, params)"
    obs, state = _unpack(report, what, report.call(what, jax.eval_shape, raw.reset, key,
                                                   params), 2)
    observations = {f"{name}.reset's observation": obs}
    try:
        where, step_obs, reward, flags = _gymnax_step(raw, params, space, state, report)
    except _Failed:
        _check_shapes(report, observations, shape, expected)
        raise
    observations[f"{where}'s observation"] = step_obs
    _check_shapes(report, observations, shape, expected)
    if tuple(getattr(reward, "shape", (None,))) != ():
        report.add(f"{where} returns reward as {_kind(reward)}; expected a scalar")
    for flag, (source, value) in flags.items():
        if not (_is(value, "bool") and value.shape == ()):
            report.add(f"{source} returns {flag} as {_kind(value)}; expected a bool scalar")


def _gymnax_step(raw, params, space: core.ActionSpace, state, report: _Report):
    """The gymnax env's step outputs, traced: from step_env and is_truncated where the env
    keeps gymnax's Environment.step (which combines them), else from its own step. Returns
    (what gave the observation, obs, reward, {flag: (what gave it, value)})."""
    from gymnax.environments import environment  # not at import: see jaxppo.envs

    key, action, name = jax.random.key(0), _abstract_action(space), type(raw).__name__
    if type(raw).step is environment.Environment.step:
        what = f"{name}.step_env(key, state, action, params)"
        obs, new_state, reward, terminated, info = _unpack(
            report, what, report.call(what, jax.eval_shape, raw.step_env, key, state, action,
                                      params), 5)
        truncated = report.call(f"{name}.is_truncated(state, params)", jax.eval_shape,
                                raw.is_truncated, new_state, params)
        flags = {"terminated": (f"{name}.step_env", terminated),
                 "truncated": (f"{name}.is_truncated", truncated)}
        if not isinstance(info, dict):
            report.add(f"{name}.step_env returns info as {_kind(info)}; expected a dict")
        return f"{name}.step_env", obs, reward, flags
    what = f"{name}.step(key, state, action, params)"
    obs, _, reward, terminated, truncated, info = _unpack(
        report, what, report.call(what, jax.eval_shape, raw.step, key, state, action, params),
        6)
    if not isinstance(info, dict) or "final_observation" not in info:
        report.add(f"{name}.step's info has no 'final_observation'; expected the observation "
                   "before the auto-reset there, as gymnax's Environment.step puts it")
    flags = {"terminated": (f"{name}.step", terminated), "truncated": (f"{name}.step", truncated)}
    return f"{name}.step", obs, reward, flags


def _check_shapes(report: _Report, named: dict, shape: tuple[int, ...], expected: str) -> None:
    """Observations (name -> abstract array) against ``shape``: one line per wrong shape,
    naming every observation that has it."""
    wrong: dict[tuple, list[str]] = {}
    for what, obs in named.items():
        if not hasattr(obs, "shape"):
            report.add(f"{what} is {_kind(obs)}; expected one array of shape {expected}")
        elif tuple(obs.shape) != shape:
            wrong.setdefault(tuple(obs.shape), []).append(what)
    for bad, names in wrong.items():
        report.add(f"{_join(names)} {'has' if len(names) == 1 else 'have'} shape {bad}; "
                   f"expected {expected}")


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _unpack(report: _Report, what: str, out, count: int) -> tuple:
    if not isinstance(out, tuple) or len(out) != count:
        size = len(out) if isinstance(out, tuple) else 1
        report.add(f"{what} returned {size} value(s); expected {count}")
        raise _Failed
    return out


# ---------------------------------------------------------------------------------------------
# The jaxppo env: structure (traced, nothing runs), then one compiled program.


def _abstract_action(space: core.ActionSpace) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(space.shape, jnp.int32 if space.discrete else jnp.float32)


def _check_behaviour(env, space: core.ActionSpace, obs_shape: tuple[int, ...],
                     report: _Report) -> None:
    usable = _check_structure(env, space, obs_shape, report)
    report.explained = False  # the adapter traced: what fails from here is the env's own
    rng = np.random.default_rng(0)
    keys = _make_keys(rng)
    args = (keys, _draws(space, rng))
    what = f"reset and step under jax.jit(jax.vmap(...)) over {NUM_ENVS} envs"
    program = report.call(what, _compile, functools.partial(_rollout, env, space, usable), args)
    trace = report.call(what, program, *args)
    # One transfer to numpy; the states stay on the device (they may hold PRNG keys).
    trace = jax.device_get(trace._replace(first_state=None))._replace(
        first_state=trace.first_state)
    _check_values(trace, usable, report)
    _check_eager(env, keys, trace, usable, report)


def _compile(rollout, args):
    # The program runs once, for NUM_STEPS steps: on a CPU, LLVM's optimizations (of the
    # random-number code above all) cost more compile time than they save.
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return jax.jit(rollout).lower(*args).compile(options)


def _check_structure(env, space: core.ActionSpace, obs_shape: tuple[int, ...],
                     report: _Report) -> _Usable:
    """Shapes and dtypes of reset, step and action_mask, traced as jax.jit traces them.
    Raises `_Failed` where the program cannot run."""
    obs, state, new_state, step = _traced(env, space, obs_shape, report)
    _check_obs(report, {"reset(key)'s observation": obs, "Step.obs": step.obs,
                        "Step.final_obs": step.final_obs}, obs_shape)
    counts = all([_check_scalar(report, name, getattr(step, name), kind) for name, kind in (
        ("reward", "floating"), ("episode_return", "floating"), ("episode_length", "integer"))])
    # Flags of one value per env, bool or not, still tell where episodes end.
    flags = all([_check_scalar(report, name, getattr(step, name), "bool")
                 or getattr(getattr(step, name), "size", 0) == 1
                 for name in ("terminated", "truncated")])
    _check_same_state(report, state, new_state)
    shapes = [getattr(x, "shape", None) for x in (obs, step.obs, step.final_obs)]
    mask = bool(env.has_action_mask) and _check_mask(env, space, state, report)
    return _Usable(flags=flags, obs=shapes[0] is not None and shapes.count(shapes[0]) == 3,
                   counts=counts, mask=mask)


def _traced(env, space: core.ActionSpace, obs_shape: tuple[int, ...], report: _Report):
    """(obs, state) of reset and (new state, Step) of step, abstract; `_Failed` where either
    raises or returns something else."""
    key = jax.random.key(0)
    out = report.call("reset(key) traced (as jax.jit does)", jax.eval_shape, env.reset, key)
    if not isinstance(out, tuple) or len(out) != 2:
        report.add(f"reset(key) returned {_kind(out)}; expected a pair (obs, state)")
        raise _Failed
    obs, state = out
    try:
        out = report.call("step(key, state, action) traced (as jax.jit does)", jax.eval_shape,
                          env.step, key, state, _abstract_action(space))
        if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[1], core.Step):
            report.add(f"step(key, state, action) returned {_kind(out)}; expected a pair "
                       "(state, jaxppo.envs.Step)")
            raise _Failed
    except _Failed:
        _check_obs(report, {"reset(key)'s observation": obs}, obs_shape)
        raise
    return obs, state, *out


def _check_obs(report: _Report, named: dict, shape: tuple[int, ...]) -> None:
    """Observations (name -> abstract array): of ``shape`` and floating."""
    _check_shapes(report, named, shape, f"observation_shape {shape}")
    wrong: dict[str, list[str]] = {}
    for what, obs in named.items():
        if hasattr(obs, "dtype") and not _is(obs, "floating"):
            wrong.setdefault(str(obs.dtype), []).append(what)
    for dtype, names in wrong.items():
        report.add(f"{_join(names)} {'is' if len(names) == 1 else 'are'} {dtype}; expected a "
                   "floating dtype (float32)")


def _check_scalar(report: _Report, name: str, value, kind: str) -> bool:
    """Whether Step.<name> is a scalar of ``kind``; a line if not."""
    if _is(value, kind) and value.shape == ():
        return True
    expected = {"floating": "a float32 scalar", "bool": "a bool scalar",
                "integer": "an int32 scalar"}[kind]
    report.add(f"Step.{name} is {_kind(value)}; expected {expected}")
    return False


def _check_same_state(report: _Report, state, new_state) -> None:
    """The state step returns must be shaped as the one it takes: jaxppo carries it through
    lax.scan."""
    before = jax.tree_util.tree_flatten_with_path(state)
    after = jax.tree_util.tree_flatten_with_path(new_state)
    if before[1] != after[1]:
        report.add(f"step's new state is a different pytree from reset's state "
                   f"({before[1]} vs {after[1]}); expected the same structure (lax.scan "
                   "carries it)")
        raise _Failed
    for (path, old), (_, new) in zip(before[0], after[0], strict=True):
        if (old.shape, old.dtype) != (new.shape, new.dtype):
            report.add(f"step's new state{jax.tree_util.keystr(path)} is {_kind(new)}, reset's "
                       f"{_kind(old)}; expected the same shape and dtype (lax.scan carries "
                       "it)")
            raise _Failed


def _check_mask(env, space: core.ActionSpace, state, report: _Report) -> bool:
    try:
        mask = report.call("action_mask(state)", jax.eval_shape, env.action_mask, state)
    except _Failed:
        return False
    if _is(mask, "bool") and tuple(mask.shape) == (space.num_actions,):
        return True
    report.add(f"action_mask(state) is {_kind(mask)}; expected bool of shape "
               f"({space.num_actions},), one flag per action")
    return False


def _make_keys(rng: np.random.Generator) -> _Keys:
    """Key data from numpy's random bits: no random-number program to compile."""
    def data(*shape):
        return rng.integers(0, 2**32, (*shape, 2), np.uint32)

    return _Keys(reset=data(NUM_ENVS), step=data(NUM_STEPS, NUM_ENVS))


def _key(data) -> jax.Array:
    return jax.random.wrap_key_data(jnp.asarray(data))


def _draws(space: core.ActionSpace, rng: np.random.Generator) -> np.ndarray:
    """Random actions [T, N, ...]: for a continuous space the actions themselves, uniform in
    [low, high] where both are finite, else a clipped standard normal; for a discrete one
    uniforms in [0, 1) per component, turned into actions by `_action` (over the valid actions
    where the env has masks)."""
    shape = (NUM_STEPS, NUM_ENVS)
    if space.discrete:
        return rng.random((*shape, len(space.nvec) or 1), np.float32)
    finite = np.isfinite(space.low) & np.isfinite(space.high)
    uniform = rng.uniform(np.where(finite, space.low, 0.0), np.where(finite, space.high, 1.0),
                          (*shape, *space.shape))
    normal = np.clip(rng.standard_normal((*shape, *space.shape)), space.low, space.high)
    return np.where(finite, uniform, normal).astype(np.float32)


def _action(space: core.ActionSpace, draw: jax.Array, mask: jax.Array | None) -> jax.Array:
    """One env's action from its `_draws` entry: a discrete component takes the
    floor(u * count)-th of its ``count`` valid actions (``mask`` [K], or all of them)."""
    if not space.discrete:
        return draw
    sizes = space.nvec or (space.num_actions,)
    allowed = jnp.ones((space.num_actions,), jnp.int32) if mask is None else mask.astype(
        jnp.int32)
    actions = []
    for d, part in enumerate(jnp.split(allowed, np.cumsum(sizes)[:-1])):
        count = jnp.sum(part)
        index = jnp.minimum(jnp.floor(draw[d] * count).astype(jnp.int32), count - 1)
        actions.append(jnp.argmax(jnp.cumsum(part) > index).astype(jnp.int32))
    return jnp.stack(actions) if space.nvec else actions[0]


def _done(step: core.Step) -> jax.Array:
    """Episode ended, [N], from flags of one value per env (any dtype: nonzero is True)."""
    shape = (step.terminated.shape[0],)
    return (jnp.reshape(step.terminated, shape).astype(jnp.bool_)
            | jnp.reshape(step.truncated, shape).astype(jnp.bool_))


def _where(pred: jax.Array, on_true, on_false):
    """Per env (``pred`` [N]), a pytree of [N, ...] leaves from either side."""
    return jax.tree.map(
        lambda a, b: jnp.where(jnp.reshape(pred, pred.shape + (1,) * (a.ndim - 1)), a, b),
        on_true, on_false)


def _reset_key(step_key: jax.Array) -> jax.Array:
    """The key `SuiteEnv` and gymnax reset with inside step(step_key): the second half of a
    split (`_check_fresh` allows other schemes)."""
    return jax.vmap(jax.random.split)(step_key)[:, 1]


def _rollout_step(carry, xs, *, env, space: core.ActionSpace, usable: _Usable):
    state, first_state, ended = carry
    draw, step_key = xs
    mask = jax.vmap(env.action_mask)(state) if usable.mask else None
    action = jax.vmap(functools.partial(_action, space))(draw, mask)
    new_state, step = jax.vmap(env.step)(step_key, state, action)
    done = _done(step) if usable.flags else jnp.zeros(ended.shape, jnp.bool_)
    first_state = _where(done & ~ended, state, first_state)
    candidate = jax.vmap(env.reset)(_reset_key(step_key))[0] if usable.obs else None
    return (new_state, first_state, ended | done), (action, step, candidate)


def _rollout(env, space: core.ActionSpace, usable: _Usable, keys: _Keys, draws: jax.Array
             ) -> _Trace:
    """NUM_ENVS envs reset, then stepped NUM_STEPS times with random actions."""
    obs, state = jax.vmap(env.reset)(_key(keys.reset))
    body = functools.partial(_rollout_step, env=env, space=space, usable=usable)
    ended = jnp.zeros((NUM_ENVS,), jnp.bool_)
    (_, first_state, _), (actions, steps, candidates) = jax.lax.scan(
        body, (state, state, ended), (draws, _key(keys.step)))
    return _Trace(obs, actions, steps, candidates, first_state)


# ---------------------------------------------------------------------------------------------
# The values the program gave (numpy).


def _ended(steps: core.Step) -> np.ndarray:
    """Episode ended, [T, N], from flags of one value per env (nonzero is True)."""
    shape = np.shape(steps.terminated)[:2]
    return (np.reshape(steps.terminated, shape).astype(bool)
            | np.reshape(steps.truncated, shape).astype(bool))


def _check_values(trace: _Trace, usable: _Usable, report: _Report) -> None:
    if _is(trace.reset_obs, "floating") and not np.isfinite(trace.reset_obs).all():
        i, *index = np.argwhere(~np.isfinite(trace.reset_obs))[0]
        at = f" at index {tuple(index)}" if index else ""
        report.add(f"reset(key)'s observation of env {i} holds "
                   f"{trace.reset_obs[(i, *index)]}{at}; expected finite values")
    steps = trace.steps
    for name in ("obs", "final_obs", "reward"):
        value = getattr(steps, name)
        if _is(value, "floating") and not np.isfinite(value).all():
            t, i, *index = np.argwhere(~np.isfinite(value))[0]
            at = f" at index {tuple(index)}" if index else ""
            report.add(f"Step.{name} of env {i} at step {t} holds {value[(t, i, *index)]}"
                       f"{at}; expected finite values")
    if not usable.flags:
        return
    done = _ended(steps)
    if usable.obs:
        _check_final_obs(report, steps.obs, steps.final_obs, done)
        _check_fresh(report, trace, done)
    if usable.counts:
        _check_counts(report, steps, done)


def _check_final_obs(report: _Report, obs: np.ndarray, final_obs: np.ndarray,
                     done: np.ndarray) -> None:
    wrong = np.argwhere(~_close_per_step(obs, final_obs) & ~done)
    if wrong.size:
        t, i = wrong[0]
        report.add(f"Step.final_obs {_show(final_obs[t, i])} differs from Step.obs "
                   f"{_show(obs[t, i])} at step {t} of env {i}, where the episode did not "
                   "end; expected final_obs == obs there (final_obs is the observation "
                   "before an auto-reset)")


def _close_per_step(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """allclose per [T, N] entry of two arrays [T, N, ...] of one shape."""
    return np.all(np.isclose(a, b, RTOL, ATOL, equal_nan=True), axis=tuple(range(2, a.ndim)))


def _check_fresh(report: _Report, trace: _Trace, done: np.ndarray) -> None:
    """Where an episode ended, Step.obs must start a new one: equal the reset observation
    under `_reset_key`, or (another key scheme) lie within the range that the T x N + N
    resets of the program span, widened by half of it."""
    obs = trace.steps.obs
    matched = _close_per_step(obs, trace.reset_candidates)
    resets = np.concatenate([trace.reset_obs[None], trace.reset_candidates])
    low, high = resets.min(axis=(0, 1)), resets.max(axis=(0, 1))
    margin = 0.5 * (high - low) + ATOL + RTOL * np.abs(high)
    inside = np.all((obs >= low - margin) & (obs <= high + margin),
                    axis=tuple(range(2, obs.ndim)))
    wrong = np.argwhere(done & ~matched & ~inside)
    if wrong.size:
        t, i = wrong[0]
        report.add(f"Step.obs {_show(obs[t, i])} after the episode of env {i} ended at step "
                   f"{t} is not a reset's observation (resets give {_show(low)} to "
                   f"{_show(high)}); expected the first observation of a fresh episode "
                   "(auto-reset), the last one going to Step.final_obs")


def _check_counts(report: _Report, steps: core.Step, done: np.ndarray) -> None:
    """episode_length counts the episode's steps from 1; episode_return sums its rewards."""
    length, episode_return = steps.episode_length, steps.episode_return
    new = np.concatenate([np.ones_like(done[:1]), done[:-1]])  # [T, N]: starts an episode
    expected_length = np.where(new, 1, np.concatenate([np.zeros_like(length[:1]),
                                                       length[:-1]]) + 1)
    wrong = np.argwhere(length != expected_length)
    if wrong.size:
        t, i = wrong[0]
        report.add(f"Step.episode_length is {length[t, i]} at step {t} of env {i}; expected "
                   f"{expected_length[t, i]} (the episode's steps so far, this one included, "
                   "from 1 after a reset)")
    previous = np.concatenate([np.zeros_like(episode_return[:1]), episode_return[:-1]])
    expected_return = steps.reward + np.where(new, 0.0, previous)
    wrong = np.argwhere(~np.isclose(episode_return, expected_return, RTOL, ATOL))
    if wrong.size:
        t, i = wrong[0]
        report.add(f"Step.episode_return is {episode_return[t, i]:.6g} at step {t} of env {i}; "
                   f"expected {expected_return[t, i]:.6g} (the episode's rewards so far, this "
                   "one included)")


# ---------------------------------------------------------------------------------------------
# jit and vmap against eager, per env.


def _check_eager(env, keys: _Keys, trace: _Trace, usable: _Usable, report: _Report) -> None:
    """reset of every env, its first step, and one step that ends an episode, run eagerly
    per env, against the program's (jitted, vmapped) results."""
    for i in range(NUM_ENVS):
        obs, state = report.call(f"reset(key) of env {i} run eagerly", env.reset,
                                 _key(keys.reset[i]))
        if _differs(report, "reset", "observation", obs, trace.reset_obs[i], i, None,
                    lambda i=i: jax.jit(env.reset)(_key(keys.reset[i]))[0]):
            return
        args = (_key(keys.step[0, i]), state, jnp.asarray(trace.actions[0, i]))
        if _step_differs(env, report, args, trace.steps, 0, i):
            return
    ended = np.argwhere(_ended(trace.steps).T) if usable.flags else np.zeros((0, 2))
    if ended.size:  # the first env whose episode ended, at the step it ended
        i, t = ended[0]
        state = jax.tree.map(lambda x: x[i], trace.first_state)
        args = (_key(keys.step[t, i]), state, jnp.asarray(trace.actions[t, i]))
        _step_differs(env, report, args, trace.steps, t, i)


def _step_differs(env, report: _Report, args, steps: core.Step, t: int, i: int) -> bool:
    out = report.call(f"step(key, state, action) of env {i} at step {t} run eagerly",
                      env.step, *args)
    for name in STEP_FIELDS:
        if _differs(report, "step", f"Step.{name}", getattr(out[1], name),
                    getattr(steps, name)[t, i], i, t,
                    lambda name=name: getattr(jax.jit(env.step)(*args)[1], name)):
            return True
    return False


def _differs(report: _Report, function: str, what: str, eager, batched, i: int,
             t: int | None, jitted) -> bool:
    """Whether the program's value differs from the eager one; if so, a line saying whether
    jax.jit alone (``jitted()``) already differs, or only jax.vmap."""
    if _same(eager, batched):
        return False
    try:
        under = "jax.jit" if not _same(eager, jitted()) else f"jax.vmap over {NUM_ENVS} envs"
    except Exception:
        under = "jax.jit"
    at = f" at step {t}" if t is not None else ""
    report.add(f"{function} under {under} gives {what} {_show(batched)} for env {i}{at}, "
               f"eagerly {_show(eager)}; expected the same results (allclose)")
    return True


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating):
        return bool(np.allclose(a, b, RTOL, ATOL, equal_nan=True))
    return bool(np.array_equal(a, b))
