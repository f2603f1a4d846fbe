"""`jaxppo.memory`: the estimate by hand (MLP, CNN, GRU and LSTM configs) and against XLA;
chunked sweeps equal one call."""

import importlib
import re
import warnings

import jax
import numpy as np
import pytest

import jaxppo

memory = importlib.import_module("jaxppo.memory")
placement = importlib.import_module("jaxppo.placement")
sweep_lib = importlib.import_module("jaxppo.sweep")  # the module; jaxppo.sweep is the function

TINY = jaxppo.Config(num_envs=2, num_steps=8, total_timesteps=64, num_minibatches=2,
                     update_epochs=1, hidden_sizes=(8,))
LARGE = jaxppo.Config(num_envs=64, num_steps=128, total_timesteps=64 * 128 * 2)
# Breakout-MinAtar: 10x10x4 observations, K = 3 actions; TINY's sizes otherwise.
CNN = TINY.replace(env_id="Breakout-MinAtar", encoder="cnn")
# TINY (CartPole) with a recurrent core of H = 4 after hidden_0; sequences need whole envs.
GRU = TINY.replace(core="gru", core_size=4, shuffle="trajectories")
LSTM = GRU.replace(core="lstm")
# Where conv windows dominate, with an LSTM's carries: 16 envs x 32 steps, minibatches of 4
# sequences.
LSTM_CNN = jaxppo.Config(env_id="Breakout-MinAtar", encoder="cnn", core="lstm", core_size=32,
                         shuffle="trajectories", num_envs=16, num_steps=32,
                         total_timesteps=16 * 32 * 2, update_epochs=1, hidden_sizes=(16,))


@pytest.mark.layout
def test_components_of_a_tiny_config_by_hand():
    est = memory.estimate(TINY, runs=3)
    # CartPole: O = 4 observations, K = 2 actions; hidden (8,); N = 2 envs, T = 8 steps.
    # params: actor 4*8+8 + 8*2+2 = 58, critic 4*8+8 + 8*1+1 = 49 -> 107 floats = 428 B;
    # Adam mu and nu 856 B + its int32 count 4 B; env states 7 fields x 2 envs x 4 B = 56;
    # obs 2x4 floats 32; key 2 uint32 8; update_step, divergence, diverged_at 3 int32 12;
    # normalizers: obs mean/var [4] + count, reward and value mean/var/count, discounted
    # return [2] = 17 floats = 68.
    assert est.train_state == 428 + 860 + 56 + 32 + 8 + 12 + 68 == 1464
    # Transition per step and env (raw_obs and the action mask are not stored: this config
    # normalizes no observations and masks no actions): obs, final_obs 2x4 floats 32, action
    # int32 4, log_prob/value/reward/episode_return 16, terminated and truncated 2,
    # episode_length 4 -> 58 B x 16 = 928. GAE arrays (with the final observations' values)
    # 5 x 16 x 4 = 320. Batch: obs 16 + action 4 + log_prob, value, advantage, target 16 =
    # 36 B x 16 = 576, twice (the shuffled minibatches are a copy).
    assert est.rollout == 928 + 320 + 2 * 576 == 2400
    # Minibatch of 16 / 2 = 8; actor and critic, one hidden layer of 8, values + gradients.
    assert est.activations == 2 * 2 * 8 * 8 * 4 == 1024
    # The critic's pass over the T x N = 16 final observations holds its hidden layer alone.
    assert est.critic_pass == 16 * 8 * 4 == 512
    assert est.core_activations == 0
    # 16 metric fields x 4 B x 64 // 16 = 4 updates.
    assert est.metrics == 16 * 4 * 4 == 256
    assert est.per_run == 2 * 1464 + 2400 + max(1024, 512) + 256
    assert est.total == 3 * est.per_run


