"""Brax's own environments as jaxppo envs, as "brax/<name>" (ant, halfcheetah, hopper, ...).

Each env is ``brax.envs.get_environment(name, backend=...)``, on brax's "generalized"
pipeline by default (pure JAX, so it runs on CPU as on accelerators; "positional", "spring"
and "mjx" can be asked for through `make`). The adapter steps that raw env, never brax's
``EpisodeWrapper`` or ``AutoResetWrapper``: the latter replaces the observation an episode
ended on by the reset's, and the former reports its cut through ``done``, the flag brax's
envs also use for real ends. Here the env's ``state.done`` (an unhealthy hopper, a fallen
pendulum) is a termination, and the time limit (1000 steps, brax's ``create`` default) is
a truncation counted by `core.SuiteEnv`.

Env params (``Config.env_params``, `physics.PHYSICS_PARAMS`): gravity and scales of every
body's mass and inertia, every geom's friction and every joint's damping, set on the env's
``sys`` (`physics.with_physics`), traced like any dynamic field.

Observations are each env's state vector. Actions are in [-1, 1], the range brax's own
trainers act in: inverted_pendulum scales it to its control range, and envs with a narrower
control range (humanoid's [-0.4, 0.4]) clip to it (``brax.actuator.to_tau``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxppo.envs import core, physics

# The physics envs of brax's registry (``brax.envs._envs``, private), less the two of
# `left_out` (swimmer's fluid forces run only on the generalized pipeline).
_NAMES = ("ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
          "inverted_double_pendulum", "pusher", "reacher", "walker2d")

# Steps after which an episode is cut: the default of ``brax.envs.create``.
EPISODE_LENGTH = 1000


def ids() -> tuple[str, ...]:
    """The brax envs offered (names after the "brax/" prefix)."""
    return _NAMES


def left_out() -> dict[str, str]:
    """Brax's envs not offered, and why."""
    return {"swimmer": "its fluid forces call jnp.clip(a_min=...), which JAX 0.10 no longer "
                       "accepts",
            "fast": "a stub without physics, for brax's own unit tests"}


def make(name: str, *, episode_length: int = EPISODE_LENGTH,
         backend: str = "generalized") -> BraxEnv:
    """The brax env ``name`` (an id of `ids`), cut after ``episode_length`` steps, on the
    physics ``backend`` (one of brax's pipelines)."""
    return BraxEnv(name, episode_length=episode_length, backend=backend)


class BraxEnv(physics.PhysicsParams, core.SuiteEnv):
    """One brax env. The suite state is brax's ``State`` (pipeline state, observation,
    reward, done, metrics, info); ``suite_env`` is the raw env. Its env params are
    `physics.PHYSICS_PARAMS`."""

    # The brax System the raw env steps.
    _model_field = "sys"

    def __init__(self, name: str, *, episode_length: int = EPISODE_LENGTH,
                 backend: str = "generalized") -> None:
        from brax import envs as brax_envs

        self.env_id = f"brax/{name}"
        self.suite_env = brax_envs.get_environment(name, backend=backend)
        size = int(self.suite_env.action_size)
        self.action_space = core.ActionSpace(
            discrete=False, shape=(size,), low=np.full((size,), -1.0, np.float32),
            high=np.full((size,), 1.0, np.float32))
        self.time_limit = int(episode_length)
        # A physics step is thousands of primitives: jitted here, an eager reset or step runs
        # one compiled program instead of dispatching each; under an outer jit it is inlined.
        self._suite_reset = jax.jit(self.suite_env.reset)
        self._suite_step = jax.jit(self.suite_env.step)

    def _reset(self, key: jax.Array):
        with jax.numpy_rank_promotion("allow"):  # brax broadcasts e.g. [11, 3] against [3]
            state = self._suite_reset(key)
        return state.obs, state

    def _step(self, key: jax.Array, state, action: jax.Array):
        del key  # brax's steps are deterministic
        with jax.numpy_rank_promotion("allow"):
            state = self._suite_step(state, action)
        return state.obs, state, state.reward, state.done, jnp.zeros((), jnp.bool_)
