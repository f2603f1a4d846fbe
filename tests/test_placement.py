"""Tests of `jaxppo.placement`: the settings x seeds run axis, padding, host copies of typed
keys, how many runs one call holds, and where runs are placed and gathered."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_clean

import jaxppo
from jaxppo import memory, placement, prng

TINY = jaxppo.Config(num_envs=2, num_steps=8, total_timesteps=64, num_minibatches=2,
                     update_epochs=1, hidden_sizes=(8,))
RATES = (1e-3, 2e-3, 3e-3)


def _data(keys) -> np.ndarray:
    return np.asarray(jax.random.key_data(keys))


# --- the run axis: settings x seeds -----------------------------------------------------------


def test_flat_runs_is_setting_major_with_the_same_keys_for_every_setting():
    key = jax.random.key(7)
    flat, keys = placement.flat_runs([TINY.replace(learning_rate=lr) for lr in RATES], 2, key)
    # Run h * 2 + s is setting h, seed s.
    np.testing.assert_array_equal(flat.learning_rate, np.float32([1e-3, 1e-3, 2e-3, 2e-3,
                                                                   3e-3, 3e-3]))
    for leaf in jax.tree.leaves(flat):
        assert leaf.shape == (6,)
    assert flat.num_envs == TINY.num_envs and flat.hidden_sizes == TINY.hidden_sizes
    # Seed s of every setting uses split(key, 2)[s]: paired comparisons across settings.
    seeds = _data(jax.random.split(key, 2))
    assert prng.is_key(keys) and keys.shape == (6,)
    np.testing.assert_array_equal(_data(keys), seeds[[0, 1, 0, 1, 0, 1]])
    assert not np.array_equal(seeds[0], seeds[1])


def test_unflatten_inverts_the_flat_layout():
    flat, keys = placement.flat_runs([TINY.replace(learning_rate=lr) for lr in RATES], 2,
                                     jax.random.key(7))
    rates = placement.unflatten(flat.learning_rate, 3, 2)
    np.testing.assert_array_equal(rates, np.float32([[lr, lr] for lr in RATES]))
    rows = np.arange(6 * 4).reshape(6, 4)
    grid = placement.unflatten(rows, 3, 2)
    assert grid.shape == (3, 2, 4)
    for h in range(3):
        for s in range(2):
            np.testing.assert_array_equal(grid[h, s], rows[h * 2 + s])
            np.testing.assert_array_equal(_data(placement.unflatten(keys, 3, 2)[h, s]),
                                          _data(keys[s]))


def test_pad_repeats_the_last_run():
    keys = jax.random.split(jax.random.key(1), 3)
    padded = placement.pad({"x": jnp.arange(3.0), "key": keys}, 5)
    np.testing.assert_array_equal(padded["x"], [0.0, 1.0, 2.0, 2.0, 2.0])
    np.testing.assert_array_equal(_data(padded["key"]), _data(keys)[[0, 1, 2, 2, 2]])
    same = placement.pad({"x": jnp.arange(3.0)}, 3)
    np.testing.assert_array_equal(same["x"], [0.0, 1.0, 2.0])


# --- host copies and placement ----------------------------------------------------------------


@pytest.mark.parametrize("fast", [False, True], ids=["threefry", "unrolled"])
def test_put_of_host_copies_round_trips_typed_keys(fast):
    keys = jax.random.split(jax.random.key(3), 4)
    keys = prng.fast(keys) if fast else keys
    x = jnp.arange(8.0).reshape(4, 2)
    # host: the raw uint32 words of a key array, a numpy copy of anything else.
    raw = placement.host(keys)
    assert isinstance(raw, np.ndarray) and raw.dtype == np.uint32 and raw.shape == (4, 2)
    np.testing.assert_array_equal(raw, _data(keys))
    np.testing.assert_array_equal(placement.host(x), np.asarray(x))
    sharding = placement.runs_sharding(jax.devices()[:1])
    placed = placement.put({"key": keys, "x": x}, sharding)
    # Keys come back as keys of the same implementation, with the same words.
    assert prng.is_key(placed["key"])
    assert str(jax.random.key_impl(placed["key"])) == str(jax.random.key_impl(keys))
    np.testing.assert_array_equal(_data(placed["key"]), _data(keys))
    np.testing.assert_array_equal(placed["x"], x)
    assert placed["x"].sharding == sharding
    # ... and draw what the original keys draw.
    np.testing.assert_array_equal(jax.random.uniform(placed["key"][2]),
                                  jax.random.uniform(keys[2]))


def test_gathered_and_joined_concatenate_calls_and_keep_the_first_rows():
    device = jax.devices()[0]
    keys = [jax.random.split(jax.random.key(s), 4) for s in (0, 1)]
    outputs = [(jnp.arange(4.0), keys[0]), (jnp.arange(4.0, 8.0), keys[1])]
    want_keys = np.concatenate([_data(k) for k in keys])[:6]
    for x, k in (placement.gathered(outputs, 6, device),
                 placement.joined(outputs, 6, [device])):
        np.testing.assert_array_equal(x, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
        assert prng.is_key(k)
        np.testing.assert_array_equal(_data(k), want_keys)
        assert x.sharding.device_set == {device}


def test_default_devices_are_at_most_one_per_run():
    everything = jax.devices()
    assert placement.default_devices(1) == everything[:1]
    assert placement.default_devices(len(everything) + 3) == everything
    assert placement.default_devices(0) == everything[:1]


def test_runs_on_one_device_are_laid_out_without_a_mesh():
    # A mesh, even of one device, costs ~0.15 s more lowering (bench/README.md).
    one = placement.runs_sharding(jax.devices()[:1])
    assert isinstance(one, jax.sharding.SingleDeviceSharding)
    assert one.device_set == {jax.devices()[0]}


def test_gathered_joins_sharded_batches_on_one_device_through_the_host():
    out = run_clean("""
        import importlib, json, jax, numpy as np, jaxppo
        jaxppo.use_cpu_cores(2)
        from jaxppo import placement
        sharding = placement.runs_sharding(jax.devices())
        a = jax.device_put(np.arange(4.0), sharding)
        b = jax.device_put(np.arange(4.0, 8.0), sharding)
        keys = [jax.device_put(jax.random.split(jax.random.key(s), 4), sharding) for s in (0, 1)]
        x, k = placement.gathered([(a, keys[0]), (b, keys[1])], 6, jax.devices()[1])
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