@pytest.mark.layout
def test_activations_sum_the_hidden_layers_and_epochs_change_no_term():
    # TINY with two hidden layers (8, 4) and 3 epochs. Minibatch 8; actor and critic, every
    # hidden layer's values and gradients: 2 x 2 x 8 x (8 + 4) x 4 B = 1536 (the widest layer
    # alone would be 2 x 2 x 8 x 8 x 4 = 1024).
    est = memory.estimate(TINY.replace(hidden_sizes=(8, 4), update_epochs=3))
    assert est.activations == 2 * 2 * 8 * (8 + 4) * 4 == 1536
    # params: actor 4*8+8 + 8*4+4 + 4*2+2 = 86, critic 4*8+8 + 8*4+4 + 4*1+1 = 81 -> 167
    # floats = 668 B; Adam mu and nu 1336 B + its int32 count 4 B; the rest as TINY's:
    # env states 56 + obs 32 + key 8 + 3 int32 12 + normalizers 68 = 176.
    assert est.train_state == 668 + 1340 + 176 == 2184
    # Epochs re-read one update's data: the rollout term is TINY's (hand value above), and
    # the metrics are per update, not per epoch: 16 fields x 4 B x 4 updates.
    assert est.rollout == 2400
    assert est.metrics == 16 * 4 * 4 == 256


@pytest.mark.layout
def test_action_masks_count_in_the_transition_and_both_batches():
    # ProbeMasked-v0: O = 1 observation, K = 4 actions; N = 2 envs x T = 8 steps = 16
    # transitions. Without masks, per transition: Transition obs, final_obs 8 + action 4 +
    # 5 floats 20 + terminated, truncated 2 + episode_length 4 = 38 B; Batch obs 4 + action
    # 4 + 4 floats 16 = 24 B, twice; GAE arrays 4 x 4 = 16 B.
    masked = TINY.replace(env_id="ProbeMasked-v0", action_masking=True)
    off = memory.estimate(masked.replace(action_masking=False))
    on = memory.estimate(masked)
    assert off.rollout == 16 * (38 + 16 + 2 * 24) == 1632
    # The bool mask [K] = 4 B is stored in the Transition, the Batch and its shuffled copy.
    assert on.rollout == 16 * (38 + 4 + 16 + 2 * (24 + 4)) == 1824
    assert on.rollout - off.rollout == 16 * 4 * 3 == 192


@pytest.mark.parametrize(("every", "draws"), [(0, 1), (3, 3)])
def test_gsde_counts_its_noise_matrices(every, draws):
    # Pendulum (D = 1 action), hidden (16, 8): L = 8 features; N = 4 envs, T = 8 steps; a
    # matrix [L, D] per env and draw: draws x 4 x 8 x 1 x 4 B. Every 3 steps over 8 steps
    # is ceil(8 / 3) = 3 draws. The state's log_std grows from [1] to [8, 1]: 7 floats in
    # the params and in Adam's two moments, 3 x 7 x 4 B = 84 B.
    config = jaxppo.Config(env_id="Pendulum-v1", hidden_sizes=(16, 8), num_envs=4, num_steps=8,
                           num_minibatches=2, total_timesteps=64)
    off = memory.estimate(config)
    on = memory.estimate(config.replace(gsde=True, gsde_sample_freq=every))
    assert on.rollout - off.rollout == draws * 4 * 8 * 1 * 4
    assert on.train_state - off.train_state == 3 * 7 * 4 == 84


@pytest.mark.layout
def test_cnn_counts_image_observations_and_conv_activations():
    est = memory.estimate(CNN)
    # params per tower: conv_0 3*3*4*16 + 16 = 592, hidden_0 (8*8*16)*8 + 8 = 8200; heads
    # 8*3+3 = 27 and 8*1+1 = 9 -> 2 * (592 + 8200) + 36 = 17620 floats = 70480 B; Adam mu and
    # nu 140960 + its int32 count 4. Env states: 7 int32, brick_map 10x10 floats, 2 bools,
    # episode return and length: 28 + 400 + 2 + 8 = 438 B x 2 envs = 876. obs [2, 10, 10, 4]
    # 3200; key 8; update_step, divergence, diverged_at 12; normalizers: obs mean/var
    # [10, 10, 4] 800 + count 1, reward and value mean/var/count 6, discounted return [2] =
    # 809 floats = 3236.
    assert est.train_state == 70480 + 140964 + 876 + 3200 + 8 + 12 + 3236 == 218776
    # Transition per step and env: obs, final_obs 2 x 400 floats 3200, action 4, 4 floats 16,
    # terminated, truncated 2, episode_length 4 = 3226 B x 16 = 51616; GAE arrays 320; Batch
    # obs 1600 + action 4 + 4 floats 16 = 1620 B x 16 = 25920, twice.
    assert est.rollout == 51616 + 320 + 2 * 25920 == 103776
    # Per sample and tower: conv_0 (3x3, stride 1, VALID) gives (10 - 3) // 1 + 1 = 8, i.e.
    # 8x8x16 = 1024 floats, from windows 8x8x(3x3x4) = 2304 floats; hidden_0 8. Minibatch of
    # 8, kept: 1024 + 2304 + 8 = 3336 floats; gradients: 1024 + 8 = 1032 (the windows of
    # the observations need none); actor and critic.
    assert est.activations == 2 * 8 * (3336 + 1032) * 4 == 279552
    # The critic's pass over T x N = 16 final observations: windows and conv_0 output at once.
    assert est.critic_pass == 16 * (2304 + 1024) * 4 == 212992
    assert est.core_activations == 0
    # 15 metric fields x 4 B x 4 updates = 240; the gradient step outweighs the critic pass.
    assert est.per_run == 2 * 218776 + 103776 + 279552 + 256


