"""use_cpu_cores: one JAX CPU device per core, chosen after ``import jaxppo`` and before any
JAX operation; a count the user set is kept; a late or bad request is a clear error.

The device count is fixed when JAX starts, so the cases that start JAX run in subprocesses
with a clean environment (no XLA_FLAGS, no JAX_NUM_CPU_DEVICES).
"""

import os

import jax
import pytest
from conftest import run_clean

import jaxppo
from jaxppo import devices, envs

FRESH = """
    import json
    import jax
    from jax._src import xla_bridge
    import jaxppo
    out = dict(started_by_import=xla_bridge.backends_are_initialized())
    out["count"] = jaxppo.use_cpu_cores({arg})
    out["devices"] = len(jax.devices())
    out["again"] = jaxppo.use_cpu_cores({arg})
    try:
        jaxppo.use_cpu_cores(out["count"] + 1)
    except RuntimeError as error:
        out["late"] = str(error)
    print(json.dumps(out))
"""


def test_one_device_per_core_after_import_jaxppo():
    out = run_clean(FRESH.format(arg=""))
    cores = devices.usable_cores()
    # Importing jaxppo (and so gymnax) must not start JAX, or the count could not be chosen.
    assert out["started_by_import"] is False
    assert out["count"] == out["devices"] == out["again"] == cores
    assert f"already started with {cores} CPU device(s)" in out["late"]
    assert f"cannot change to {cores + 1}" in out["late"]
    assert "before any JAX operation" in out["late"]


def test_an_explicit_count_and_the_users_own_setting():
    assert run_clean(FRESH.format(arg="3"))["devices"] == 3
    # A count the user set already is kept when none is asked for: XLA's flag ...
    flag = run_clean(FRESH.format(arg=""),
                     XLA_FLAGS="--xla_force_host_platform_device_count=5")
    assert flag["count"] == flag["devices"] == 5
    # ... and JAX's own setting.
    assert run_clean(FRESH.format(arg=""), JAX_NUM_CPU_DEVICES="4")["devices"] == 4


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "2"])
def test_bad_counts_name_the_value(bad):
    with pytest.raises(ValueError, match=f"count={bad!r}: expected an integer >= 1"):
        jaxppo.use_cpu_cores(bad)


def test_in_a_started_process_the_same_count_passes_and_another_raises():
    count = len(jax.devices("cpu"))
    assert jaxppo.use_cpu_cores(count) == count
    with pytest.raises(RuntimeError, match="before any JAX operation"):
        jaxppo.use_cpu_cores(count + 1)
    # The quiet form (what the command line uses in-process) reports instead of raising.
    assert devices.set_cpu_devices(count + 1) == (count, count + 1)


def test_probe_ids_known_without_gymnax_match_the_probes():
    from jaxppo.envs import probes

    assert tuple(probes.PROBES) == envs.PROBE_IDS
    assert envs.builtin_ids()[-len(envs.PROBE_IDS):] == envs.PROBE_IDS


@pytest.mark.layout
def test_a_sweep_spreads_its_runs_over_the_cpu_devices():
    # The compiled call's outputs show where the runs trained; the sweep then gathers them
    # onto one device through the host (no collective program, see placement.gathered).
    out = run_clean("""
        import importlib, json, jax, jaxppo
        jaxppo.use_cpu_cores(2)
        sweep_lib = importlib.import_module("jaxppo.sweep")
        trained_on = []
        inner = sweep_lib.train_batch

        def spy(configs, state):
            out = inner(configs, state)
            trained_on.append(len(out[1].total_loss.sharding.device_set))
            return out

        sweep_lib.train_batch = spy
        tiny = jaxppo.Config(num_envs=2, num_steps=8, total_timesteps=32, num_minibatches=2,
                             update_epochs=1, hidden_sizes=(8,))
        two = jaxppo.sweep(tiny, {"clip_eps": [0.1, 0.2]}, seeds=1).metrics.total_loss
        one = jaxppo.sweep(tiny, {"clip_eps": [0.1]}, seeds=1).metrics.total_loss
        print(json.dumps(dict(trained_on=trained_on, two=len(two.sharding.device_set),
                              one=len(one.sharding.device_set))))
    """)
    # Two runs: one per device. One run: one device, not padded with a copy on the other.
    # Both results: on one device.
    assert out == {"trained_on": [2, 1], "two": 1, "one": 1}


def test_usable_cores_is_the_affinity_mask_not_the_machine(monkeypatch):
    # A process pinned to one core of a 64-core machine (taskset, a container's cpuset).
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert devices.usable_cores() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1, 3, 5}, raising=False)
    assert devices.usable_cores() == 3
    # Without an affinity call (macOS, Windows): the machine's count, 1 when unknown.
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert devices.usable_cores() == 64
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert devices.usable_cores() == 1


@pytest.mark.parametrize(
    ("flags", "want"),
    [
        ("--xla_force_host_platform_device_count=5", 5),
        # The count is found among other flags, wherever it stands.
        ("--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=5", 5),
        ("--xla_force_host_platform_device_count=3 --xla_cpu_enable_fast_math=false", 3),
        ("--xla_cpu_enable_fast_math=false", None),
        ("", None),
    ],
)
def test_the_users_xla_flag_count_is_read_among_other_flags(flags, want, monkeypatch):
    # JAX's own setting (checked first) is unset in this process: -1, its default.
    assert jax.config.jax_num_cpu_devices == -1
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert devices._chosen_count() == want
