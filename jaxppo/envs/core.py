"""The environment boundary: a gymnax adapter and the wrappers jaxppo trains through.

The only module family that imports gymnax. Every env here is a stateless, hashable object
(it is closed over by jitted code as a static value) with two pure methods:

    reset(key)               -> (obs, state)
    step(key, state, action) -> (state, Step)

gymnax >= 1.0 steps return ``(obs, state, reward, terminated, truncated, info)`` with the
pre-reset observation in ``info["final_observation"]``; the adapter keeps termination and
truncation apart and exposes that observation as `Step.final_obs`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class Step(struct.PyTreeNode):
    """What one environment step returns, per env (batch axes are added by vmap).

    Attributes:
        obs: observation to act on next (already reset where the episode ended).
        reward: reward of the transition.
        terminated: the MDP reached a terminal state: no bootstrapping past it.
        truncated: the episode was cut (time limit) in a non-terminal state: bootstrap from
            ``final_obs`` but do not continue the GAE recursion.
        final_obs: the pre-reset observation reached by this transition (equals ``obs``
            where the episode did not end).
        episode_return: undiscounted return of the episode so far, including this reward.
        episode_length: steps of the episode so far, including this one.
    """

    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        """Episode ended here (terminated or truncated); the next obs starts a new one."""
        return jnp.logical_or(self.terminated, self.truncated)


class ActionSpace(struct.PyTreeNode):
    """Static description of an action space (numpy, never traced).

    Attributes:
        discrete: True for a finite set {0, ..., num_actions - 1}, or a product of finite
            sets (multi-discrete).
        num_actions: number of discrete actions, for multi-discrete the sum of ``nvec`` (the
            size of a flat action mask); 0 for continuous spaces.
        shape: shape of one continuous action (``()`` for discrete, ``(D,)`` for
            multi-discrete).
        low, high: bounds of a continuous action, numpy arrays of ``shape``.
        nvec: the sizes (K_1, ..., K_D) of a multi-discrete action's D components; ``()``
            otherwise.
    """

    discrete: bool = struct.field(pytree_node=False)
    num_actions: int = struct.field(pytree_node=False, default=0)
    shape: tuple[int, ...] = struct.field(pytree_node=False, default=())
    low: Any = struct.field(pytree_node=False, default=None)
    high: Any = struct.field(pytree_node=False, default=None)
    nvec: tuple[int, ...] = struct.field(pytree_node=False, default=())

    @property
    def multi_discrete(self) -> bool:
        """Several discrete choices at once: an action is D integers, one per ``nvec``."""
        return bool(self.nvec)


def _action_space(space) -> ActionSpace:
    from gymnax.environments import spaces  # not at import: see jaxppo.envs

    if isinstance(space, spaces.Discrete):
        return ActionSpace(discrete=True, num_actions=int(space.n))
    if isinstance(space, spaces.Box):
        shape = tuple(int(s) for s in space.shape)
        low = np.broadcast_to(np.asarray(space.low, np.float32), shape).copy()
        high = np.broadcast_to(np.asarray(space.high, np.float32), shape).copy()
        return ActionSpace(discrete=False, shape=shape, low=low, high=high)
    if isinstance(space, spaces.Tuple) and space.spaces and all(
            isinstance(s, spaces.Discrete) for s in space.spaces):
        # A product of Discrete spaces is multi-discrete: the env receives an int array [D].
        nvec = tuple(int(s.n) for s in space.spaces)
        return ActionSpace(discrete=True, num_actions=sum(nvec), shape=(len(nvec),), nvec=nvec)
    raise TypeError(f"unsupported gymnax action space {space!r}: expected Discrete, Box or a "
                    "Tuple of Discrete spaces")


def _discrete_size(space) -> int | None:
    """n for a gymnax ``Discrete(n)`` space, else None."""
    from gymnax.environments import spaces  # not at import: see jaxppo.envs

    return int(space.n) if isinstance(space, spaces.Discrete) else None


class EpisodeState(struct.PyTreeNode):
    """Env state plus the running statistics of the current episode."""

    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array


class TunableParams:
    """Env params that ``Config.env_params`` sets per run, for an env whose params are a
    dataclass passed to its reset and step (gymnax's ``EnvParams``, Craftax's).

    A subclass has ``_replaced(values)`` (a copy of the env with those params, as float32)
    and either ``_params`` (the dataclass), ``_problems = None`` (the cache of
    `_param_problems`), ``_limit_param`` (the name of its time limit) and ``_fixed(params)``
    (what jaxppo fixes per env id from params: its spaces), or its own ``_param_problems``
    (every param name -> why it cannot be set, or None). An env that bounds values has
    ``value_error(name, value)`` (`jaxppo.envs.check_params`).
    """

    _limit_param = "max_steps_in_episode"

    def with_params(self, values: Mapping[str, Any]):
        """This env with some params replaced: ``params.replace(**values)``, as float32.

        Called inside the traced program (`jaxppo.envs.make_for`), so values may be tracers:
        new values never recompile. Spaces, observation shape and time limit stay this env's.

        Raises:
            ValueError: for a name that is not one of `tunable_params` (saying why).
        """
        for name in values:
            error = self.param_error(name)
            if error:
                raise ValueError(f"env_params: {error}")
        return self._replaced(values)

    def tunable_params(self) -> tuple[str, ...]:
        """The params `with_params` takes, sorted: the float scalars of the env's params that
        neither its spaces nor its program's structure (shapes, Python branches) read."""
        return tuple(sorted(n for n, why in self._param_problems().items() if why is None))

    def param_error(self, name: str) -> str | None:
        """Why ``name`` cannot be replaced by `with_params` (one line naming the env's
        tunable params), or None when it can."""
        problems = self._param_problems()
        if problems.get(name, "") is None:
            return None
        tunable = self.tunable_params()
        known = (f"its numeric parameters: {', '.join(tunable)}" if tunable else
                 f"{self.env_id} has no numeric parameters")
        if name in problems:
            return f"{name!r} cannot be set: {problems[name]}; {known}"
        close = difflib.get_close_matches(str(name), list(problems), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{name!r} is not a parameter of {self.env_id}{hint}; {known}"

    def _param_problems(self) -> dict[str, str | None]:
        """Every param of the env -> why `with_params` refuses it, or None; worked out once
        per env (tracing the env with the candidates traced)."""
        if self._problems is None:
            self._problems = _param_problems(self)
        return self._problems


class GymnaxEnv(TunableParams):
    """A gymnax environment with its default params, as a jaxppo env.

    Observations are float32 in the env's own shape (``observation_shape``; a scalar becomes
    [1]), so a grid reaches a CNN as a grid; the MLP encoder flattens them. An observation
    space that is ``Discrete(n)`` (an index, as FrozenLake's tile) becomes a one-hot [n], as
    Stable-Baselines3 encodes it: the index as one number would ask the network to separate
    states by their order. Episode return and length are tracked in the state. `with_params`
    gives the env with some params replaced (``Config.env_params``).
    """

    def __init__(self, env_id: str, env, params) -> None:
        self.env_id = env_id
        self._env = env
        self._params = params
        self.action_space = _action_space(env.action_space(params))
        # Envs with invalid actions expose them through `action_mask(state, params) -> [K]`.
        self.has_action_mask = callable(getattr(env, "action_mask", None))
        # n for a Discrete(n) observation space, whose index reaches the network one-hot.
        self.one_hot_size = _discrete_size(env.observation_space(params))
        obs_shape = tuple(int(d) for d in env.observation_space(params).shape)
        if self.one_hot_size is not None:
            obs_shape = (self.one_hot_size,)
        self.observation_shape = obs_shape or (1,)
        self.observation_size = int(np.prod(self.observation_shape))
        self._problems: dict[str, str | None] | None = None  # see _param_problems

    def __repr__(self) -> str:
        return f"GymnaxEnv({self.env_id!r})"

    @property
    def max_episode_steps(self) -> int | None:
        """The env's time limit (gymnax's ``max_steps_in_episode``), or None without one."""
        limit = getattr(self._params, "max_steps_in_episode", None)
        return None if limit is None else int(limit)

    def _replaced(self, values: Mapping[str, Any]) -> GymnaxEnv:
        env = copy.copy(self)
        env._params = self._params.replace(
            **{name: jnp.asarray(value, jnp.float32) for name, value in values.items()})
        return env

    def _fixed(self, params) -> tuple:
        return _spaces(self, params)

    def _shaped(self, obs: jax.Array) -> jax.Array:
        if self.one_hot_size is not None:
            return self.one_hot(jnp.reshape(obs, ()))
        return jnp.reshape(obs, self.observation_shape).astype(jnp.float32)

    def one_hot(self, index) -> jax.Array:
        """A Discrete(n) observation space's index, or an array of them, as the network reads
        it: float32 one-hot [..., n] (n: ``one_hot_size``)."""
        return jax.nn.one_hot(jnp.asarray(index, jnp.int32), self.one_hot_size,
                              dtype=jnp.float32)

    def _env_action(self, action: jax.Array) -> jax.Array:
        space = self.action_space
        if space.discrete:
            return action
        # The env receives the action clipped to its bounds; the policy's log-prob is of the
        # unclipped sample (see rollout), so clipping does not bias the gradient estimate.
        return jnp.clip(action, space.low, space.high)

    def action_mask(self, state: EpisodeState) -> jax.Array:
        """Valid actions [K] (True = allowed) in ``state``; all True for envs without masks."""
        if self.has_action_mask:
            return jnp.asarray(self._env.action_mask(state.env_state, self._params), jnp.bool_)
        return jnp.ones((max(self.action_space.num_actions, 1),), jnp.bool_)

    def reset(self, key: jax.Array) -> tuple[jax.Array, EpisodeState]:
        """Reset one env. Returns the float32 observation [*observation_shape] and the state."""
        obs, env_state = self._env.reset(key, self._params)
        zero = jnp.zeros((), jnp.float32)
        return self._shaped(obs), EpisodeState(env_state, zero, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: EpisodeState, action: jax.Array
             ) -> tuple[EpisodeState, Step]:
        """Step one env with auto-reset. See `Step` for what comes back."""
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, self._env_action(action), self._params
        )
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, jnp.bool_)
        truncated = jnp.logical_and(jnp.asarray(truncated, jnp.bool_), ~terminated)
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        done = jnp.logical_or(terminated, truncated)
        new_state = EpisodeState(
            env_state,
            jnp.where(done, 0.0, episode_return),
            jnp.where(done, 0, episode_length),
        )
        step = Step(
            obs=self._shaped(obs),
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=self._shaped(info["final_observation"]),
            episode_return=episode_return,
            episode_length=episode_length,
        )
        return new_state, step