@pytest.mark.layout
def test_a_shared_encoder_counts_one_tower():
    est = memory.estimate(CNN.replace(shared_encoder=True))
    # One torso (conv_0, hidden_0) under two heads: half the CNN's 2 * 8 * (3336 + 1032) * 4.
    assert est.activations == 8 * (3336 + 1032) * 4 == 139776
    # The critic pass runs the same torso: its windows and conv_0 output over 16 samples, now
    # the larger of the two working sets.
    assert est.critic_pass == 16 * (2304 + 1024) * 4 == 212992
    assert est.working == max(139776, 212992)
    # A shared recurrent torso keeps one carry and one set of gates: GRU's per env and step
    # h 4 + x W 12 + h U 12 = 28 floats, (B + G) = 8 + 1 samples (see the GRU test).
    assert memory.estimate(GRU.replace(shared_encoder=True)).core_activations == 9 * 28 * 4


@pytest.mark.layout
def test_gru_counts_carries_and_gates():
    est = memory.estimate(GRU)
    # params per tower: hidden_0 4*8+8 = 40, core input 8*12+12 = 108 and recurrent 4*12+12 =
    # 60 ([I, 3H], [H, 3H]); heads 4*2+2 = 10 and 4*1+1 = 5 -> 2 * 208 + 15 = 431 floats =
    # 1724 B; Adam mu and nu 3448 + 4; TINY's env states, obs, key, the three int32 and
    # normalizers 176; the carry h [N=2, H=4] per tower 2 x 8 floats = 64; start [2] 2.
    assert est.train_state == 1724 + 3452 + 176 + 64 + 2 == 5418
    # TINY's 2400, and per step and env the Transition's start 1 B and carries (actor's and
    # critic's h) 8 floats 32 B: 33 x 16 = 528; the Batch's start 16 x 1 B and the carries
    # its 2 env sequences start from 2 x 32 B: 80, twice.
    assert est.rollout == 2400 + 528 + 2 * 80 == 3088
    # Minibatch of B = 8 = 8 steps x 1 env; the backward scan holds G = 1 step's gradients.
    # Layers: (8 + 1) x 2 towers x hidden 8 x 4 B.
    assert est.activations == (8 + 1) * 2 * 8 * 4 == 576
    # Core, per tower and env step: the carry read h 4 + the gates x W 12 + h U 12 = 28.
    assert est.core_activations == (8 + 1) * 2 * (4 + 12 + 12) * 4 == 2016
    # The critic pass over 16 final observations: its two gate outputs are its largest.
    assert est.critic_pass == 16 * (12 + 12) * 4 == 1536
    assert est.per_run == 2 * 5418 + 3088 + 576 + 2016 + 256


@pytest.mark.layout
def test_lstm_counts_two_carries_and_four_gates():
    est = memory.estimate(LSTM)
    # params per tower: hidden_0 40, core input 8*16+16 = 144 and recurrent 4*16+16 = 80
    # ([I, 4H], [H, 4H]); heads 15 -> 2 * 264 + 15 = 543 floats = 2172 B; Adam 4344 + 4;
    # TINY's 176; the carries c and h [2, 4] per tower 2 x 2 x 8 floats = 128; start 2.
    assert est.train_state == 2172 + 4348 + 176 + 128 + 2 == 6826
    # Per step and env the Transition's start 1 B and carries (c, h per tower) 16 floats
    # 64 B: 65 x 16 = 1040; the Batch's start 16 B and its sequences' carries 2 x 64: 144,
    # twice.
    assert est.rollout == 2400 + 1040 + 2 * 144 == 3728
    assert est.activations == (8 + 1) * 2 * 8 * 4 == 576
    # Core, per tower and env step: c 4 + h 4 + the gates x W 16 + h U 16 = 40 floats.
    assert est.core_activations == (8 + 1) * 2 * (4 + 4 + 16 + 16) * 4 == 2880
    assert est.critic_pass == 16 * (16 + 16) * 4 == 2048


