"""Every CPU core at work: the host split into one JAX CPU device per core.

    import jaxppo
    jaxppo.use_cpu_cores()        # before any JAX operation: one CPU device per core
    result = jaxppo.sweep(config, space, seeds=8, key=key)   # the runs spread over them

On a CPU, JAX gives one device by default, and XLA runs a program on it with a pool of
threads. The matmuls of a PPO step are small (minibatches of a few hundred samples through 64
units), so that pool leaves cores idle: 8 CartPole seeds in one call keep 1.5 of 2 cores busy.
With one device per core, `jaxppo.sweep`, `jaxppo.run_sharded` and `jaxppo.experiment.run`
(and so the ``jaxppo`` command) give each device its share of the runs, and the devices run
at once: the same 8 seeds finish in half the time on 2 cores. A single run gains nothing (it
lives on one device), and loses nothing either.

The device count is fixed when JAX starts, so this must run before any JAX operation. It is a
process-wide setting, which is why importing jaxppo does not do it; the ``jaxppo`` command
does (``--cpu-devices``). A count the user chose already (``JAX_NUM_CPU_DEVICES``,
``jax.config.update("jax_num_cpu_devices", n)`` or XLA's
``--xla_force_host_platform_device_count``) is kept when no count is given. GPUs and TPUs are
not affected: there `jax.devices()` lists the accelerators and the runs go to them.
"""

from __future__ import annotations

import os

import jax

from jaxppo import config as config_lib


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _chosen_count() -> int | None:
    """The CPU device count the user set before jaxppo was asked, if any."""
    value = jax.config.jax_num_cpu_devices
    if value is not None and value >= 0:
        return value
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith("--xla_force_host_platform_device_count="):
            return int(flag.split("=", 1)[1])
    return None


def set_cpu_devices(count: int | None = None) -> tuple[int, int]:
    """(the CPU device count JAX has or will have, the count asked for).

    `use_cpu_cores` without the error: where JAX has already started with another count,
    nothing changes and the two differ.
    """
    if count is not None:
        config_lib.checked_int("count", count)
    else:
        chosen = _chosen_count()
        count = chosen if chosen is not None else usable_cores()
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # JAX has started: its CPU device count is fixed
        return len(jax.devices("cpu")), count
    return count, count


def use_cpu_cores(count: int | None = None) -> int:
    """Split the host CPU into ``count`` JAX devices; call it before any JAX operation.

    Args:
        count: CPU devices (default: a count already set by ``JAX_NUM_CPU_DEVICES``,
            ``jax_num_cpu_devices`` or ``XLA_FLAGS``, else one per usable core, `usable_cores`).

    Returns:
        The number of CPU devices JAX will use.

    Raises:
        ValueError: ``count`` is not an integer >= 1.
        RuntimeError: JAX has already run an operation with another number of CPU devices
            (restart the process or the notebook kernel and call this first).
    """
    current, wanted = set_cpu_devices(count)
    if current != wanted:
        raise RuntimeError(
            f"use_cpu_cores({'' if count is None else count}): JAX has already started with "
            f"{current} CPU device(s) and cannot change to {wanted}. Call "
            "jaxppo.use_cpu_cores() before any JAX operation (right after the imports), in a "
            "fresh process or notebook kernel.")
    return current
