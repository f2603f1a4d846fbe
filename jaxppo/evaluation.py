"""Evaluating trained policies, and loading one from a run directory.

    returns = jaxppo.evaluate(config, state, jax.random.key(1), num_episodes=100).returns
    policy = jaxppo.load("runs/cartpole")          # seed 0 of setting 0
    action = policy(obs)                           # the mode; policy(obs, key) samples

Evaluation runs E fresh episodes per run, in parallel envs, with the policy of the state
(observations normalized by the statistics frozen at the end of training, as the policy was
trained), deterministic (the mode) by default. The envs are vmapped, and so are runs: a state
of S seeds [S, ...] (or H x S runs from an experiment) is evaluated in one compiled call.

A recurrent policy (``Config.core`` "gru" or "lstm") carries its state through an episode:
evaluation starts each episode from a zero carry, and a loaded policy keeps its carry between
calls until ``policy.reset()``. To keep the state yourself (a feed-forward policy's is None):

    carry = policy.initial_carry(8)                    # 8 envs
    carry, action = policy.step(carry, obs, True)      # obs [8, ...] begin their episodes
    carry, action = policy.step(carry, obs, done)      # done [8]: where a new one begins
"""

from __future__ import annotations

import functools
import math
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxppo import backend, envs, networks, rollout
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
    """The evaluation loop's carry: E envs, each frozen once its first episode ended.

    ``core`` is a recurrent policy's carry after the last observation it read [E, ...], and
    ``start`` whether each current observation begins an episode [E] (the carry is zeroed
    before reading it); both None without a recurrent core.
    """

    t: jax.Array
    obs: jax.Array
    env_state: Any
    key: jax.Array
    done: jax.Array
    returns: jax.Array
    lengths: jax.Array
    core: Any = None
    start: jax.Array | None = None
    noise: jax.Array | None = None


def _running(carry: _EvalCarry, max_steps: int) -> jax.Array:
    return jnp.logical_and(carry.t < max_steps, ~jnp.all(carry.done))


def _eval_step(carry: _EvalCarry, config: Config, env, network, policy: policy_lib.Policy,
               deterministic: bool) -> _EvalCarry:
    """One action in each of the E envs; an env's first episode is recorded as it ends."""
    num_episodes = carry.done.shape[0]
    key, act_key, step_key = jax.random.split(carry.key, 3)
    mask = jax.vmap(env.action_mask)(carry.env_state) if config.action_masking else None
    obs = policy_lib.observe(config, policy.normalizers, carry.obs)
    core, dist, _ = networks.step(network, policy.params, config, carry.core, obs, carry.start,
                                  mask)
    noise = carry.noise
    if deterministic:
        action = dist.mode()
    elif noise is None:
        action = dist.sample(act_key)
    else:  # gSDE: a fresh matrix where the episode's current block of steps begins
        fresh = jax.random.normal(act_key, noise.shape, noise.dtype)
        noise = jnp.where(carry.t % rollout.sde_every(config) == 0, fresh, noise)
        action = dist.explore(noise)
    env_state, step = envs.step_batch(env, jax.random.split(step_key, num_episodes),
                                      carry.env_state, action)
    ended = jnp.logical_and(step.done, ~carry.done)
    return _EvalCarry(
        t=carry.t + 1, obs=step.obs, env_state=env_state, key=key,
        done=jnp.logical_or(carry.done, step.done),
        returns=jnp.where(ended, step.episode_return, carry.returns),
        lengths=jnp.where(ended, step.episode_length, carry.lengths),
        core=core,
        # Where an episode ended, the env has reset: its next observation begins one.
        start=None if carry.start is None else step.done,
        noise=noise)