def _param_kind(name: str, value, limit: str) -> str | None:
    """Why a param of this name and default value is not a float scalar, or None (``limit``:
    the name of the env's time limit)."""
    if name == limit:
        return ("it is the time limit, which jaxppo reads once per env id (the truncations it "
                "reports, evaluation's step limit)")
    if isinstance(value, bool | np.bool_):
        return "it is a switch (a bool), which selects code, not a number"
    if np.ndim(value) != 0:
        return f"it is an array of shape {list(np.shape(value))}; only scalars can be set"
    if isinstance(value, numbers.Integral) or np.issubdtype(np.asarray(value).dtype,
                                                            np.integer):
        return ("it is an integer (sizes, counts and intervals may shape the program), "
                "refused rather than cast from a float")
    if not isinstance(value, numbers.Real) and not np.issubdtype(np.asarray(value).dtype,
                                                                 np.floating):
        return f"it is a {type(value).__name__}, not a number"
    return None


def _spaces(env: GymnaxEnv, params) -> tuple:
    """What jaxppo fixes per env id from its params: the action space and the observation
    shape."""
    space = _action_space(env._env.action_space(params))
    return (space.discrete, space.num_actions, space.shape, space.nvec,
            None if space.low is None else space.low.tolist(),
            None if space.high is None else space.high.tolist(),
            tuple(env._env.observation_space(params).shape))


