"""use_cpu_cores: one JAX CPU device per core, chosen after ``import jaxppo`` and before any
JAX operation; a count the user set is kept; a late or bad request is a clear error.

The device count is fixed when JAX starts, so the cases that start JAX run in subprocesses
with a clean environment (no XLA_FLAGS, no JAX_NUM_CPU_DEVICES).
"""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

import jaxppo
from jaxppo import devices, envs

sweep_lib = importlib.import_module("jaxppo.sweep")  # the module; jaxppo.sweep is the function


def run_clean(code: str, **extra_env: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(extra_env)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    assert envs.registered()[-len(envs.PROBE_IDS):] == envs.PROBE_IDS


def test_default_devices_are_at_most_one_per_run():
    everything = jax.devices()
    assert sweep_lib.default_devices(1) == everything[:1]
    assert sweep_lib.default_devices(len(everything) + 3) == everything
    assert sweep_lib.default_devices(0) == everything[:1]


def test_a_sweep_spreads_its_runs_over_the_cpu_devices():
    # The compiled call's outputs show where the runs trained; the sweep then gathers them
    # onto one device through the host (no collective program, see sweep.gathered).
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


def test_runs_on_one_device_are_laid_out_without_a_mesh():
    # A mesh, even of one device, costs ~0.15 s more lowering (bench/README.md).
    sweep_lib = importlib.import_module("jaxppo.sweep")
    one = sweep_lib.runs_sharding(jax.devices()[:1])
    assert isinstance(one, jax.sharding.SingleDeviceSharding)
    assert one.device_set == {jax.devices()[0]}


def test_gathered_joins_sharded_batches_on_one_device_through_the_host():
    out = run_clean("""
        import importlib, json, jax, numpy as np, jaxppo
        jaxppo.use_cpu_cores(2)
        sweep_lib = importlib.import_module("jaxppo.sweep")
        sharding = sweep_lib.runs_sharding(jax.devices())
        a = jax.device_put(np.arange(4.0), sharding)
        b = jax.device_put(np.arange(4.0, 8.0), sharding)
        keys = [jax.device_put(jax.random.split(jax.random.key(s), 4), sharding) for s in (0, 1)]
        x, k = sweep_lib.gathered([(a, keys[0]), (b, keys[1])], 6, jax.devices()[1])
        want = np.concatenate([jax.random.key_data(kk) for kk in keys])[:6]
        print(json.dumps(dict(
            mesh=isinstance(sharding, jax.sharding.NamedSharding),
            x=np.asarray(x).tolist(), devices=[d.id for d in x.sharding.device_set],
            key_devices=len(k.sharding.device_set),
            keys_equal=bool((np.asarray(jax.random.key_data(k)) == want).all()),
            impl=str(jax.random.key_impl(k)))))
    """)
    # The first 6 of the 8 runs, in order, on the one device asked for; keys kept as keys.
    assert out == {"mesh": True, "x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "devices": [1],
                   "key_devices": 1, "keys_equal": True, "impl": "threefry2x32"}


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
