"""XLand-MiniGrid (MiniGrid in JAX, with XLand's rule-based tasks) as jaxppo envs:
"xminigrid/<name>" for every MiniGrid id of xminigrid's registry.

Observations are xminigrid's egocentric view, [V, V, 2] of (tile, colour) per cell (V = 7 for
the MiniGrid ids, 3 for the Memory ones), as float32: a grid for the "cnn" encoder. Actions are
its six: forward, turn right, turn left, pick up, put down, toggle.

Episodes are those of ``xminigrid.make(name)``: a goal reached is a termination (discount 0,
reward 1 - 0.9 t / max_steps); the step count reaching ``max_steps`` is a truncation (discount
1); a step that is both is a termination. The adapter steps ``Environment.step``, which does
not reset, rather than xminigrid's auto-reset wrappers, which replace the observation an
episode ended on by the next episode's first; `core.SuiteEnv` resets instead.

The XLand-MiniGrid-R* ids are left out of `ids`: their task is a ruleset (goal, rules, objects)
and the default one has no goal, so no episode ever pays; the rulesets come from xminigrid's
benchmarks, which download on first use. With a ruleset at hand, `XMiniGridEnv` takes it
(``XMiniGridEnv("XLand-MiniGrid-R1-9x9", ruleset=benchmark.get_ruleset(0))``), and
`jaxppo.envs.register` makes it an id.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import xminigrid
from xminigrid import types as xminigrid_types

from jaxppo.envs import core


@functools.cache
def ids() -> tuple[str, ...]:
    """The MiniGrid envs of xminigrid's registry (names after the "xminigrid/" prefix)."""
    return tuple(name for name in xminigrid.registered_environments()
                 if name.startswith("MiniGrid-"))


def left_out() -> dict[str, str]:
    """The XLand ids of xminigrid's registry, not offered, and why."""
    why = ("its task is a ruleset, and the default one has no goal (no episode ever pays); "
           "rulesets come from xminigrid's benchmarks (xminigrid.load_benchmark, which "
           "downloads), and jaxppo.envs.xminigrid.XMiniGridEnv(name, ruleset=...) given to "
           "jaxppo.envs.register makes one an id")
    return {name: why for name in xminigrid.registered_environments()
            if name.startswith("XLand-MiniGrid")}


def make(name: str) -> XMiniGridEnv:
    """The xminigrid env ``name`` (an id of `ids`) with its default params."""
    return XMiniGridEnv(name)


class XMiniGridEnv(core.SuiteEnv):
    """One xminigrid env. The suite state is xminigrid's `State` (grid, agent, step count);
    ``params`` replace fields of the env's default params (``ruleset``, ``max_steps``,
    ``view_size``, ...), fixed for the env's life."""

    # Resetting the few finished envs alone (gathering and scattering their states) saves
    # nothing on grids this small: 64 envs of Empty-8x8 ran 666k env steps/s that way, 668k
    # with every env's reset where any finished (bench/results/resets/xminigrid).
    partial_resets = False

    def __init__(self, name: str, env_id: str | None = None, **params) -> None:
        self.env_id = env_id or f"xminigrid/{name}"
        self._env, self._params = xminigrid.make(name, **params)
        self.action_space = core.ActionSpace(discrete=True,
                                             num_actions=self._env.num_actions(self._params))
        # The same cut as xminigrid's own (step_num == max_steps), counted by the base class
        # too, so that `max_episode_steps` knows it.
        self.time_limit = int(self._params.max_steps)

    def _reset(self, key: jax.Array):
        with jax.numpy_rank_promotion("allow"):  # some layouts broadcast [2] with [1, 2]
            timestep = self._env.reset(self._params, key)
        return timestep.observation, timestep.state

    def _step(self, key: jax.Array, state, action: jax.Array):
        del key  # xminigrid's steps are deterministic
        # `Environment.step` reads the state alone from the timestep it is given.
        timestep = xminigrid_types.TimeStep(
            state=state, step_type=xminigrid_types.StepType.MID, reward=jnp.float32(0),
            discount=jnp.float32(1), observation=None)
        with jax.numpy_rank_promotion("allow"):
            new = self._env.step(self._params, timestep, jnp.asarray(action, jnp.int32))
        terminated = new.discount == 0
        truncated = new.last() & ~terminated
        return (new.observation, new.state, jnp.asarray(new.reward, jnp.float32), terminated,
                truncated)