@pytest.mark.parametrize("config", [TINY, CNN, GRU, LSTM], ids=["mlp", "cnn", "gru", "lstm"])
def test_more_envs_need_more_bytes(config):
    # 2 -> 4 envs at 4 updates each: the state, the update's data, the activations and the
    # critic pass all grow (a recurrent core's too); the metrics stay per update.
    small, large = (memory.estimate(config.replace(num_envs=n, total_timesteps=n * 8 * 4))
                    for n in (2, 4))
    for name in ("train_state", "rollout", "activations", "critic_pass", "per_run"):
        assert getattr(large, name) > getattr(small, name), name
    assert large.core_activations >= small.core_activations
    assert (large.core_activations > 0) == (config.core != "none")
    assert large.metrics == small.metrics


@pytest.mark.parametrize(("config", "runs"),
                         [(TINY, 2), (LARGE, 1), (LSTM_CNN, 1)],
                         ids=["tiny", "64x128", "lstm-cnn-16x32"])
def test_estimate_within_factor_two_of_xla(config, runs):
    keys = jax.random.split(jax.random.key(0), runs)
    compiled = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0))).lower(config, keys).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        pytest.skip(f"the {jax.default_backend()} backend reports no memory analysis")
    measured = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                + stats.temp_size_in_bytes)
    estimated = memory.estimate(config, runs).total
    # Measured on this CPU: tiny 0.70 x, 64 envs x 128 steps 0.85 x, the LSTM-CNN 1.0 x (its
    # conv windows and critic pass are most of it) of XLA's figure.
    assert measured / 2 <= estimated <= 2 * measured, (estimated, measured)