def _traces(env: TunableParams, names: list[str]) -> bool:
    """Whether reset, step (and action_mask) trace with the params ``names`` traced."""
    def run(values):
        one = env._replaced(dict(zip(names, values, strict=True)))
        key = jax.random.key(0)
        _, state = one.reset(key)
        space = one.action_space
        action = jnp.zeros(space.shape, jnp.int32 if space.discrete else jnp.float32)
        one.step(key, state, action)
        if one.has_action_mask:
            one.action_mask(state)

    try:
        jax.eval_shape(run, [jax.ShapeDtypeStruct((), jnp.float32)] * len(names))
    except (TypeError, ValueError, IndexError):  # a tracer met a shape or a Python branch
        return False
    return True


def _param_problems(env: TunableParams) -> dict[str, str | None]:
    params = env._params
    if not dataclasses.is_dataclass(params):
        return {}
    problems = {f.name: _param_kind(f.name, getattr(params, f.name), env._limit_param)
                for f in dataclasses.fields(params)}
    fixed = env._fixed(params)
    for name in [n for n, why in problems.items() if why is None]:
        value = float(getattr(params, name))
        moved = params.replace(**{name: value + max(1.0, abs(value))})  # never the same
        try:
            changes = env._fixed(moved) != fixed
        except (TypeError, ValueError):
            changes = True
        if changes:
            problems[name] = (f"it sets {env.env_id}'s action or observation space, which "
                              "jaxppo fixes per env id")
    candidates = [n for n, why in problems.items() if why is None]
    if candidates and not _traces(env, candidates):
        for name in candidates:  # one at a time, to name the ones the env cannot trace
            if not _traces(env, [name]):
                problems[name] = ("the env uses it in a shape or a Python branch (it cannot "
                                  "be traced)")
    return problems


