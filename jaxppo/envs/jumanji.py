"""Jumanji as jaxppo envs: every registered id with discrete actions, as "jumanji/<id>".

Actions, from the env's ``action_spec`` and the shape of its observation's ``action_mask``:

- ``DiscreteArray(K)``: discrete, K actions; the mask [K] as it is.
- ``MultiDiscreteArray`` with one mask row per component, [D, K] (agents, machines,
  vehicles: Cleaner, Connector, JobShop, LevelBasedForaging, MMST, RobotWarehouse):
  multi-discrete, nvec (K,) * D; the flat mask is the rows' concatenation.
- ``MultiDiscreteArray`` whose mask is joint, of the shape nvec (Minesweeper's [row, col],
  BinPack's [ems, item], FlatPack, Sudoku, Tetris): one discrete action per cell of the mask,
  prod(nvec) of them, row-major, unravelled into jumanji's D integers. A joint mask is not a
  product of masks per component (a cell's row and column may each be valid, the cell not),
  so only a joint distribution can keep to it; jumanji's own networks for these envs are
  joint too.
- ``MultiDiscreteArray`` without a mask (RubiksCube): multi-discrete, nvec.
- An integer ``BoundedArray`` [D] from 0 with a mask [D, K] (MultiCVRP): multi-discrete,
  nvec (K,) * D, as the mask gives it (the spec's maximum is K, one above the last node).

`LEFT_OUT` names the registered ids not offered, and why.

Ends. A jumanji TimeStep ends an episode with ``step_type`` LAST: ``termination`` gives it
discount 0 (a terminal state), ``truncation`` discount 1 (jumanji/types.py). Per-agent
rewards and discounts (Connector, LevelBasedForaging) are summed and maxed, as
``jumanji.wrappers.MultiToSingleWrapper`` does: the team's reward, terminal when every
agent is. Most envs with a time limit end there with ``termination`` (`LIMIT_AS_TERMINATION`),
which would stop bootstrapping at a cut; they are built with one more step than registered,
and `core.SuiteEnv` cuts them at the registered limit as a truncation, so only their real
terminal states are terminations. Connector and LevelBasedForaging return ``truncation``
at their limit; the base class cuts them at the same step.

Observations: the ``action_mask`` field is left out (it feeds `JumanjiEnv.action_mask`);
one remaining array keeps its shape (a 2-D board gets a channel axis, [H, W, 1], for the
CNN); several are flattened and concatenated (`core.observation_array`), the one board among
them first where there is one (Snake's grid, Minesweeper's board, Maze's walls), which a CNN
reads as a grid and joins the other fields after its convolutions (`observation_grid`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import jumanji
from flax import struct
from jumanji import specs

from jaxppo.envs import core

# Registered ids that are not offered, and why.
LEFT_OUT = {
    "SearchAndRescue-v0": "continuous actions (a float BoundedArray [agents, 2])",
    "Sokoban-v0": "its generator downloads the Boxoban levels from the Hugging Face Hub "
                  "when the env is made",
}

# Env classes whose step ends an episode at ``state.step_count >= time_limit`` with
# ``termination`` (discount 0), read in each one's ``step``.
LIMIT_AS_TERMINATION = frozenset({"Cleaner", "MMST", "Maze", "PacMan", "RobotWarehouse",
                                  "RubiksCube", "SlidingTilePuzzle", "Snake", "Tetris"})


def left_out() -> dict[str, str]:
    """The registered ids not offered, and why (`LEFT_OUT`)."""
    return LEFT_OUT


@functools.cache
def ids() -> tuple[str, ...]:
    """Every registered jumanji id but `LEFT_OUT` (names after the "jumanji/" prefix)."""
    return tuple(sorted(set(jumanji.registered_environments()) - set(LEFT_OUT)))


def make(name: str) -> JumanjiEnv:
    """The jumanji env ``name`` (an id of `ids`)."""
    return JumanjiEnv(name)


class JumanjiState(struct.PyTreeNode):
    """What `JumanjiEnv` carries between steps.

    Attributes:
        state: jumanji's state.
        action_mask: the flat mask of the last observation [num_actions] (bool), or None
            for an env without masks.
    """

    state: Any
    action_mask: jax.Array | None



def _without_mask(obs):
    if not hasattr(obs, "action_mask"):
        return obs
    if hasattr(obs, "_replace"):  # a NamedTuple
        return obs._replace(action_mask=None)
    return dataclasses.replace(obs, action_mask=None)


class JumanjiEnv(core.SuiteEnv):
    """One jumanji env (see the module docstring for its actions, ends and observations)."""

    def __init__(self, name: str) -> None:
        self.env_id = f"jumanji/{name}"
        env = jumanji.make(name)
        limit = getattr(env, "time_limit", None)
        self.time_limit = None if limit is None else int(limit)
        if type(env).__name__ in LIMIT_AS_TERMINATION:
            env = jumanji.make(name, time_limit=self.time_limit + 1)
        self._env = env
        mask = getattr(env.observation_spec, "action_mask", None)
        self.has_action_mask = mask is not None
        self._joint, self._nvec, self.action_space = self._spaces(
            None if mask is None else tuple(mask.shape))

    def _spaces(self, mask_shape: tuple[int, ...] | None):
        """(joint, jumanji's component sizes, the `core.ActionSpace`) of the action spec."""
        spec = self._env.action_spec
        if isinstance(spec, specs.DiscreteArray):
            return False, (), core.ActionSpace(discrete=True, num_actions=int(spec.num_values))
        if isinstance(spec, specs.MultiDiscreteArray):
            nvec = tuple(int(n) for n in spec.num_values.reshape(-1))
        elif (isinstance(spec, specs.BoundedArray) and jnp.issubdtype(spec.dtype, jnp.integer)
              and len(spec.shape) == 1 and mask_shape is not None and len(mask_shape) == 2
              and mask_shape[0] == spec.shape[0] and int(jnp.min(spec.minimum)) == 0):
            nvec = (mask_shape[1],) * mask_shape[0]
        else:
            raise ValueError(f"{self.env_id}: unsupported action spec {spec!r}: expected a "
                             "DiscreteArray or MultiDiscreteArray")
        if mask_shape == nvec and mask_shape != (len(nvec), max(nvec)):
            return True, nvec, core.ActionSpace(discrete=True, num_actions=math.prod(nvec))
        if mask_shape not in (None, (len(nvec), max(nvec))) or (
                mask_shape is not None and len(set(nvec)) != 1):
            raise ValueError(f"{self.env_id}: action mask {list(mask_shape)} fits neither "
                             f"the components {list(nvec)} nor their product")
        space = core.ActionSpace(discrete=True, num_actions=sum(nvec), shape=(len(nvec),),
                                 nvec=nvec)
        return False, nvec, space

    def _jumanji_action(self, action: jax.Array) -> jax.Array:
        if self._joint:
            action = jnp.stack(jnp.unravel_index(action, self._nvec))
        return jnp.asarray(action, self._env.action_spec.dtype)

    def _carried(self, state, timestep) -> JumanjiState:
        mask = timestep.observation.action_mask if self.has_action_mask else None
        return JumanjiState(state,
                            None if mask is None else jnp.ravel(mask).astype(jnp.bool_))

    def _reset(self, key: jax.Array):
        with jax.numpy_rank_promotion("allow"):  # the suite's code, not jaxppo's
            state, timestep = self._env.reset(key)
        return timestep.observation, self._carried(state, timestep)

    def _step(self, key: jax.Array, carried: JumanjiState, action: jax.Array):
        del key  # jumanji's randomness comes from the key in its state, set at reset
        with jax.numpy_rank_promotion("allow"):
            state, timestep = self._env.step(carried.state, self._jumanji_action(action))
        reward = jnp.sum(jnp.asarray(timestep.reward, jnp.float32))
        discount = jnp.max(timestep.discount)
        last = timestep.last()
        return (timestep.observation, self._carried(state, timestep), reward,
                last & (discount == 0), last & (discount > 0))

    def _action_mask(self, carried: JumanjiState) -> jax.Array:
        return carried.action_mask

    def _observation_tree(self, obs):
        return _without_mask(obs)

    def _observe(self, obs) -> jax.Array:
        array = super()._observe(obs)
        return array[..., None] if array.ndim == 2 else array
