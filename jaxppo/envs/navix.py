"""Navix (MiniGrid in JAX) as jaxppo envs: every id of navix's registry, as "navix/<name>".

Observations are navix's ``symbolic`` grid, [H, W, 3] of (object tag, colour, state) per cell
as MiniGrid encodes it, as float32: a grid for the "cnn" encoder. It is chosen over
``categorical`` ([H, W] of tags only) because its third channel carries the agent's direction
and each door's open/closed/locked state, without which the observation is not Markov.

Episodes are those of ``navix.make(name)``: its ``max_steps`` (100 unless navix's registry
changes it) is the time limit. Navix marks each timestep with ``step_type``: TERMINATION (2)
for an absorbing state (goal, lava, a ball hit, a door "done"), TRUNCATION (1) when the
step count reaches ``max_steps`` in any other state; a step that is both is a termination.
The adapter steps navix's ``Environment._step``, under its public ``step``, which resets on
the call after an episode ended (dropping that call's action) and so never shows the final
observation and reset in one step; `core.SuiteEnv` resets instead.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import navix
from navix.environments import environment as navix_environment
from navix.rendering import cache as navix_cache

from jaxppo.envs import core


@functools.cache
def ids() -> tuple[str, ...]:
    """Every env of navix's registry (names after the "navix/" prefix)."""
    return tuple(navix.registry())


def make(name: str) -> NavixEnv:
    """The navix env ``name`` (an id of `ids`) with symbolic observations."""
    return NavixEnv(name)


def _no_cache():
    """An empty rendering cache: navix's cache holds the RGB tiles of the grid ([H * W + 1,
    8, 8, 3] per env), read only by its rgb observations, and would be carried and selected
    on every auto-reset."""
    return navix_cache.RenderingCache(
        patches=jnp.zeros((0, navix_cache.TILE_SIZE, navix_cache.TILE_SIZE, 3), jnp.uint8))


def _lean(timestep):
    """``timestep`` as the state carried between steps: without its rendering cache and its
    info dict (a running return, which the base class counts); the other leaves with the
    reset's dtypes, so that a scan's carry keeps one type."""
    state = timestep.state.replace(cache=_no_cache())
    return timestep.replace(state=state, info={},
                            reward=jnp.asarray(timestep.reward, jnp.float32),
                            action=jnp.asarray(timestep.action, jnp.int32),
                            step_type=jnp.asarray(timestep.step_type, jnp.int32),
                            t=jnp.asarray(timestep.t, jnp.int32))


class NavixEnv(core.SuiteEnv):
    """One navix env. The suite state is navix's `Timestep` (the true state, its step count
    ``t`` and its ``step_type``), lightened by `_lean`."""

    # A grid resets in less time than gathering and scattering its state takes: 64 envs of
    # Empty-8x8 stepped 15% to 95% faster with every env's reset than with the few finished
    # envs' alone, over five runs (bench/results/resets/navix).
    partial_resets = False

    def __init__(self, name: str) -> None:
        self.env_id = f"navix/{name}"
        self._env = navix.make(name, observation_fn=navix.observations.symbolic)
        self.action_space = core.ActionSpace(discrete=True,
                                             num_actions=len(self._env.action_set))
        # The same cut as navix's own (t >= max_steps), counted by the base class too, so
        # that `max_episode_steps` knows it.
        self.time_limit = int(self._env.max_steps)

    def _reset(self, key: jax.Array):
        with jax.numpy_rank_promotion("allow"):  # navix broadcasts [1, 2] against [2]
            timestep = self._env.reset(key, _no_cache())
        return timestep.observation, _lean(timestep)

    def _step(self, key: jax.Array, timestep, action: jax.Array):
        # Navix's randomness (dynamic obstacles) comes from the key in its state, set at reset.
        del key
        step_types = navix_environment.StepType
        with jax.numpy_rank_promotion("allow"):
            new = self._env._step(timestep, jnp.asarray(action, jnp.int32))
        terminated = new.step_type == step_types.TERMINATION
        truncated = new.step_type == step_types.TRUNCATION
        return new.observation, _lean(new), new.reward, terminated, truncated