def _episodes(config: Config, policy: policy_lib.Policy, key: jax.Array, *, num_episodes: int,
              deterministic: bool, max_steps: int):
    """E episodes of one run's policy in E parallel envs (frozen once an episode ends); a
    recurrent policy starts each from a zero carry."""
    env = envs.make_for(config)
    network = networks.make(config, env)
    reset_key, key = jax.random.split(backend.rollout_key(key))
    obs, env_state = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))
    first = _EvalCarry(
        t=jnp.zeros((), jnp.int32), obs=obs, env_state=env_state, key=key,
        done=jnp.zeros((num_episodes,), jnp.bool_),
        returns=jnp.zeros((num_episodes,), jnp.float32),
        lengths=jnp.zeros((num_episodes,), jnp.int32),
        core=networks.initial_carry(network, (num_episodes,)),
        start=jnp.ones((num_episodes,), jnp.bool_) if network.recurrent else None,
        # Drawn at the first step (t = 0), then held as in training.
        noise=(jnp.zeros((num_episodes, network.sde_size, network.action_size), jnp.float32)
               if network.sde_size and not deterministic else None))
    end = jax.lax.while_loop(
        functools.partial(_running, max_steps=max_steps),
        functools.partial(_eval_step, config=config, env=env, network=network, policy=policy,
                          deterministic=deterministic),
        first)
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


def _runs_shape(policy: policy_lib.Policy, env_id: str, observation_shape: tuple[int, ...]
                ) -> tuple[int, ...]:
    """The leading run axes of ``policy``: those of its observation statistics [*runs, *obs]
    before the env's observation shape (a ValueError if they do not end in it)."""
    stats = policy.normalizers.obs
    # The sample count is one scalar per run: it tells where the observation axes begin.
    runs = tuple(stats.count.shape)
    trained = tuple(stats.mean.shape[len(runs):])
    if trained != observation_shape:
        raise ValueError(f"the policy was trained on observations of shape {list(trained)} but "
                         f"{env_id} has observations of shape {list(observation_shape)}")
    return runs


def evaluate(config: Config, state_or_policy, key: jax.Array, num_episodes: int = 10, *,
             deterministic: bool = True, max_steps: int | None = None) -> EvalResult:
    """Run the policy for ``num_episodes`` episodes per run; vmapped over envs and runs.

    A recurrent policy starts each episode from a zero carry and carries it to the end.
    Sampling a gSDE policy explores as its rollouts did: each episode draws a noise matrix
    at its start and holds it for ``gsde_sample_freq`` steps (for the rollout's
    ``num_steps`` where that is 0) before the next.

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
        ValueError: for a bad ``num_episodes`` or ``max_steps``, a policy trained on
            observations of another shape than the env's, or a config whose stacked runs do
            not match the state's.
    """
    train_lib.validate(config)
    config_lib.checked_int("num_episodes", num_episodes)
    if max_steps is not None:
        config_lib.checked_int("max_steps", max_steps)
    policy = _as_policy(state_or_policy)
    env = envs.make(config.env_id)
    if max_steps is None:
        max_steps = env.max_episode_steps or DEFAULT_MAX_STEPS
    runs_shape = _runs_shape(policy, config.env_id, tuple(env.observation_shape))
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


def _act_one(config: Config, policy: policy_lib.Policy, carry, obs: jax.Array,
             start: jax.Array, key: jax.Array | None, mask: jax.Array | None, *,
             deterministic: bool):
    """One step of one raw observation [*obs] from ``carry``: (carry, action)."""
    network = networks.make(config, envs.make(config.env_id))
    carry, dist, _ = networks.step(network, policy.params, config, carry,
                                   policy_lib.observe(config, policy.normalizers, obs), start,
                                   mask)
    return carry, dist.mode() if deterministic else dist.sample(key)


@functools.partial(jax.jit, static_argnames=("deterministic",))
def _act(config, policy, carry, obs, start, keys, mask, *, deterministic):
    """`_act_one` vmapped over a batch [B]: each observation draws with its own key, so an
    observation's sample does not depend on the rest of the batch."""
    one = functools.partial(_act_one, config, policy, deterministic=deterministic)
    return jax.vmap(one)(carry, obs, start, keys, mask)