def _shape(x) -> tuple[int, ...]:
    """The shape of an array, a `jax.ShapeDtypeStruct` or a Python scalar (())."""
    return tuple(getattr(x, "shape", ()))


def _grid_index(leaves) -> int | None:
    """The index of the one leaf of rank 2 or 3 among several (a board beside scalars and
    short vectors), else None (a single leaf, no such leaf, or more than one)."""
    ranks = [len(_shape(x)) for x in leaves]
    grids = [i for i, rank in enumerate(ranks) if rank in (2, 3)]
    if len(leaves) < 2 or len(grids) != 1 or max(ranks) > 3:
        return None
    return grids[0]


def observation_array(obs) -> jax.Array:
    """A suite's observation as one float32 array: an array keeps its shape (a grid stays a
    grid for the CNN), a dict or other pytree becomes the concatenation of its flattened
    leaves, in the pytree's key order, except that a pytree's one grid (its only leaf of rank
    2 or 3) comes first, so that a CNN can read it back (`observation_grid`)."""
    leaves = jax.tree.leaves(obs)
    if len(leaves) == 1:
        return jnp.asarray(leaves[0]).astype(jnp.float32)
    grid = _grid_index(leaves)
    if grid is not None:
        leaves = [leaves[grid], *leaves[:grid], *leaves[grid + 1:]]
    return jnp.concatenate([jnp.ravel(jnp.asarray(x)).astype(jnp.float32) for x in leaves])


def observation_grid(obs) -> tuple[int, int, int] | None:
    """The grid [H, W, C] at the front of `observation_array`'s flat vector for a pytree
    ``obs`` whose one leaf of rank 2 or 3 is a board (a 2-D board has one channel); None
    where the observation is one array or has no such single grid."""
    leaves = jax.tree.leaves(obs)
    grid = _grid_index(leaves)
    if grid is None:
        return None
    shape = tuple(int(d) for d in _shape(leaves[grid]))
    return (*shape, 1) if len(shape) == 2 else shape


