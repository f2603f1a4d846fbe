"""The experiment runner over 4 emulated CPU devices: the numbers of one device, and a
checkpoint written on 4 devices resumes on 1 (checkpoints hold plain host arrays).

As in test_sharding.py, the device count is fixed when JAX starts, so the runs happen in one
subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import textwrap

import numpy as np
from conftest import run_with_devices

CHILD = textwrap.dedent("""
    import faulthandler, pathlib, sys
    faulthandler.dump_traceback_later(200, exit=True)
    import jax, numpy as np
    import jaxppo
    from jaxppo import experiment

    tiny = jaxppo.Config(num_envs=2, num_steps=8, total_timesteps=6 * 16, num_minibatches=2,
                         update_epochs=1, hidden_sizes=(8,))
    tmp = pathlib.Path(sys.argv[2])
    four, one = jax.devices(), jax.devices()[:1]
    out = {"device_count": np.asarray(jax.device_count())}
    kwargs = dict(chunk_updates=2, progress=False, plots=False)
    # 3 seeds: padded to 4 over 4 devices.
    for name, devices in (("four", four), ("one", one)):
        r = experiment.run(tiny, 3, tmp / name, devices=devices, **kwargs)
        for field in ("total_loss", "episode_return", "entropy"):
            out[f"{name}/{field}"] = r.metrics[field]
    # Stopped after one chunk on 4 devices, resumed on 1.
    experiment.run(tiny, 3, tmp / "moved", devices=four, stop_after_chunks=1, **kwargs)
    r = experiment.resume(tmp / "moved", devices=one, progress=False, plots=False)
    for field in ("total_loss", "episode_return", "entropy"):
        out[f"moved/{field}"] = r.metrics[field]
    np.savez(sys.argv[1], **out)
""")


def test_runner_four_devices_equal_one(tmp_path):
    path = tmp_path / "runner.npz"
    proc = run_with_devices(CHILD, str(path), str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = np.load(path)
    assert int(out["device_count"]) == 4
    assert out["one/total_loss"].shape == (1, 3, 6)
    # Float32 rounding only (another batch size per device may order sums differently; see
    # test_sharding.py); returns of finished episodes depend only on the actions: exact.
    for name in ("four", "moved"):
        np.testing.assert_allclose(out[f"{name}/total_loss"], out["one/total_loss"], rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_allclose(out[f"{name}/entropy"], out["one/entropy"], rtol=1e-6)
        np.testing.assert_array_equal(out[f"{name}/episode_return"], out["one/episode_return"])