class LoadedPolicy:
    """A trained policy as a function of observations: ``policy(obs, key=None)``.

    Observations are normalized with the run's frozen statistics, as in training.

    A recurrent policy keeps its carry between calls, so successive calls are successive
    steps of the same episodes; `reset` starts new ones. The carry belongs to the batch shape
    of the calls that made it ([] for one observation, [B] for a batch): a call with another
    shape (another batch size, or one observation after a batch) starts fresh episodes. For
    envs whose episodes end at different times, keep the carry yourself with `step`.

    Attributes:
        config: the run's Config (of the chosen setting).
        policy: params and normalizer statistics (`jaxppo.policy.Policy`).
        run_dir, setting, seed: where it came from.
        env: the run's env (`jaxppo.envs.make(config.env_id)`).
        network: the run's network (`jaxppo.networks.make`).
    """

    def __init__(self, config: Config, policy: policy_lib.Policy, run_dir=None, setting: int = 0,
                 seed: int = 0) -> None:
        self.config = config
        self.policy = policy
        self.run_dir = run_dir
        self.setting = setting
        self.seed = seed
        self.env = envs.make(config.env_id)
        self.network = networks.make(config, self.env)
        # (batch shape, carry) of the episodes under way; None: the next call starts them.
        self._held: tuple[tuple[int, ...], Any] | None = None

    def __repr__(self) -> str:
        return (f"LoadedPolicy({self.config.env_id!r}, run_dir={str(self.run_dir)!r}, "
                f"setting={self.setting}, seed={self.seed})")

    @property
    def recurrent(self) -> bool:
        """Whether the policy has a recurrent core (a carry between steps)."""
        return self.network.recurrent

    def reset(self) -> None:
        """Forget the carry: the next call starts new episodes (from a zero carry)."""
        self._held = None

    def initial_carry(self, batch_size: int | None = None):
        """The carry of fresh episodes, for `step`: [batch_size, ...] (or, for None, of one
        observation, without a batch axis); None for a feed-forward policy."""
        if batch_size is not None:
            config_lib.checked_int("batch_size", batch_size)
        shape = () if batch_size is None else (batch_size,)
        return networks.initial_carry(self.network, shape)

    def __call__(self, obs, key: jax.Array | None = None, mask=None,
                 deterministic: bool | None = None) -> jax.Array:
        """Actions for one observation or a batch; a recurrent policy continues the episodes
        of its previous calls (see the class docstring).

        Args:
            obs: raw observations, as the env gives them: one observation of the env's
                ``observation_shape`` (for vector observations, any array of their O values)
                or a batch [B, *observation_shape]; for a Discrete(n) observation space (one
                that reaches the network one-hot), one index or a batch [B] of them.
            key: PRNG key to sample an action; None gives the mode (deterministic). A
                gSDE policy's sample is a fresh draw at each call (`jaxppo.evaluate` holds
                each episode's noise matrix instead).
            mask: valid actions [K] or [B, K] for envs with action masks, else None (for
                multi-discrete actions, the components' masks concatenated: K = sum(nvec)).
            deterministic: overrides the choice made by ``key``; see `networks.act`.

        Returns:
            An action (an int scalar, or [D] for multi-discrete or continuous actions), or
            [B, ...] for a batch. Continuous actions are not clipped; the env clips them.

        Raises:
            ValueError: for observations of another shape, or sampling without a key.
        """
        obs = self._encoded(obs)
        batch = self._batch_shape(jnp.shape(obs))
        if self._held is not None and self._held[0] == batch:
            carry, start = self._held[1], False
        else:
            carry, start = self.initial_carry(batch[0] if batch else None), True
        carry, action = self._step(carry, obs, start, key, mask, deterministic)
        if self.recurrent:
            self._held = (batch, carry)
        return action

    def step(self, carry, obs, start, key: jax.Array | None = None, mask=None,
             deterministic: bool | None = None):
        """One step from ``carry``, pure: the policy holds nothing (``__call__`` is this with
        the carry kept on the policy).

        Args:
            carry: the carry after the previous observation, from `initial_carry` or the last
                `step` ([B, ...] for a batch, unbatched for one observation); None for a
                feed-forward policy.
            obs: one raw observation or a batch [B, *observation_shape], as in ``__call__``.
            start: bool, or [B]: the observation begins an episode (the carry is zeroed there
                first), e.g. True at reset and the env's ``done`` after each step.
            key, mask, deterministic: as in ``__call__``.

        Returns:
            (the carry after ``obs``, the action(s) of ``__call__``).
        """
        return self._step(carry, self._encoded(obs), start, key, mask, deterministic)

    def _step(self, carry, obs, start, key, mask, deterministic):
        """`step` on an observation already as the network reads it (`_encoded`)."""
        batch = self._batch_shape(jnp.shape(obs))
        obs = jnp.reshape(jnp.asarray(obs, jnp.float32), (*(batch or (1,)),
                                                         *self.env.observation_shape))
        self._check_carry(carry, batch)
        if deterministic is None:
            deterministic = key is None
        if not deterministic and key is None:
            raise ValueError("sampling (deterministic=False) needs a PRNG key")
        size = obs.shape[0]
        start = jnp.reshape(jnp.broadcast_to(jnp.asarray(start, jnp.bool_), batch), (size,))
        if mask is not None:
            mask = jnp.asarray(mask, jnp.bool_).reshape(size, -1)
        keys = None if key is None else jax.random.split(key, size)
        if not batch:  # one observation: a batch of one, its axis added and removed here
            carry = jax.tree.map(lambda x: x[None], carry)
        carry, actions = _act(self.config, self.policy, carry, obs, start, keys, mask,
                              deterministic=bool(deterministic))
        if not batch:
            return jax.tree.map(lambda x: x[0], carry), actions[0]
        return carry, actions

    def _encoded(self, obs):
        """A raw observation as the network reads it: for a Discrete(n) observation space,
        the index (or a batch [B] of them) one-hot, [n] (or [B, n])."""
        size = getattr(self.env, "one_hot_size", None)
        if size is None:
            return obs
        try:
            index = np.asarray(obs)
        except jax.errors.TracerArrayConversionError:  # traced: checked where it is concrete
            index = None
        if index is not None and (index.ndim > 1 or not np.all(
                (index == np.round(index)) & (index >= 0) & (index < size))):
            raise ValueError(f"obs {index.tolist()} does not fit {self.config.env_id}: its "
                             f"observation is an index in 0..{size - 1}, or a batch [B] of "
                             "them")
        return self.env.one_hot(obs)

    def _batch_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """[] for one observation of ``shape``, [B] for a batch; a ValueError otherwise."""
        expected = tuple(self.env.observation_shape)
        size = self.env.observation_size
        if len(expected) == 1:
            # Vector observations: any array of their O values is one.
            if math.prod(shape) == size:
                return ()
            if len(shape) >= 2 and math.prod(shape[1:]) == size:
                return (shape[0],)
        elif tuple(shape) == expected:
            return ()
        elif tuple(shape[1:]) == expected:
            return (shape[0],)
        dims = ", ".join(str(d) for d in expected)
        raise ValueError(f"obs of shape {tuple(shape)} does not fit {self.config.env_id}: "
                         f"expected one observation [{dims}] or a batch [B, {dims}]")

    def _check_carry(self, carry, batch: tuple[int, ...]) -> None:
        expected = jax.tree.map(jnp.shape, self.initial_carry(batch[0] if batch else None))
        if jax.tree.map(jnp.shape, carry) != expected:
            raise ValueError(f"the carry {jax.tree.map(jnp.shape, carry)} does not fit obs of "
                             f"batch shape {list(batch)}: expected {expected} (see "
                             "initial_carry)")


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