def default_keys(tree):
    """``tree`` with its PRNG keys in JAX's default implementation (the same bits). The first
    reset's keys are threefry2x32 and the rollout's, on CPU, `jaxppo.prng`'s: a suite that
    keeps a key in its state would otherwise carry two key types, which `SuiteEnv.step`'s
    select between a reset state and a stepped one refuses. Python scalars pass as they are."""

    def default(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jax.random.key_data(x))
        return x

    return jax.tree.map(default, tree)


def step_batch(env, keys: jax.Array, state, action: jax.Array):
    """``env.step`` over a batch of envs (leading axis): the env's own ``batch_step`` where it
    has one (`SuiteEnv`), else ``jax.vmap(env.step)``."""
    batch_step = getattr(env, "batch_step", None)
    if batch_step is None:
        return jax.vmap(env.step)(keys, state, action)
    return batch_step(keys, state, action)


def lazy_cond(pred: jax.Array, if_true, if_false, operands):
    """``lax.cond(pred, if_true, if_false, operands)`` for branches that agree wherever
    ``pred`` is False (``if_true`` only adds work that changes nothing there). Under vmap a
    plain cond with a batched predicate runs both branches for every element; this one runs
    ``if_true``, vmapped, for the whole batch when any element needs it, else ``if_false``,
    so the extra work is still skipped at the steps where no element needs it."""

    # The branches' closed-over arrays (an env's traced params, under a vmap over runs) become
    # explicit arguments: custom_vmap would not see their batch axis in a closure. Fresh
    # lambdas: closure_convert caches its result per function, which must not outlive a trace.
    true_fn, true_consts = jax.closure_convert(lambda o: if_true(o), operands)
    false_fn, false_consts = jax.closure_convert(lambda o: if_false(o), operands)

    def true_branch(args):
        operands, consts = args
        return true_fn(operands, *consts[:len(true_consts)])

    def false_branch(args):
        operands, consts = args
        return false_fn(operands, *consts[len(true_consts):])

    @jax.custom_batching.custom_vmap
    def run(pred, args):
        return jax.lax.cond(pred, true_branch, false_branch, args)

    @run.def_vmap
    def _batched(axis_size, in_batched, pred, args):
        pred_batched, args_batched = in_batched
        if not pred_batched:
            pred = jnp.broadcast_to(pred, (axis_size,))
        operands, consts = args
        operands = jax.tree.map(
            lambda x, batched: x if batched else jnp.broadcast_to(x, (axis_size, *x.shape)),
            operands, args_batched[0])
        in_axes = ((0, [0 if batched else None for batched in args_batched[1]]),)
        out = lazy_cond(jnp.any(pred), jax.vmap(true_branch, in_axes=in_axes),
                        jax.vmap(false_branch, in_axes=in_axes), (operands, list(consts)))
        return out, jax.tree.map(lambda _: True, out)

    return run(pred, (operands, [*true_consts, *false_consts]))


