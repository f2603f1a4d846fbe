"""Craftax (Matthews et al. 2024) as jaxppo envs: ids "craftax/<name>".

Craftax's envs come in an auto-reset form, which swaps the observation an episode ended on
for a fresh one, and a NoAutoReset form; this adapter wraps the NoAutoReset one
(``make_craftax_env_from_name(name, auto_reset=False)``) and `core.SuiteEnv` resets.

Craftax reports one ``done`` (``is_game_over``: ``timestep >= max_timesteps``, or the player
died, or, in Classic, stands in lava, or, in full Craftax, has beaten the final boss). Here
the time limit is a truncation and the rest a termination: ``terminated`` is the suite's own
``is_terminal`` asked with no time limit, ``truncated`` is ``timestep >= max_timesteps``, and
dying on the last step is a termination.

Symbolic observations are flat float32 vectors; pixel observations stay HxWx3 float32 images
in [0, 1] for ``encoder="cnn"``. Craftax has no action masks.
"""

from __future__ import annotations

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxppo.envs import core

# Craftax's names with a NoAutoReset env (craftax/craftax_env.py).
_NAMES = ("Craftax-Classic-Symbolic-v1", "Craftax-Classic-Pixels-v1", "Craftax-Symbolic-v1",
          "Craftax-Pixels-v1")

# A time limit no episode reaches: `is_terminal` with it is Craftax's done without the limit.
_NO_TIME_LIMIT = int(np.iinfo(np.int32).max)



def ids() -> tuple[str, ...]:
    """The Craftax names this adapter supports (after "craftax/")."""
    return _NAMES


def make(name: str) -> CraftaxEnv:
    """The Craftax env ``name`` with its default params."""
    return CraftaxEnv(name)


class CraftaxEnv(core.TunableParams, core.SuiteEnv):
    """One Craftax env as a jaxppo env. Its float ``EnvParams`` (the mobs' spawn chances)
    are env params (``Config.env_params``, `core.TunableParams`).

    Args:
        name: one of `ids()`.
        params: Craftax ``EnvParams`` of that env (default: its ``default_params``); its
            ``max_timesteps`` is the time limit, so it must be a Python int.
    """

    def __init__(self, name: str, params=None) -> None:
        from craftax.craftax_env import make_craftax_env_from_name

        if name not in _NAMES:
            raise ValueError(f"unknown Craftax env {name!r}; known: {', '.join(_NAMES)}")
        self.env_id = f"craftax/{name}"
        self.suite_env = make_craftax_env_from_name(name, auto_reset=False)
        self.params = self.suite_env.default_params if params is None else params
        self.action_space = core.ActionSpace(discrete=True,
                                             num_actions=int(self.suite_env.num_actions))
        self.time_limit = int(self.params.max_timesteps)
        self._no_limit_params = self.params.replace(max_timesteps=_NO_TIME_LIMIT)
        self._problems = None

    _limit_param = "max_timesteps"

    @property
    def _params(self):
        return self.params

    def _replaced(self, values) -> CraftaxEnv:
        env = copy.copy(self)
        env.params = self.params.replace(
            **{name: jnp.asarray(value, jnp.float32) for name, value in values.items()})
        env._no_limit_params = env.params.replace(max_timesteps=_NO_TIME_LIMIT)
        return env

    def _fixed(self, params) -> tuple:
        return (int(self.suite_env.action_space(params).n),
                tuple(self.suite_env.observation_space(params).shape))

    @functools.cached_property
    def observation_shape(self) -> tuple[int, ...]:
        # Cached: the base traces a reset (Craftax's world generation) on every call.
        return super().observation_shape

    def _reset(self, key: jax.Array):
        obs, state = self.suite_env.reset(key, self.params)
        return obs, state

    def _step(self, key: jax.Array, state, action: jax.Array):
        obs, state, reward, _, _ = self.suite_env.step(key, state, action, self.params)
        terminated = self.suite_env.is_terminal(state, self._no_limit_params)
        truncated = jnp.asarray(state.timestep) >= self.params.max_timesteps
        return obs, state, reward, terminated, truncated