def test_runs_that_fit_uses_the_device_memory(monkeypatch):
    # The host's available memory moves between two reads (other processes), so the device's
    # memory is pinned here: 10.5 runs' worth, of which 80% holds 8 runs.
    per_run = memory.estimate(LARGE).per_run
    monkeypatch.setattr(memory, "device_bytes", lambda device=None: int(10.5 * per_run))
    assert memory.runs_that_fit(LARGE) == int(10.5 * per_run * 0.8) // per_run == 8
    assert memory.runs_that_fit(TINY) >= 8
    # The fraction applies to the bytes, before the floor: 11.9 runs' worth holds
    # int(0.8 * 11.9) = int(9.52) = 9 runs (flooring first would give int(11 * 0.8) = 8).
    monkeypatch.setattr(memory, "device_bytes", lambda device=None: int(11.9 * per_run))
    assert memory.runs_that_fit(LARGE) == int(int(11.9 * per_run) * 0.8) // per_run == 9
    monkeypatch.setattr(memory, "device_bytes", lambda device=None: per_run // 2)
    assert memory.runs_that_fit(LARGE) == 1  # at least one run, even when none fits
    monkeypatch.undo()
    assert memory.runs_that_fit(LARGE) >= 1


def test_a_config_of_which_one_run_does_not_fit_is_refused_by_its_sizes(monkeypatch):
    per_run = memory.estimate(LARGE).per_run
    monkeypatch.setattr(memory, "device_bytes", lambda device=None: per_run)
    memory.check_fits(LARGE)  # exactly the device's memory: fits
    monkeypatch.setattr(memory, "device_bytes", lambda device=None: per_run - 1)
    with pytest.raises(memory.TooLarge, match=r"^one run of this config needs an estimated "
                       rf"[\d.,]+ MiB of memory, more than .* \(hidden_sizes="
                       rf"{re.escape(str(tuple(LARGE.hidden_sizes)))}, num_envs="
                       rf"{LARGE.num_envs},"):
        memory.check_fits(LARGE)
    # The sweep path asks before it lays anything out.
    with pytest.raises(memory.TooLarge):
        placement.runs_per_call(LARGE, 2, jax.devices()[:1])
    monkeypatch.undo()
    # A mistyped width: 10^11 units, 4 x 10^11 float32 weights in the first layer alone.
    with pytest.raises(memory.TooLarge, match=r"needs an estimated [\d,]+\.\d GiB"):
        memory.check_fits(TINY.replace(hidden_sizes=(10**11,)))


@pytest.mark.parametrize("change, named", [
    ({"fourier_features": 3_000_000}, "fourier_features=3000000"),
    ({"core": "gru", "core_size": 3_000_000, "shuffle": "trajectories"}, "core_size=3000000"),
    ({"env_id": "Breakout-MinAtar", "encoder": "cnn", "hidden_sizes": (3_000_000,)},
     "encoder='cnn'"),
])
def test_a_refusal_names_the_optional_part_that_is_too_large(monkeypatch, change, named):
    config = TINY.replace(**change)
    # Each change puts at least 3e6 float32 weights (12 MiB) in one layer; the device has 1 MiB.
    monkeypatch.setattr(memory, "device_bytes", lambda device=None: 2**20)
    with pytest.raises(memory.TooLarge) as refused:
        memory.check_fits(config)
    assert named in str(refused.value)
    # A part the config does not use is not named.
    for other in ("fourier_features=", "core_size=", "encoder="):
        if not named.startswith(other):
            assert other not in str(refused.value)


@pytest.fixture(scope="module")
def chunked_and_whole():
    """Five runs of TINY in one call and in calls of two, and how many programs of
    `sweep.train_batch` the chunked calls compiled."""
    keys = jax.random.split(jax.random.key(2), 5)
    configs = jaxppo.stack_configs([TINY.replace(learning_rate=lr)
                                    for lr in (1e-3, 2e-3, 3e-3, 5e-3, 1e-2)])
    device = jax.devices()[:1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # five runs fit in one call: no warning
        whole = sweep_lib.run_sharded(configs, keys, device, max_runs_per_call=5)
    compiled_before = sweep_lib.train_batch._cache_size()
    # 5 runs, 2 per call: 3 calls, the last padded to 2.
    with pytest.warns(memory.ChunkWarning, match="3 sequential calls of 2 runs"):
        chunked = sweep_lib.run_sharded(configs, keys, device, max_runs_per_call=2)
    return chunked, whole, sweep_lib.train_batch._cache_size() - compiled_before


def test_chunked_runs_equal_one_call(chunked_and_whole):
    chunked, whole, _ = chunked_and_whole
    assert chunked[1].total_loss.shape == (5, TINY.num_updates)
    # A batch of 2 and one of 5 are different XLA programs (float sums may be ordered
    # differently), so equal up to float32 rounding, as in tests/test_sharding.py.
    for a, b in zip(jax.tree.leaves((chunked[0].params, chunked[1])),
                    jax.tree.leaves((whole[0].params, whole[1])), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.layout
def test_chunked_calls_share_one_compiled_program(chunked_and_whole):
    # The three calls of 2 runs (the last padded) are one program.
    assert chunked_and_whole[2] == 1


class _FakeDevice:
    """A device as `memory.device_bytes` sees it: a platform and allocator statistics."""

    def __init__(self, platform, stats=None):
        self.platform = platform
        self._stats = stats

    def memory_stats(self):
        return self._stats


def test_device_bytes_is_the_allocator_limit_less_what_is_in_use():
    # A GPU-like allocator: 100 bytes allowed, 30 already held -> 70 left for the run.
    device = _FakeDevice("gpu", {"bytes_limit": 100, "bytes_in_use": 30})
    assert memory.device_bytes(device) == 100 - 30 == 70
    # Without bytes_in_use, the whole limit.
    assert memory.device_bytes(_FakeDevice("gpu", {"bytes_limit": 100})) == 100


def test_cpu_devices_share_the_host_memory(monkeypatch):
    # 8 GiB available, 4 CPU devices in this process (jaxppo.use_cpu_cores): 2 GiB each.
    cpus = [_FakeDevice("cpu") for _ in range(4)]
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 8 * 2**30)
    monkeypatch.setattr(memory.jax, "local_devices",
                        lambda backend=None: cpus if backend == "cpu" else [])
    assert memory.device_bytes(cpus[0]) == 8 * 2**30 // 4 == 2 * 2**30
    # A CPU that reports allocator statistics without a limit shares the host memory too.
    assert memory.device_bytes(_FakeDevice("cpu", {"bytes_in_use": 5})) == 2 * 2**30
