"""How much device memory a training run needs, estimated before anything is compiled.

    est = jaxppo.memory.estimate(config, runs=256)
    est.per_run, est.total                  # bytes
    jaxppo.memory.runs_that_fit(config)     # runs one device can hold at once

The estimate adds up the arrays a run holds at its peak, from shapes alone (`jax.eval_shape`
of the real functions; nothing is compiled or run):

- the train state (params, Adam moments, env states, observations [N, *obs], normalizers with
  statistics of the observation's shape, a recurrent policy's carry [N, ...]), twice: the
  update scan holds the state it was given and the state it builds;
- one update's data: the rollout `Transition` [T, N] (with a recurrent policy's episode starts
  and carries [T, N, ...]; with gSDE, the rollout's noise matrices [draws, N, L, D]), the GAE
  arrays (scaled rewards, discounted returns, final observations' values, advantages,
  targets) [T, N], the training `Batch` and its shuffled copy cut into minibatches (with a
  recurrent policy's starts and the carries its sequences start from) and, with
  recompute_advantages, the critic's values (and carries) of a rebuilt batch;
- the activations of one gradient step (``activations``): every conv layer's output
  [H', W', C'] and windows [H', W', k k C] (a conv is `networks.patches` times a matmul) and
  every hidden layer's output, of both towers (one with shared_encoder), kept over a
  minibatch for the backward pass, and their gradients made there;
- a recurrent core's activations of one gradient step (``core_activations``): what the scan
  over a minibatch's T steps saves for the backward pass, the carry each step read and the
  cell's gates, and the gradients of one step;
- or instead, where it is larger, the batched critic pass over the T x N final observations
  (``critic_pass``): it runs before the gradient steps, so the two never coexist;
- the metrics, [num_updates] per field.

The layers' output shapes come from the network itself (flax's captured intermediates of one
step, under `jax.eval_shape`); how many samples of them are live is the formula of
`_activation_bytes`. On CPU the estimate lands within 0.7-1.25 x of what XLA's own buffer
assignment reports (``compiled.memory_analysis()``; tests/test_memory.py pins the factor
of 2).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxppo import config as config_lib
from jaxppo import envs, networks, prng, rollout, update
from jaxppo import policy as policy_lib
from jaxppo import train as train_lib
from jaxppo.config import Config

_FLOAT_BYTES = 4
# Scaled rewards, discounted returns, final observations' values, advantages, targets.
_GAE_ARRAYS = 5
# Layer names whose outputs ``activations`` counts (`networks.Tower`'s), and the core's
# two matmuls (`networks.GRU`, `networks.LSTM`), whose outputs are the gates.
_LAYER_PREFIXES = ("conv_", "hidden_")
_CORE_MATMULS = ("input", "recurrent")


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Bytes one run needs at its peak, by component, and for ``runs`` runs.

    Attributes:
        train_state: one `TrainState` (the scan holds two; see ``per_run``).
        rollout: one update's data: Transition, GAE arrays, Batch and its shuffled copy
            (and, with recompute_advantages, a rebuilt Batch and its critic values; with
            gSDE, the rollout's noise matrices).
        activations: one gradient step's conv and hidden layer outputs and their gradients.
        metrics: the `Metrics` of the whole run, [num_updates] per field.
        core_activations: what one gradient step's scan over T steps saves of a recurrent
            core (carries and gates), and one step's gradients of them; 0 without a core.
        critic_pass: the layer outputs of the critic's one forward pass over the T x N
            final observations. It runs before the gradient steps, so ``per_run`` counts
            the larger of it and a gradient step's activations.
        runs: how many runs ``total`` counts.
    """

    train_state: int
    rollout: int
    activations: int
    metrics: int
    core_activations: int = 0
    critic_pass: int = 0
    runs: int = 1

    @property
    def working(self) -> int:
        """Activation bytes at the peak: a gradient step's or the critic pass's."""
        return max(self.activations + self.core_activations, self.critic_pass)

    @property
    def per_run(self) -> int:
        return 2 * self.train_state + self.rollout + self.working + self.metrics

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


class _UpdateArrays(struct.PyTreeNode):
    """The arrays of one update, up to its minibatches (shapes, from `jax.eval_shape`)."""

    state: train_lib.TrainState
    transitions: rollout.Transition
    batch: update.Batch
    minibatches: update.Batch
    recomputed: Any  # critic values [T, N] (and carries) of a rebuilt batch, or None
    sde_noise: Any  # the rollout's gSDE noise matrices [draws, N, L, D], or None