def reset_slots(num_envs: int) -> int:
    """Resets `SuiteEnv.batch_step` computes at a step where only a few of its ``num_envs``
    envs finished: one per 16 envs (at least one)."""
    return max(1, -(-num_envs // 16))


class _Advanced(struct.PyTreeNode):
    """A suite env stepped, before any reset (`SuiteEnv._advance`)."""

    env_state: Any
    final_obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        return self.terminated | self.truncated


class SuiteEnv:
    """The base of the adapters for suites beyond gymnax (`jaxppo.envs.<suite>`).

    A subclass wraps a suite env that does NOT reset by itself (the suite's raw env, under
    any auto-reset wrapper it ships) through two pure methods:

        _reset(key)                -> (obs, suite_state)
        _step(key, state, action)  -> (obs, suite_state, reward, terminated, truncated)

    and sets ``env_id``, ``action_space`` (`ActionSpace`) and ``time_limit`` (steps after
    which an episode is cut, counted here, or None where the suite cuts episodes itself and
    says so through ``truncated``). This base resets a finished env, keeping the observation
    the episode ended on as `Step.final_obs`, ends an episode at the time limit as a
    truncation (never a termination), and counts the episode's return and length. A suite
    with invalid actions overrides ``_action_mask(suite_state) -> [num_actions]`` and sets
    ``has_action_mask``. Observations pass through ``_observe`` (`observation_array` unless
    overridden). A suite whose reset costs less than gathering and scattering its state sets
    ``partial_resets = False`` (`batch_step`).
    """

    env_id: str
    action_space: ActionSpace
    time_limit: int | None = None
    has_action_mask: bool = False
    # Reset a few finished envs alone (`batch_step`); False where a reset costs less than
    # gathering and scattering the suite's state does.
    partial_resets: bool = True

    def _reset(self, key: jax.Array):
        raise NotImplementedError

    def _step(self, key: jax.Array, state, action: jax.Array):
        raise NotImplementedError

    def _action_mask(self, state) -> jax.Array:
        raise NotImplementedError

    def _observation_tree(self, obs):
        """The part of the suite's observation that the networks read (all of it here)."""
        return obs

    def _observe(self, obs) -> jax.Array:
        return observation_array(self._observation_tree(obs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id!r})"

    @property
    def observation_shape(self) -> tuple[int, ...]:
        shape = jax.eval_shape(lambda key: self._observe(self._reset(key)[0]),
                               jax.random.key(0)).shape
        return tuple(int(d) for d in shape) or (1,)

    @property
    def observation_size(self) -> int:
        return int(np.prod(self.observation_shape))

    @property
    def observation_grid(self) -> tuple[int, int, int] | None:
        """[H, W, C] where a flat observation begins with a grid that a CNN reads, the rest
        being features it joins after its convolutions (`observation_grid`); else None."""
        if len(self.observation_shape) != 1:
            return None
        tree = jax.eval_shape(lambda key: self._observation_tree(self._reset(key)[0]),
                              jax.random.key(0))
        return observation_grid(tree)

    @property
    def max_episode_steps(self) -> int | None:
        return self.time_limit

    def _shaped(self, obs) -> jax.Array:
        return jnp.reshape(self._observe(obs), self.observation_shape)

    def _env_action(self, action: jax.Array) -> jax.Array:
        space = self.action_space
        if space.discrete:
            return action
        return jnp.clip(action, space.low, space.high)  # as `GymnaxEnv._env_action`

    def action_mask(self, state: EpisodeState) -> jax.Array:
        """Valid actions [K] (True = allowed); all True for a suite without masks."""
        if self.has_action_mask:
            return jnp.asarray(self._action_mask(state.env_state), jnp.bool_)
        return jnp.ones((max(self.action_space.num_actions, 1),), jnp.bool_)

    def _plain_reset(self, key: jax.Array):
        obs, env_state = self._reset(default_keys(key))
        return obs, default_keys(env_state)

    def reset(self, key: jax.Array) -> tuple[jax.Array, EpisodeState]:
        obs, env_state = self._plain_reset(key)
        zero = jnp.zeros((), jnp.float32)
        return self._shaped(obs), EpisodeState(env_state, zero, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: EpisodeState, action: jax.Array
             ) -> tuple[EpisodeState, Step]:
        step_key, reset_key = jax.random.split(key)
        advanced = self._advance(step_key, state, action)
        return self._finish(advanced, *self._plain_reset(reset_key))

    def batch_step(self, keys: jax.Array, state: EpisodeState, action: jax.Array, *,
                   slots: int | None = None) -> tuple[EpisodeState, Step]:
        """`step` over a batch of N envs (leading axis), computing only the resets needed:
        none at a step where no env finished (a physics suite's reset costs about what its
        step does, and with long episodes most steps end none), only the finished envs' where
        at most `reset_slots(N)` finished (a generated world, as Craftax's, costs several
        steps, and with many envs a few end at most steps), every env's otherwise. Under an
        outer vmap (seeds, settings) a step takes the cheapest way that serves every run
        (`lazy_cond`).

        The numbers are ``jax.vmap(step)``'s wherever the suite's reset gives the same
        numbers for a key in a batch of any size. Craftax's world generation does not: on a
        CPU, the world a key draws depends on the batch its reset runs in, so here it may be
        another world than in ``jax.vmap(step)``, as random, and the same on every rerun.

        ``slots``: the reset slots, default `reset_slots(N)` (N where the adapter sets
        ``partial_resets = False``); N or more computes every env's reset wherever one
        finished."""
        step_keys, reset_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
        advanced = jax.vmap(self._advance)(step_keys, state, action)
        num_envs = advanced.done.shape[0]
        if slots is None:
            slots = reset_slots(num_envs) if self.partial_resets else num_envs
        if slots < 1:
            raise ValueError(f"batch_step: slots must be >= 1, got {slots}")

        def all_resets(operands):
            advanced, reset_keys = operands
            fresh = jax.vmap(self._plain_reset)(reset_keys)
            return jax.vmap(self._finish)(advanced, *fresh)

        def some_resets(operands):
            advanced, reset_keys = operands
            # The finished envs' indices, then N (out of range: dropped) in the unused slots.
            (which,) = jnp.nonzero(advanced.done, size=slots, fill_value=num_envs)
            obs, env_state = jax.vmap(self._plain_reset)(reset_keys[jnp.minimum(
                which, num_envs - 1)])

            def scattered(base, fresh):
                return base.at[which].set(fresh, mode="drop")

            # The envs that did not finish keep their own state (`_finish` picks it there).
            env_state = jax.tree.map(scattered, advanced.env_state, env_state)
            obs = jax.tree.map(lambda x: scattered(jnp.zeros((num_envs, *x.shape[1:]),
                                                             x.dtype), x), obs)
            return jax.vmap(self._finish)(advanced, obs, env_state)

        def few_or_all_resets(operands):
            return lazy_cond(jnp.sum(operands[0].done) > slots, all_resets, some_resets,
                             operands)

        with_resets = all_resets if slots >= num_envs else few_or_all_resets

        def without_resets(operands):
            return jax.vmap(self._finish)(operands[0], None, None)

        return lazy_cond(jnp.any(advanced.done), with_resets, without_resets,
                         (advanced, reset_keys))

    def _advance(self, key: jax.Array, state: EpisodeState, action: jax.Array) -> _Advanced:
        """One step of the suite env, the episode's end decided; no reset yet."""
        obs, env_state, reward, terminated, truncated = self._step(
            default_keys(key), state.env_state, self._env_action(action))
        reward = jnp.reshape(jnp.asarray(reward, jnp.float32), ())
        terminated = jnp.reshape(jnp.asarray(terminated, jnp.bool_), ())
        episode_length = state.episode_length + 1
        truncated = jnp.reshape(jnp.asarray(truncated, jnp.bool_), ())
        if self.time_limit is not None:
            truncated = truncated | (episode_length >= self.time_limit)
        truncated = truncated & ~terminated  # a terminal state ends the MDP, cut or not
        return _Advanced(default_keys(env_state), self._shaped(obs), reward, terminated,
                         truncated, state.episode_return + reward, episode_length)

    def _finish(self, advanced: _Advanced, reset_obs, reset_state
                ) -> tuple[EpisodeState, Step]:
        """The step's result: a finished env restarts from the reset given (None: no env of
        the batch finished, so none is needed)."""
        a = advanced
        done = a.done
        if reset_state is None:
            env_state, obs = a.env_state, a.final_obs
        else:
            env_state = jax.tree.map(lambda fresh, old: jnp.where(done, fresh, old),
                                     reset_state, a.env_state)
            obs = jnp.where(done, self._shaped(reset_obs), a.final_obs)
        new_state = EpisodeState(env_state, jnp.where(done, 0.0, a.episode_return),
                                 jnp.where(done, 0, a.episode_length))
        step = Step(obs=obs, reward=a.reward, terminated=a.terminated, truncated=a.truncated,
                    final_obs=a.final_obs, episode_return=a.episode_return,
                    episode_length=a.episode_length)
        return new_state, step
