"""How much device memory a training run needs, estimated before anything is compiled.

    est = jaxppo.memory.estimate(config, runs=256)
    est.per_run, est.total                  # bytes
    jaxppo.memory.runs_that_fit(config)     # runs one device can hold at once

The estimate adds up the arrays a run holds at its peak, from shapes alone (`jax.eval_shape`;
nothing is compiled or run):

- the train state (params, Adam moments, env states, normalizers), twice: the update scan
  holds the state it was given and the state it builds;
- one update's data: the rollout `Transition` [T, N], the GAE arrays (scaled rewards,
  discounted returns, final observations' values, advantages, targets) [T, N], the training
  `Batch` [T, N] and its shuffled copy cut into minibatches;
- the activations of one gradient step: for each of the actor and the critic, every hidden
  layer's output over a minibatch is kept for the backward pass, and its gradient is made
  there (2 x 2 x minibatch_size x sum(hidden_sizes) floats);
- the metrics, [num_updates] per field.

On CPU this lands within 10-25 % of what XLA's own buffer assignment reports
(``compiled.memory_analysis()``; tests/test_memory.py pins the factor of 2).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import numpy as np

from jaxppo import config as config_lib
from jaxppo import envs, networks, prng, rollout
from jaxppo import policy as policy_lib
from jaxppo import train as train_lib
from jaxppo.config import Config

_FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Bytes one run needs at its peak, by component, and for ``runs`` runs.

    Attributes:
        train_state: one `TrainState` (the scan holds two; see ``per_run``).
        rollout: one update's data: Transition, GAE arrays, Batch and its shuffled copy.
        activations: one gradient step's hidden activations and their gradients.
        metrics: the `Metrics` of the whole run, [num_updates] per field.
        runs: how many runs ``total`` counts.
    """

    train_state: int
    rollout: int
    activations: int
    metrics: int
    runs: int = 1

    @property
    def per_run(self) -> int:
        return 2 * self.train_state + self.rollout + self.activations + self.metrics

    @property
    def total(self) -> int:
        return self.runs * self.per_run


def tree_bytes(tree) -> int:
    """Bytes of every array (or `jax.ShapeDtypeStruct`) leaf of a pytree; PRNG keys included."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        if prng.is_key(leaf):
            # A typed key is stored as its raw data (uint32 words per key).
            leaf = jax.eval_shape(jax.random.key_data, leaf)
        total += int(np.prod(leaf.shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total


def _first_rollout(config: Config, key: jax.Array) -> rollout.Transition:
    state = train_lib.init(config, key)
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    policy = policy_lib.Policy(state.params, state.normalizers)
    _, transitions = rollout.rollout(config, env, network, policy,
                                     rollout.EnvCarry(state.obs, state.env_state), key)
    return transitions


def _update_data_bytes(config: Config, transitions: rollout.Transition) -> int:
    """Transition + GAE arrays + Batch + its shuffled copy, for one update [T, N]."""
    per_step = config.batch_size * _FLOAT_BYTES
    # Scaled rewards, discounted returns, final observations' values, advantages, targets.
    gae_arrays = 5 * per_step
    batch = tree_bytes((transitions.obs, transitions.action, transitions.action_mask,
                        transitions.log_prob, transitions.value)) + 2 * per_step
    return tree_bytes(transitions) + gae_arrays + 2 * batch


def estimate(config: Config, runs: int = 1) -> Estimate:
    """Estimate the memory of ``runs`` runs of ``config`` in one call, from shapes alone.

    Args:
        config: one run's config (unstacked: dynamic leaves are scalars).
        runs: how many runs one call holds (seeds x settings on one device).

    Returns:
        An `Estimate`; ``.per_run`` and ``.total`` are in bytes.
    """
    config_lib.checked_int("runs", runs)
    key = jax.random.key(0)
    state = jax.eval_shape(functools.partial(train_lib.init, config), key)
    transitions = jax.eval_shape(functools.partial(_first_rollout, config), key)
    _, metrics = jax.eval_shape(functools.partial(train_lib.step, config), state)
    activations = (2 * 2 * config.minibatch_size * sum(config.hidden_sizes) * _FLOAT_BYTES)
    return Estimate(
        train_state=tree_bytes(state),
        rollout=_update_data_bytes(config, transitions),
        activations=activations,
        metrics=tree_bytes(metrics) * config.num_updates,
        runs=runs,
    )


def host_available_bytes() -> int:
    """The host's available memory: MemAvailable of /proc/meminfo, else free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_bytes(device=None) -> int:
    """Memory one device may use: its allocator's ``bytes_limit`` where it reports one
    (GPU, TPU), else (CPU) the host's available memory shared by this process's CPU devices."""
    device = jax.local_devices()[0] if device is None else device
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    sharing = len(jax.local_devices(backend=device.platform))
    return host_available_bytes() // max(sharing, 1)


def runs_that_fit(config: Config, device=None, fraction: float = 0.8) -> int:
    """How many runs of ``config`` one device holds in one call (at least 1).

    Args:
        config: one run's config.
        device: the device (default: the first local one).
        fraction: the share of the device's memory to plan for, leaving room for the
            program, other buffers and the estimate's error.
    """
    return max(1, int(device_bytes(device) * fraction) // estimate(config).per_run)


class ChunkWarning(UserWarning):
    """A batch of runs larger than fits in memory is run in several sequential calls."""
