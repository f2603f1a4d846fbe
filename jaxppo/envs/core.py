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


class EpisodeState(struct.PyTreeNode):
    """Env state plus the running statistics of the current episode."""

    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array


class GymnaxEnv:
    """A gymnax environment with its default params, as a jaxppo env.

    Observations are float32 in the env's own shape (``observation_shape``; a scalar becomes
    [1]), so a grid reaches a CNN as a grid; the MLP encoder flattens them. Episode return
    and length are tracked in the state.
    """

    def __init__(self, env_id: str, env, params) -> None:
        self.env_id = env_id
        self._env = env
        self._params = params
        self.action_space = _action_space(env.action_space(params))
        # Envs with invalid actions expose them through `action_mask(state, params) -> [K]`.
        self.has_action_mask = callable(getattr(env, "action_mask", None))
        obs_shape = tuple(int(d) for d in env.observation_space(params).shape)
        self.observation_shape = obs_shape or (1,)
        self.observation_size = int(np.prod(self.observation_shape))

    def __repr__(self) -> str:
        return f"GymnaxEnv({self.env_id!r})"

    @property
    def max_episode_steps(self) -> int | None:
        """The env's time limit (gymnax's ``max_steps_in_episode``), or None without one."""
        limit = getattr(self._params, "max_steps_in_episode", None)
        return None if limit is None else int(limit)

    def _shaped(self, obs: jax.Array) -> jax.Array:
        return jnp.reshape(obs, self.observation_shape).astype(jnp.float32)

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