def _update_arrays(config: Config, key: jax.Array) -> _UpdateArrays:
    """`train.step`'s path up to the minibatches, by the same functions (for `eval_shape`)."""
    state = train_lib.init(config, key)
    env = envs.make_for(config)
    network = networks.make(config, env)
    policy = policy_lib.Policy(state.params, state.normalizers)
    _, transitions = rollout.rollout(
        config, env, network, policy,
        rollout.EnvCarry(state.obs, state.env_state, state.core, state.start), key)
    data = update.UpdateData(transitions, transitions.reward, state.normalizers, state.core)
    batch = update.make_batch(config, data,
                              *update.advantages(config, network, policy, data,
                                                 transitions.value))
    recomputed = None
    if config.recompute_advantages:
        recomputed = networks.critic_sequence(network, state.params, config, state.core,
                                              transitions.obs, transitions.start)
    shape = rollout.sde_noise_shape(config, network)
    sde_noise = None if shape is None else jnp.zeros(shape, jnp.float32)
    return _UpdateArrays(state, transitions, batch,
                         update.shuffle_minibatches(batch, key, config), recomputed, sde_noise)


def _update_data_bytes(config: Config, arrays: _UpdateArrays) -> int:
    """Transition + GAE arrays + Batch + its minibatches; with recompute_advantages also the
    rebuilt Batch and the critic's values (and carries) it is built from; with gSDE the
    rollout's noise matrices."""
    gae_arrays = _GAE_ARRAYS * config.batch_size * _FLOAT_BYTES
    rebuilt = tree_bytes(arrays.batch) if config.recompute_advantages else 0
    return (tree_bytes(arrays.transitions) + gae_arrays + tree_bytes(arrays.batch)
            + tree_bytes(arrays.minibatches) + rebuilt + tree_bytes(arrays.recomputed)
            + tree_bytes(arrays.sde_noise))


def _one_step_variables(config: Config, key: jax.Array):
    """The network's variables for one observation of one env, with every layer's output
    (flax's captured "intermediates"), and the recurrent carry one env reads ([1, ...] leaves;
    None without a core)."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    carry = networks.initial_carry(network, (1,))
    obs = jnp.zeros((1, *networks.input_shape(config, env)), jnp.float32)
    start = jnp.ones((1,), jnp.bool_)
    variables = network.init(key, carry, obs, start, method="step", capture_intermediates=True)
    return variables, carry


@dataclasses.dataclass(frozen=True)
class _Layer:
    """Bytes of one sample's output of a layer, and of its windows if it is a conv."""

    tower: str  # "actor", "critic", or "torso" (shared_encoder)
    name: str  # conv_i, hidden_i, or the core's "input" or "recurrent" matmul
    output: int  # [H', W', C'] for a conv, [width] for a Dense
    patches: int = 0  # a conv's windows [H', W', k k C], the operand its matmul saves

    @property
    def in_core(self) -> bool:
        return self.name in _CORE_MATMULS

    @property
    def saved(self) -> int:
        """What the backward pass keeps of one sample: the output, and a conv's windows."""
        return self.output + self.patches

    @property
    def gradient(self) -> int:
        """The gradients the backward pass makes of one sample: of the output, and of the
        windows except the first conv's (it reads the observations, which need none)."""
        return self.output + (self.patches if self.name != "conv_0" else 0)


def _layers(variables) -> list[_Layer]:
    """The conv_i and hidden_i layers of every tower and its core's two matmuls (the gates),
    from the captured outputs; the heads and the modules' own results are left out. A conv's
    windows are its output's H' x W' positions times its kernel's k x k x C rows."""
    layers = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables["intermediates"])[0]:
        names = [entry.key for entry in path if isinstance(entry, jax.tree_util.DictKey)]
        tower, name = names[0], names[-2]  # names end with the layer and "__call__"
        if not (name.startswith(_LAYER_PREFIXES) or ("core" in names and name in _CORE_MATMULS)):
            continue
        kernel = functools.reduce(lambda tree, key: tree[key], names[:-1], variables["params"])
        kernel = kernel["kernel"].shape
        patches = 0
        if len(kernel) == 4:  # a conv's [k, k, C, C']
            patches = tree_bytes(leaf) // kernel[-1] * math.prod(kernel[:-1])
        layers.append(_Layer(tower, name, tree_bytes(leaf), patches))
    return layers


@dataclasses.dataclass(frozen=True)
class _Activations:
    """Bytes of `_activation_bytes`'s three terms."""

    layers: int
    core: int
    critic_pass: int


