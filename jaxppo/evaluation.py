"""Evaluating trained policies, and loading one from a run directory.

    returns = jaxppo.evaluate(config, state, jax.random.key(1), num_episodes=100).returns
    policy = jaxppo.load("runs/cartpole")          # seed 0 of setting 0
    action = policy(obs)                           # the mode; policy(obs, key) samples

Evaluation runs E fresh episodes per run, in parallel envs, with the policy of the state
(observations normalized by the statistics frozen at the end of training, as the policy was
trained), deterministic (the mode) by default. The envs are vmapped, and so are runs: a state
of S seeds [S, ...] (or H x S runs from an experiment) is evaluated in one compiled call.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxppo import backend, envs, networks
from jaxppo import config as config_lib
from jaxppo import policy as policy_lib
from jaxppo import train as train_lib
from jaxppo.config import Config

DEFAULT_MAX_STEPS = 10_000


class EvalResult(NamedTuple):
    """Per-episode results, each [*runs, E] (runs: the leading axes of the state).

    Attributes:
        returns: undiscounted episode returns (the partial return where ``finished`` is
            False).
        lengths: episode lengths in steps.
        finished: the episode ended (terminated or truncated) within ``max_steps``.
    """

    returns: np.ndarray
    lengths: np.ndarray
    finished: np.ndarray


class _EvalCarry(struct.PyTreeNode):
    """The evaluation loop's carry: E envs, each frozen once its first episode ended."""

    t: jax.Array
    obs: jax.Array
    env_state: Any
    key: jax.Array
    done: jax.Array
    returns: jax.Array
    lengths: jax.Array


