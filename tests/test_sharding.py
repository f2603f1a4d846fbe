"""Runs sharded over 4 emulated CPU devices give the numbers of one device.

The device count of the CPU backend is fixed when JAX starts, so the sharded runs happen in
one subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``; it saves
the results of every comparison (paying each compilation once) and this test compares them.
"""

import textwrap

import numpy as np
from conftest import run_with_devices

# Runs in the subprocess. faulthandler prints every thread's stack if it ever hangs.
CHILD = textwrap.dedent("""
    import faulthandler, importlib, os, sys
    faulthandler.dump_traceback_later(150, exit=True)
    import jax, numpy as np
    import jaxppo
    sweep_lib = importlib.import_module("jaxppo.sweep")

    tiny = jaxppo.Config(num_envs=2, num_steps=8, total_timesteps=64, num_minibatches=2,
                         update_epochs=1, hidden_sizes=(8,))
    four, one = jax.devices(), jax.devices()[:1]
    out = {"xla_flags": np.asarray(os.environ["XLA_FLAGS"]),
           "device_count": np.asarray(jax.device_count())}
    # 3 settings x 2 seeds = 6 runs: padded to 8 over 4 devices.
    space = {"learning_rate": [1e-3, 3e-3, 1e-2], "clip_eps": [0.2]}
    for name, devices in (("grid4", four), ("grid1", one)):
        result = jaxppo.sweep(tiny, space, seeds=2, key=jax.random.key(3), devices=devices)
        for field, x in vars(result.metrics).items():
            out[f"{name}/{field}"] = np.asarray(x)
        out[f"{name}/params"] = np.concatenate(
            [np.asarray(x).reshape(6, -1) for x in jax.tree.leaves(result.state.params)], 1)
    # 6 seeds of one config: padded to 8 over 4 devices.
    keys = jax.random.split(jax.random.key(7), 6)
    configs = jaxppo.stack_configs([tiny] * 6)
    for name, devices in (("seeds4", four), ("seeds1", one)):
        _, metrics = sweep_lib.run_sharded(configs, keys, devices)
        out[f"{name}/total_loss"] = np.asarray(metrics.total_loss)
        out[f"{name}/episode_return"] = np.asarray(metrics.episode_return)
    np.savez(sys.argv[1], **out)
""")


def test_four_devices_equal_one(tmp_path):
    path = tmp_path / "sharded.npz"
    proc = run_with_devices(CHILD, str(path), timeout=240)
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = np.load(path)
    assert int(out["device_count"]) == 4
    # The subprocess ran under XLA's default CPU scheduler (jaxppo sets no XLA flag): 4
    # devices x 2 vmapped runs each, the kind of program that hung before networks.init ran
    # vmapped inits one after another.
    assert "concurrency_optimized" not in str(out["xla_flags"])

    # Not always bit for bit: each device runs a program for 2 runs where one device runs one
    # for 6, and XLA's CPU code for another batch size may order float sums differently.
    # Measured on the grid: params at most 6e-8 apart, value_loss (about 9) 1.9e-6, policy
    # loss 8e-8, approx_kl 4e-9; the seeds-only case and every count, return, entropy and
    # grad norm came out exact. Hence rtol 1e-6 with atol 1e-6 for values near 0 (a policy
    # loss of 1e-5 has no meaningful relative error): float32 rounding, far below any
    # difference between runs.
    for field in ("total_loss", "policy_loss", "value_loss", "entropy", "approx_kl",
                  "grad_norm", "explained_variance", "params"):
        np.testing.assert_allclose(out[f"grid4/{field}"], out[f"grid1/{field}"],
                                   rtol=1e-6, atol=1e-6, err_msg=field)
    # Counts and returns of finished episodes depend only on the actions taken: exact.
    for field in ("episode_return", "episode_length", "episode_count", "env_steps"):
        np.testing.assert_array_equal(out[f"grid4/{field}"], out[f"grid1/{field}"], field)
    assert out["grid4/total_loss"].shape == (3, 2, 4)
    # Settings differ from each other (the comparison is not vacuous).
    assert not np.allclose(out["grid1/params"][0], out["grid1/params"][4])

    np.testing.assert_allclose(out["seeds4/total_loss"], out["seeds1/total_loss"],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out["seeds4/episode_return"], out["seeds1/episode_return"])
    assert out["seeds1/total_loss"].shape == (6, 4)