# --- runs per call ----------------------------------------------------------------------------


def test_two_calls_are_announced():
    # 5 runs, at most 3 per call, one device: ceil(5 / 3) = 2 calls of 3 runs (the second
    # padded). Planned before anything is compiled.
    device = jax.devices()[:1]
    with pytest.warns(memory.ChunkWarning, match="5 runs do not fit in one call on 1 "
                                                 r"device\(s\) .*; running them in 2 "
                                                 "sequential calls of 3 runs"):
        assert placement.plan_calls(TINY, 5, device, max_runs_per_call=3) == (3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one call: no warning
        assert placement.plan_calls(TINY, 5, device, max_runs_per_call=5) == (5, 1)


# Four fake devices: with max_runs_per_call given, the plan is pure arithmetic (no device
# is asked anything).
FOUR = [object()] * 4


@pytest.mark.parametrize(
    ("runs", "most", "per_call", "calls"),
    [
        # all 6 fit (100 >= 6): 6 rounded up to a multiple of 4 devices -> 8, one call
        (6, 100, 8, 1),
        # 6 allowed: rounded down to a multiple of 4 -> 4; ceil(5 / 4) = 2 calls
        (5, 6, 4, 2),
        # 2 allowed: below one run per device, so 4; ceil(3 / 4) = 1 call
        (3, 2, 4, 1),
        # one device's worth of runs (4 of 4): 4 per call, ceil(9 / 4) = 3 calls
        (9, 4, 4, 3),
        # 12 allowed and 12 = 3 * 4 runs: exactly one call, no padding
        (12, 12, 12, 1),
    ],
)
def test_runs_per_call_is_a_multiple_of_the_device_count(runs, most, per_call, calls):
    assert placement.runs_per_call(TINY, runs, FOUR, max_runs_per_call=most) == per_call
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert placement.plan_calls(TINY, runs, FOUR, max_runs_per_call=most) == (per_call,
                                                                                   calls)
    chunked = [w for w in caught if issubclass(w.category, jaxppo.memory.ChunkWarning)]
    if calls == 1:
        assert chunked == []
    else:
        assert len(chunked) == 1
        assert f"running them in {calls} sequential calls of {per_call} runs" in str(
            chunked[0].message)


def test_split_calls_pads_with_the_last_run_and_cuts_in_order():
    # 5 runs in 2 calls of 3: [0, 1, 2], [3, 4, 4].
    runs = np.arange(5)
    calls = placement.split_calls({"x": runs, "y": runs * 10}, 2, 3)
    np.testing.assert_array_equal([c["x"] for c in calls], [[0, 1, 2], [3, 4, 4]])
    np.testing.assert_array_equal([c["y"] for c in calls], [[0, 10, 20], [30, 40, 40]])