def _episodes(config: Config, policy: policy_lib.Policy, key: jax.Array, *, num_episodes: int,
              deterministic: bool, max_steps: int):
    """E episodes of one run's policy in E parallel envs (frozen once an episode ends)."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    reset_key, key = jax.random.split(backend.rollout_key(key))
    obs, env_state = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))

    def cond(carry: _EvalCarry):
        return jnp.logical_and(carry.t < max_steps, ~jnp.all(carry.done))

    def body(carry: _EvalCarry):
        key, act_key, step_key = jax.random.split(carry.key, 3)
        mask = jax.vmap(env.action_mask)(carry.env_state) if config.action_masking else None
        dist = networks.policy(network, policy.params, config,
                               policy_lib.observe(config, policy.normalizers, carry.obs), mask)
        action = dist.mode() if deterministic else dist.sample(act_key)
        env_state, step = jax.vmap(env.step)(jax.random.split(step_key, num_episodes),
                                             carry.env_state, action)
        ended = jnp.logical_and(step.done, ~carry.done)
        return _EvalCarry(
            t=carry.t + 1, obs=step.obs, env_state=env_state, key=key,
            done=jnp.logical_or(carry.done, step.done),
            returns=jnp.where(ended, step.episode_return, carry.returns),
            lengths=jnp.where(ended, step.episode_length, carry.lengths))

    start = _EvalCarry(
        t=jnp.zeros((), jnp.int32), obs=obs, env_state=env_state, key=key,
        done=jnp.zeros((num_episodes,), jnp.bool_),
        returns=jnp.zeros((num_episodes,), jnp.float32),
        lengths=jnp.zeros((num_episodes,), jnp.int32))
    end = jax.lax.while_loop(cond, body, start)
    # An episode cut by max_steps reports its partial return and length.
    returns = jnp.where(end.done, end.returns, end.env_state.episode_return)
    lengths = jnp.where(end.done, end.lengths, end.env_state.episode_length)
    return returns, lengths, end.done


@functools.partial(jax.jit, static_argnames=("num_episodes", "deterministic", "max_steps",
                                             "batched_config"))
def _evaluate_runs(config, policy, keys, *, num_episodes, deterministic, max_steps,
                   batched_config):
    fn = functools.partial(_episodes, num_episodes=num_episodes, deterministic=deterministic,
                           max_steps=max_steps)
    return jax.vmap(fn, in_axes=(0 if batched_config else None, 0, 0))(config, policy, keys)


def _as_policy(state_or_policy) -> policy_lib.Policy:
    if isinstance(state_or_policy, train_lib.TrainState):
        return policy_lib.Policy(state_or_policy.params, state_or_policy.normalizers)
    if isinstance(state_or_policy, policy_lib.Policy):
        return state_or_policy
    if isinstance(state_or_policy, LoadedPolicy):
        return state_or_policy.policy
    raise TypeError("evaluate needs a jaxppo.TrainState, a jaxppo.policy.Policy or a policy from "
                    f"jaxppo.load, got {type(state_or_policy).__name__}")


def evaluate(config: Config, state_or_policy, key: jax.Array, num_episodes: int = 10, *,
             deterministic: bool = True, max_steps: int | None = None) -> EvalResult:
    """Run the policy for ``num_episodes`` episodes per run; vmapped over envs and runs.

    Args:
        config: the Config the policy was trained with: one Config, or one stacked over the
            runs (`jaxppo.stack_configs`, as a sweep has).
        state_or_policy: a `TrainState` (or `jaxppo.policy.Policy`, or a `load`ed policy) of one
            run, or of several runs with leading axes (e.g. [S, ...] from a vmapped `train`).
        key: PRNG key (env resets; actions too when not deterministic).
        num_episodes: E, episodes per run, run in E parallel envs.
        deterministic: act with the mode (default) or sample from the policy.
        max_steps: steps after which unfinished episodes are cut (reported with
            ``finished=False``); default: the env's time limit, else 10,000.

    Returns:
        An `EvalResult` of host arrays [*runs, E].

    Raises:
        ValueError: for a bad ``num_episodes`` or ``max_steps``, or a config whose stacked
            runs do not match the state's.
    """
    train_lib.validate(config)
    config_lib.checked_int("num_episodes", num_episodes)
    if max_steps is not None:
        config_lib.checked_int("max_steps", max_steps)
    policy = _as_policy(state_or_policy)
    env = envs.make(config.env_id)
    if max_steps is None:
        max_steps = env.max_episode_steps or DEFAULT_MAX_STEPS
    obs_mean = policy.normalizers.obs.mean
    if obs_mean.shape[-1] != env.observation_size:
        raise ValueError(f"the policy was trained on observations of size {obs_mean.shape[-1]}"
                         f" but {config.env_id} has {env.observation_size}")
    runs_shape = tuple(obs_mean.shape[:-1])
    runs = int(np.prod(runs_shape)) if runs_shape else 1
    flat = jax.tree.map(lambda x: jnp.reshape(x, (runs, *x.shape[len(runs_shape):])), policy)
    leaves = jax.tree.leaves(config)
    batched = any(np.ndim(x) > 0 for x in leaves)
    if batched:
        sizes = {int(np.size(x)) for x in leaves}
        if sizes != {runs}:
            raise ValueError(f"the config is stacked over {sorted(sizes)} runs but the state "
                             f"holds {runs} runs {runs_shape}")
        config = jax.tree.map(lambda x: jnp.reshape(jnp.asarray(x, jnp.float32), (runs,)),
                              config)
    returns, lengths, finished = _evaluate_runs(
        config, flat, jax.random.split(key, runs), num_episodes=num_episodes,
        deterministic=bool(deterministic), max_steps=int(max_steps), batched_config=batched)
    shape = (*runs_shape, num_episodes)
    return EvalResult(np.asarray(returns).reshape(shape), np.asarray(lengths).reshape(shape),
                      np.asarray(finished).reshape(shape))


@functools.partial(jax.jit, static_argnames=("deterministic",))
def _act(config, policy, obs, key, mask, *, deterministic):
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    return networks.act(network, policy.params, config,
                        policy_lib.observe(config, policy.normalizers, obs), key, mask,
                        deterministic=deterministic)


class LoadedPolicy:
    """A trained policy as a function of observations: ``policy(obs, key=None)``.

    Observations are normalized with the run's frozen statistics, as in training.

    Attributes:
        config: the run's Config (of the chosen setting).
        policy: params and normalizer statistics (`jaxppo.policy.Policy`).
        run_dir, setting, seed: where it came from.
    """

    def __init__(self, config: Config, policy: policy_lib.Policy, run_dir=None, setting: int = 0,
                 seed: int = 0) -> None:
        self.config = config
        self.policy = policy
        self.run_dir = run_dir
        self.setting = setting
        self.seed = seed
        self.env = envs.make(config.env_id)

    def __repr__(self) -> str:
        return (f"LoadedPolicy({self.config.env_id!r}, run_dir={str(self.run_dir)!r}, "
                f"setting={self.setting}, seed={self.seed})")

    def __call__(self, obs, key: jax.Array | None = None, mask=None,
                 deterministic: bool | None = None) -> jax.Array:
        """Actions for one observation [O] (or the env's observation shape) or a batch [B, O].

        Args:
            obs: raw observations, as the env gives them.
            key: PRNG key to sample an action; None gives the mode (deterministic).
            mask: valid actions [K] or [B, K] for envs with action masks, else None.
            deterministic: overrides the choice made by ``key``; see `networks.act`.

        Returns:
            An action (an int scalar, or [D] for continuous actions), or [B, ...] for a batch.
            Continuous actions are not clipped; the env clips them.
        """
        size = self.env.observation_size
        obs = jnp.asarray(obs, jnp.float32)
        if obs.size == size:
            flat, single = obs.reshape(1, size), True
        elif obs.ndim >= 2 and int(np.prod(obs.shape[1:])) == size:
            flat, single = obs.reshape(obs.shape[0], size), False
        else:
            raise ValueError(f"obs of shape {tuple(obs.shape)} does not fit {self.config.env_id}"
                             f": expected {size} values per observation, or a batch [B, {size}]")
        if deterministic is None:
            deterministic = key is None
        if not deterministic and key is None:
            raise ValueError("sampling (deterministic=False) needs a PRNG key")
        if mask is not None:
            mask = jnp.asarray(mask, jnp.bool_).reshape(flat.shape[0], -1)
        keys = None if key is None else jax.random.split(key, flat.shape[0])
        act = jax.vmap(lambda o, k, m: _act(self.config, self.policy, o, k, m,
                                            deterministic=bool(deterministic)),
                       in_axes=(0, None if keys is None else 0, None if mask is None else 0))
        actions = act(flat, keys, mask)
        return actions[0] if single else actions


def load(run_dir, seed: int = 0, setting: int = 0) -> LoadedPolicy:
    """The policy of one run of an experiment directory, from its newest checkpoint.

    Args:
        run_dir: a directory written by `jaxppo.experiment.run` (or ``jaxppo train``).
        seed: which of the S seeds (default 0).
        setting: which of the H settings of a sweep (default 0).

    Raises:
        `jaxppo.spec.RunError` (a ValueError; also `jaxppo.experiment.RunError`): for a
        missing or broken run directory, or a seed or setting out of range.
    """
    from jaxppo import rundir
    from jaxppo import spec as spec_lib

    spec = rundir.read_spec(run_dir)
    for name, value, count in (("seed", seed, spec.seeds), ("setting", setting,
                                                            spec.num_settings)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise spec_lib.RunError(f"{name}={value!r}: {run_dir} has {count} "
                                    f"{name}s (0 to {count - 1})")
    state, _, _ = rundir.restore_checkpoint(run_dir, spec)
    index = setting * spec.seeds + seed
    one: Any = jax.tree.map(lambda x: x[index], state)
    return LoadedPolicy(spec.configs()[setting], policy_lib.Policy(one.params, one.normalizers),
                        pathlib.Path(run_dir), setting, seed)