def _activation_bytes(config: Config, key: jax.Array) -> _Activations:
    """Activation bytes of one gradient step (layers, core) and of the batched critic pass.

    With B = minibatch_size = T x N / M samples in a minibatch and G the samples whose
    gradients the backward pass holds at once (G = B for a feed-forward network; G = N / M,
    one time step, for a recurrent one, whose backward pass is a scan over T), summed over
    the towers (actor and critic, or the one torso with shared_encoder):

        layers = (B x saved + G x gradients) x 4 B, where for one sample
                 saved     = sum of the conv_i [H', W', C'] and hidden_i [width] outputs,
                             plus each conv's windows [H', W', k k C] (`networks.patches`,
                             the operand its matmul keeps for the kernel's gradient)
                 gradients = the same, less the first conv's windows (its input is the
                             observation, which needs no gradient)
        core   = (B + G) x (carry + gates) x 4 B, per tower and env step: the carry read and
                 the two matmuls' outputs, H + 3H + 3H = 7H (GRU: h; x W, h U) or
                 2H + 4H + 4H = 10H (LSTM: c, h; x W, h U)
        critic_pass = T x N x the two largest of the critic's (or the torso's) outputs,
                 windows and gates of one sample x 4 B: the values of the final
                 observations are one forward pass over all T x N of them
                 (`update.advantages`), which holds a layer's input and output at a time

    The heads' outputs ([K] and [1]) are left out. For example Breakout-MinAtar's 10x10x4
    grid through "cnn" (one 3x3 conv of 16 channels, stride 1, VALID): conv_0 gives
    (10 - 3) // 1 + 1 = 8, i.e. 8x8x16 = 1024 floats per sample, from windows
    8x8x(3x3x4) = 2304 floats.
    """
    variables, carry = jax.eval_shape(functools.partial(_one_step_variables, config), key)
    layers = _layers(variables)
    body = [layer for layer in layers if not layer.in_core]
    gates = sum(layer.output for layer in layers if layer.in_core)
    samples = config.minibatch_size
    gradients = config.minibatch_size
    if config.core != "none":
        gradients = config.num_envs // config.num_minibatches
    critic = "torso" if config.shared_encoder else "critic"
    critic_sizes = sorted(size for layer in layers if layer.tower == critic
                          for size in (layer.output, layer.patches))
    return _Activations(
        layers=(samples * sum(layer.saved for layer in body)
                + gradients * sum(layer.gradient for layer in body)),
        core=(samples + gradients) * (tree_bytes(carry) + gates),
        critic_pass=config.batch_size * sum(critic_sizes[-2:]),
    )


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
    arrays = jax.eval_shape(functools.partial(_update_arrays, config), key)
    _, metrics = jax.eval_shape(functools.partial(train_lib.step, config), arrays.state)
    activations = _activation_bytes(config, key)
    return Estimate(
        train_state=tree_bytes(arrays.state),
        rollout=_update_data_bytes(config, arrays),
        activations=activations.layers,
        metrics=tree_bytes(metrics) * config.num_updates,
        core_activations=activations.core,
        critic_pass=activations.critic_pass,
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


@functools.lru_cache(maxsize=16)
def _per_run(config: Config) -> int:
    # The runner asks before compiling and again when it plans the calls: trace once.
    return estimate(config).per_run


def clear_estimates() -> None:
    """Forget the remembered estimates (an env id re-registered with another env)."""
    _per_run.cache_clear()


def per_run_bytes(config: Config) -> int:
    """``estimate(config).per_run``, remembered for the last few configs."""
    try:
        return _per_run(config)
    except TypeError:  # a stacked config holds arrays, which do not hash
        return estimate(config).per_run


def runs_that_fit(config: Config, device=None, fraction: float = 0.8) -> int:
    """How many runs of ``config`` one device holds in one call (at least 1; `check_fits`
    refuses a config of which not even one run fits).

    Args:
        config: one run's config.
        device: the device (default: the first local one).
        fraction: the share of the device's memory to plan for, leaving room for the
            program, other buffers and the estimate's error.
    """
    return max(1, int(device_bytes(device) * fraction) // per_run_bytes(config))


class TooLarge(ValueError):
    """One run of a config needs more memory than a device has."""


def _gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB" if count >= 2**30 else f"{count / 2**20:,.1f} MiB"


def check_fits(config: Config, device=None) -> None:
    """Refuse, before anything is built or compiled, a config of which one run needs more
    memory than ``device`` has (`TooLarge`, one line naming the sizes that set it): a
    mistyped width or batch would otherwise stall allocating, or die out of memory."""
    device = jax.local_devices()[0] if device is None else device
    need, have = per_run_bytes(config), device_bytes(device)
    if need > have:
        raise TooLarge(
            f"one run of this config needs an estimated {_gib(need)} of memory, more than "
            f"the {_gib(have)} {device} has free ({', '.join(_sizes(config))}); make the "
            f"network or the batch smaller")


def _sizes(config: Config) -> list[str]:
    """The fields that set a run's memory, as ``name=value``; the network's optional parts
    only where the config uses them, so the one set too large is named."""
    sizes = [f"hidden_sizes={tuple(config.hidden_sizes)}"]
    if config.encoder != "mlp":
        sizes.append(f"encoder={config.encoder!r}")
    if config.core != "none":
        sizes.append(f"core_size={config.core_size}")
    if config.fourier_features:
        sizes.append(f"fourier_features={config.fourier_features}")
    return sizes + [f"num_envs={config.num_envs}", f"num_steps={config.num_steps}",
                    f"num_minibatches={config.num_minibatches}"]


class ChunkWarning(UserWarning):
    """A batch of runs larger than fits in memory is run in several sequential calls."""
