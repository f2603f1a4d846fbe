"""MuJoCo Playground's DM Control Suite as jaxppo envs: every id of
``mujoco_playground.registry.dm_control_suite``, as "playground/<Name>".

Physics runs on MJX's pure-JAX implementation (``impl="jax"``), which lowers on every
backend; the suite's default, ``"warp"``, needs a CUDA device. Playground's locomotion and
manipulation envs are left out: loading any of them first clones the MuJoCo Menagerie robot
assets from the network (``mjx_env.ensure_menagerie_exists``).

Episodes: a playground env has no clock of its own; its config's ``episode_length`` (1000
control steps) is what playground's training wrapper (brax's ``EpisodeWrapper``) cuts at, so
here it is the `time_limit`, a truncation. The env's ``state.done`` is the one real end,
"the physics blew up" (NaN in qpos or qvel), a termination. The adapter steps the raw env
(its ``reset``/``step``), never playground's auto-reset wrapper, which replaces the
observation an episode ended on by the reset's; `core.SuiteEnv` resets instead.

Env params (``Config.env_params``, `physics.PHYSICS_PARAMS`): the physics of a run, set on the
MJX model the env steps (gravity; scales of every body's mass and inertia, of every geom's
friction, of every joint's damping). They are traced like any dynamic field, so a sweep over
them (an env sweep, or domain randomization across runs) is one compiled call.

Observations are the env's state vector: every supported env gives one float array (dict
observations come only with ``vision=True`` or with locomotion's privileged critic state,
neither of which is offered). Actions are the ``action_size`` controls in [-1, 1].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxppo.envs import core, physics


@functools.cache
def ids() -> tuple[str, ...]:
    """Every env of playground's DM Control Suite registry (names after "playground/")."""
    from mujoco_playground import registry

    return tuple(registry.dm_control_suite.ALL_ENVS)


def make(name: str, *, episode_length: int | None = None) -> PlaygroundEnv:
    """The playground env ``name`` (an id of `ids`); ``episode_length`` replaces its config's
    (the time limit, in control steps)."""
    return PlaygroundEnv(name, episode_length=episode_length)


def _finite(x: jax.Array) -> jax.Array:
    return jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x))


class PlaygroundEnv(physics.PhysicsParams, core.SuiteEnv):
    """One DM Control Suite env of playground. The suite state is playground's ``State``
    (MJX data, observation, reward, done, metrics, info); ``suite_env`` is the raw env. Its
    env params are `physics.PHYSICS_PARAMS`."""

    # The MJX model the raw env steps (its ``mjx_model``).
    _model_field = "_mjx_model"

    def __init__(self, name: str, *, episode_length: int | None = None) -> None:
        from mujoco_playground import registry

        config = registry.dm_control_suite.get_default_config(name)
        config.impl = "jax"
        if episode_length is not None:
            config.episode_length = int(episode_length)
        if config.action_repeat != 1:
            # Playground's wrapper would repeat each action and count episode_length in
            # physics-control steps; no registry env does, so the adapter does not either.
            raise ValueError(f"playground env {name!r} repeats actions "
                             f"({config.action_repeat}x), which the adapter does not support")
        self.env_id = f"playground/{name}"
        self.suite_env = registry.dm_control_suite.load(name, config=config)
        size = int(self.suite_env.action_size)
        self.action_space = core.ActionSpace(
            discrete=False, shape=(size,), low=np.full((size,), -1.0, np.float32),
            high=np.full((size,), 1.0, np.float32))
        self.time_limit = int(config.episode_length)
        # MJX's step is thousands of primitives: jitted here, an eager reset or step runs one
        # compiled program instead of dispatching each; under an outer jit it is inlined.
        self._suite_reset = jax.jit(self.suite_env.reset)
        self._suite_step = jax.jit(self.suite_env.step)

    def _reset(self, key: jax.Array):
        with jax.numpy_rank_promotion("allow"):  # MJX broadcasts e.g. [3, 3] against [3]
            state = self._suite_reset(key)
        return state.obs, state

    def _step(self, key: jax.Array, state, action: jax.Array):
        del key  # playground's randomness comes from the state (``info["rng"]``)
        with jax.numpy_rank_promotion("allow"):
            state = self._suite_step(state, action)
        # done is playground's NaN guard: the observation and reward of that step are NaN;
        # zeros keep them out of the value targets and normalizers (terminated: no bootstrap).
        return (jax.tree.map(_finite, state.obs), state, _finite(state.reward), state.done > 0,
                jnp.zeros((), jnp.bool_))
