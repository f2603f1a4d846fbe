"""Recurrent policies (GRU, LSTM) and CNN encoders: the cells against plain formulas, the
rollout's carries replayed exactly by the update, no state across an episode start, the conv
against XLA's, vmap == loop, no recompile, bit-exact resume, and the probes that need memory
or a CNN learned."""

import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import envs, experiment, networks, rollout, update
from jaxppo import policy as policy_lib
from jaxppo.envs.core import ActionSpace

train_lib = importlib.import_module("jaxppo.train")

MEMORY = jaxppo.Config(env_id="ProbeMemory-v0", core="gru", core_size=8, hidden_sizes=(16,),
                       shuffle="trajectories", num_envs=8, num_steps=12, num_minibatches=2,
                       total_timesteps=8 * 12 * 3)
IMAGE = jaxppo.Config(env_id="ProbeImage-v0", encoder="cnn", hidden_sizes=(16,),
                      activation="relu", num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _cell_params(size, inputs, gates, key):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(key), 4)
    return {"params": {
        "input": {"kernel": jax.random.normal(k1, (inputs, gates * size)) * 0.5,
                  "bias": jax.random.normal(k2, (gates * size,)) * 0.1},
        "recurrent": {"kernel": jax.random.normal(k3, (size, gates * size)) * 0.5,
                      "bias": jax.random.normal(k4, (gates * size,)) * 0.1}}}


def test_gru_step_matches_the_formula():
    size, inputs = 5, 3
    params = _cell_params(size, inputs, 3, 0)
    x = np.asarray(jax.random.normal(jax.random.key(1), (4, inputs)))
    h = np.asarray(jax.random.normal(jax.random.key(2), (4, size)))
    new, out = networks.GRU(size).apply(params, jnp.asarray(h), jnp.asarray(x))
    p = jax.tree.map(np.asarray, params["params"])
    gx = x @ p["input"]["kernel"] + p["input"]["bias"]
    gh = h @ p["recurrent"]["kernel"] + p["recurrent"]["bias"]
    r = _sigmoid(gx[:, :size] + gh[:, :size])
    z = _sigmoid(gx[:, size:2 * size] + gh[:, size:2 * size])
    n = np.tanh(gx[:, 2 * size:] + r * gh[:, 2 * size:])
    expected = (1 - z) * n + z * h
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new, out)


def test_lstm_step_matches_the_formula():
    size, inputs = 4, 3
    params = _cell_params(size, inputs, 4, 3)
    x = np.asarray(jax.random.normal(jax.random.key(4), (2, inputs)))
    c = np.asarray(jax.random.normal(jax.random.key(5), (2, size)))
    h = np.asarray(jax.random.normal(jax.random.key(6), (2, size)))
    (new_c, new_h), out = networks.LSTM(size).apply(params, (jnp.asarray(c), jnp.asarray(h)),
                                                    jnp.asarray(x))
    p = jax.tree.map(np.asarray, params["params"])
    gates = (x @ p["input"]["kernel"] + p["input"]["bias"]
             + h @ p["recurrent"]["kernel"] + p["recurrent"]["bias"])
    i, f, g, o = np.split(gates, 4, axis=-1)
    expected_c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    np.testing.assert_allclose(new_c, expected_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_h, _sigmoid(o) * np.tanh(expected_c), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new_h, out)


def test_conv_equals_xla_convolution():
    x = jax.random.normal(jax.random.key(0), (3, 12, 11, 4))
    kernel = jax.random.normal(jax.random.key(1), (4, 4, 4, 8))
    bias = jax.random.normal(jax.random.key(2), (8,))
    ours = networks.Conv(8, 4, 2).apply({"params": {"kernel": kernel, "bias": bias}}, x)
    xla = jax.lax.conv_general_dilated(x, kernel, (2, 2), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    xla = xla + bias[None, None, None]
    chex.assert_shape(ours, (3, 5, 4, 8))  # (12 - 4) // 2 + 1 = 5, (11 - 4) // 2 + 1 = 4
    np.testing.assert_allclose(ours, xla, rtol=1e-4, atol=1e-4)


class _Frames:
    """An env stand-in with 84x84x4 frames and 6 actions (what make and init read)."""

    env_id = "frames"
    observation_shape = (84, 84, 4)
    observation_size = 84 * 84 * 4
    action_space = ActionSpace(discrete=True, num_actions=6)


@pytest.mark.parametrize(("encoder", "env", "convs", "flat"), [
    # MinAtar: one 3x3 conv, 10 - 3 + 1 = 8: 8 x 8 x 16 = 1024 features.
    ("cnn", "Breakout-MinAtar", [(3, 3, 4, 16)], 1024),
    # Nature: (84 - 8) // 4 + 1 = 20, (20 - 4) // 2 + 1 = 9, 9 - 3 + 1 = 7: 7 x 7 x 64 = 3136.
    ("nature_cnn", None, [(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64)], 3136),
])
def test_cnn_shapes_and_orthogonal_gains(encoder, env, convs, flat):
    config = jaxppo.Config(encoder=encoder, hidden_sizes=(32,), activation="relu",
                           **({"env_id": env} if env else {}))
    env = envs.make(env) if env else _Frames()
    params = networks.init(config, env, jax.random.key(0))["params"]
    for tower in ("actor", "critic"):
        for i, shape in enumerate(convs):
            kernel = np.asarray(params[tower][f"conv_{i}"]["kernel"], np.float64)
            assert kernel.shape == shape
            # Orthogonal with gain sqrt(2): the [kh kw C_in, C_out] matrix has K^T K = 2 I
            # (its rows outnumber its columns in every layer here).
            matrix = kernel.reshape(-1, shape[-1])
            np.testing.assert_allclose(matrix.T @ matrix, 2.0 * np.eye(shape[-1]), atol=1e-4)
            assert not np.any(params[tower][f"conv_{i}"]["bias"])
        assert params[tower]["hidden_0"]["kernel"].shape == (flat, 32)
    network = networks.make(config, env)
    obs = jnp.zeros((2, 5, *env.observation_shape))
    dist, value = networks.apply(network, {"params": params}, config, obs)
    chex.assert_shape((dist.logits, value), ((2, 5, env.action_space.num_actions), (2, 5)))


class _GridAndFeatures:
    """An env stand-in whose flat observations are a [4, 5, 2] grid, then 3 features."""

    env_id = "grid-and-features"
    observation_grid = (4, 5, 2)
    observation_shape = (4 * 5 * 2 + 3,)
    observation_size = 4 * 5 * 2 + 3
    action_space = ActionSpace(discrete=True, num_actions=3)


def test_cnn_reads_the_grid_at_the_front_and_joins_the_features_after_it():
    config = jaxppo.Config(encoder="cnn", hidden_sizes=(8,), activation="relu")
    env = _GridAndFeatures()
    variables = networks.init(config, env, jax.random.key(0))
    actor = variables["params"]["actor"]
    # One 3x3 conv of 16 channels: (4 - 2) x (5 - 2) x 16 = 96 values, then the 3 features.
    assert actor["hidden_0"]["kernel"].shape == (96 + 3, 8)
    obs = jax.random.normal(jax.random.key(1), (2, 43))
    conv = networks.Conv(16, 3, 1).apply({"params": actor["conv_0"]},
                                          obs[:, :40].reshape(2, 4, 5, 2))
    features = jnp.concatenate([jax.nn.relu(conv).reshape(2, -1), obs[:, 40:]], axis=-1)
    hidden = jax.nn.relu(features @ actor["hidden_0"]["kernel"] + actor["hidden_0"]["bias"][None])
    logits = hidden @ actor["head"]["kernel"] + actor["head"]["bias"][None]
    dist, _ = networks.apply(networks.make(config, env), variables, config, obs)
    np.testing.assert_allclose(dist.logits, logits, rtol=1e-5, atol=1e-6)
    # The features are read: changing one changes the logits.
    moved, _ = networks.apply(networks.make(config, env), variables, config,
                              obs.at[:, 42].add(1.0))
    assert not np.allclose(moved.logits, dist.logits)


def test_recurrent_gains_and_shared_torso_layout():
    config = MEMORY.replace(core="lstm", shared_encoder=True)
    params = networks.init(config, envs.make(config.env_id), jax.random.key(0))["params"]
    assert set(params) == {"torso", "actor", "critic"}
    core = params["torso"]["core"]
    # Input [16, 4 x 8] and recurrent [8, 32]: wide, so orthogonal rows, gain 1.
    x = np.asarray(core["input"]["kernel"], np.float64)
    np.testing.assert_allclose(x @ x.T, np.eye(16), atol=1e-5)
    u = np.asarray(core["recurrent"]["kernel"], np.float64)
    np.testing.assert_allclose(u @ u.T, np.eye(8), atol=1e-5)
    head = np.asarray(params["actor"]["head"]["kernel"], np.float64)
    np.testing.assert_allclose(head.T @ head, 0.01**2 * np.eye(2), atol=1e-8)


def _rollout(config, state):
    """One update's rollout, data and batch, as `train.step` builds them."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    policy = policy_lib.Policy(state.params, state.normalizers)
    _, transitions = rollout.rollout(
        config, env, network, policy,
        rollout.EnvCarry(state.obs, state.env_state, state.core, state.start),
        jax.random.key(5))
    data = update.UpdateData(transitions, transitions.reward, state.normalizers, state.core)
    advantage, target = update.advantages(config, network, policy, data, transitions.value)
    return transitions, update.make_batch(config, data, advantage, target)


@pytest.mark.parametrize("kind", ["gru", "lstm", "lstm shared", "gru cnn"])
def test_update_replays_the_rollout(kind):
    """The classic recurrent-PPO bug is replaying from other states than the rollout acted
    with. Here every minibatch's sequences, replayed from their stored carries, give the
    rollout's log-probs and values to float rounding (ratio 1 at the first step): XLA
    vectorizes the N-env rollout and an N / M-env minibatch differently, which moves a few
    values by one float32 ulp. Replayed from carries off by 0.5 (the bug), the values are
    100 times the tolerance away."""
    core, *rest = kind.split()
    config = MEMORY.replace(core=core, shared_encoder="shared" in rest)
    if "cnn" in rest:
        config = IMAGE.replace(env_id="Breakout-MinAtar", core=core, core_size=8,
                               shuffle="trajectories", num_minibatches=2)
    state = jax.jit(train_lib.init, static_argnums=0)(config, jax.random.key(0))
    # One update first, so the rollout starts mid-episode from a non-zero carry; ProbeMemory
    # episodes last 5 steps, so the 12-step rollout crosses episode starts too.
    state, _ = jax.jit(train_lib.step, static_argnums=0)(config, state)
    assert np.any(np.asarray(jax.tree.leaves(state.core)[0]) != 0)
    network = networks.make(config, envs.make(config.env_id))
    transitions, batch = jax.jit(_rollout, static_argnums=0)(config, state)
    if config.env_id == "ProbeMemory-v0":
        assert np.asarray(transitions.start[1:]).any()
    minibatches = update.shuffle_minibatches(batch, jax.random.key(9), config)

    @jax.jit
    def replay(minibatch, core):
        dist, value = networks.sequence(network, state.params, config, core, minibatch.obs,
                                        minibatch.start, minibatch.action_mask)
        return dist.log_prob(minibatch.action), value

    for m in range(config.num_minibatches):
        minibatch = jax.tree.map(lambda x, m=m: x[m], minibatches)
        log_prob, value = replay(minibatch, minibatch.core)
        np.testing.assert_allclose(log_prob, minibatch.log_prob, rtol=0, atol=1e-6)
        np.testing.assert_allclose(value, minibatch.value, rtol=0, atol=1e-6)
        np.testing.assert_allclose(np.exp(log_prob - minibatch.log_prob), 1.0, rtol=0,
                                   atol=2e-6)
        _, wrong = replay(minibatch, jax.tree.map(lambda x: x + 0.5, minibatch.core))
        assert np.max(np.abs(wrong - minibatch.value)) > 1e-4


@pytest.mark.parametrize("core", ["gru", "lstm"])
def test_no_state_crosses_an_episode_start(core):
    config = MEMORY.replace(core=core)
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    params = networks.init(config, env, jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (6, 3, 2))
    start = jnp.zeros((6, 3), bool).at[0].set(True).at[3].set(True)
    carry = jax.tree.map(lambda x: x + 1.0, networks.initial_carry(network, (3,)))
    dist, value = networks.sequence(network, params, config, carry, obs, start)
    # Other observations before the start at t = 3 (and another carry) change nothing after.
    other = obs.at[:3].set(jax.random.normal(jax.random.key(2), (3, 3, 2)))
    dist2, value2 = networks.sequence(network, params, config, jax.tree.map(
        lambda x: -x, carry), other, start)
    np.testing.assert_array_equal(value[3:], value2[3:])
    np.testing.assert_array_equal(dist.logits[3:], dist2.logits[3:])
    assert not np.allclose(value[:3], value2[:3])
    # And from t = 3 on it is the network started fresh there.
    fresh, fresh_value = networks.sequence(network, params, config,
                                           networks.initial_carry(network, (3,)), obs[3:],
                                           start[3:])
    np.testing.assert_allclose(value[3:], fresh_value, rtol=1e-6, atol=1e-7)


def test_final_observation_values_use_the_carry_that_saw_the_episode():
    """V(final_obs_t) continues from the carry after obs_t: where the episode goes on it is
    the value the rollout computed at t + 1 (same carry, same observation)."""
    config = MEMORY
    state = jax.jit(train_lib.init, static_argnums=0)(config, jax.random.key(3))
    network = networks.make(config, envs.make(config.env_id))
    tr, _ = jax.jit(_rollout, static_argnums=0)(config, state)
    policy = policy_lib.Policy(state.params, state.normalizers)
    next_value = policy_lib.critic_value(config, network, policy, tr.final_obs, tr.core)
    going_on = ~np.asarray(tr.done[:-1])
    np.testing.assert_allclose(np.asarray(next_value[:-1])[going_on],
                               np.asarray(tr.value[1:])[going_on], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [MEMORY, IMAGE], ids=["gru", "cnn"])
def test_vmap_over_seeds_equals_single_runs(config):
    keys = jax.random.split(jax.random.key(0), 2)
    batched = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)), static_argnums=0)(config, keys)
    single = jax.jit(jaxppo.train, static_argnums=0)
    for i in range(2):
        one = single(config, keys[i])
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], batched[1]), one[1],
                                    rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [MEMORY, IMAGE], ids=["gru", "cnn"])
def test_dynamic_change_does_not_recompile(config):
    traces = []

    def train(config, key):
        traces.append(1)
        return jaxppo.train(config, key)

    run = jax.jit(train)
    run(config, jax.random.key(0))
    run(config.replace(learning_rate=1e-3, gamma=0.9, ent_coef=0.0), jax.random.key(0))
    assert len(traces) == 1
    run(config.replace(core_size=4) if config.core != "none" else config.replace(
        hidden_sizes=(8,)), jax.random.key(0))
    assert len(traces) == 2


def test_recurrent_resume_is_bit_exact(tmp_path):
    config = MEMORY.replace(total_timesteps=8 * 12 * 4)
    quiet = experiment.Output(progress=False, plots=False)
    whole = experiment.run(config, 2, tmp_path / "whole", chunk_updates=2, output=quiet)
    out = tmp_path / "stopped"
    stopped = experiment.run(config, 2, out, chunk_updates=2, output=quiet,
                             execution=experiment.Execution(stop_after_chunks=1))
    assert stopped.interrupted and stopped.updates_done == 2
    resumed = experiment.resume(out, output=quiet)
    assert resumed.finished
    for x, y in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(jax.random.key_data(x) if jnp.issubdtype(
            x.dtype, jax.dtypes.prng_key) else x, jax.random.key_data(y) if jnp.issubdtype(
            y.dtype, jax.dtypes.prng_key) else y)
    assert (out / "metrics.csv").read_bytes() == (tmp_path / "whole" / "metrics.csv").read_bytes()


@pytest.mark.parametrize(("name", "value", "message"), [
    ("core", dict(core="gru"), "Config.shuffle='transitions' is invalid: must be 'trajectories'"),
    ("encoder", dict(encoder="cnn"), "Config.encoder='cnn' is invalid: needs image observations"
                                     r" \[H, W, C\] or a grid among them; CartPole-v1 has "
                                     r"observations of shape \[4\]"),
    ("nature", dict(env_id="Breakout-MinAtar", encoder="nature_cnn"),
     r"its convolutions do not fit Breakout-MinAtar's \[10, 10, 4\]"),
    ("multi", dict(env_id="ProbeMultiDiscrete-v0", action_dist="categorical"),
     r"has a multi-discrete action space \(3, 2\), so it needs 'multi_discrete'"),
    ("fourier", dict(env_id="Breakout-MinAtar", fourier_features=4),
     "Config.fourier_features=4 is invalid: needs flat observations"),
])
def test_bad_network_configs_name_the_field(name, value, message):
    with pytest.raises(ValueError, match=message):
        jaxppo.validate(jaxppo.Config(**value))


def test_masks_of_the_wrong_shape_name_the_field(monkeypatch):
    env = envs.make("ProbeMasked-v0")
    monkeypatch.setattr(type(env), "action_mask", lambda self, state: jnp.ones((3,), bool))
    with pytest.raises(ValueError, match=r"Config.action_masking=True is invalid: "
                       r"ProbeMasked-v0's action_mask gives shape \[3\], but its action space "
                       r"needs one flag per action, \[4\]"):
        jaxppo.validate(jaxppo.Config(env_id="ProbeMasked-v0", action_masking=True))


# Probes: what each new part is for, learned (gamma 0.9 as the other probes, lr 3e-3).
LEARN = dict(num_envs=16, learning_rate=3e-3, anneal_lr=False, clip_value_loss=False,
             gamma=0.9)


def _final_return(config, seeds=2):
    keys = jax.random.split(jax.random.key(0), seeds)
    _, metrics = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)), static_argnums=0)(config,
                                                                                       keys)
    return np.nanmean(np.asarray(metrics.episode_return)[:, -5:], axis=1)


@pytest.mark.slow
def test_memory_probe_needs_a_recurrent_core():
    """The cue is shown at t = 0 and asked for at t = 4: a GRU earns +1 per episode, a
    feed-forward policy cannot beat chance (0: +1 or -1 with equal odds)."""
    config = jaxppo.Config(env_id="ProbeMemory-v0", num_steps=20, total_timesteps=16 * 20 * 100,
                           hidden_sizes=(32,), shuffle="trajectories", ent_coef=0.01, **LEARN)
    recurrent = _final_return(config.replace(core="gru", core_size=32))
    feed_forward = _final_return(config)
    assert np.all(recurrent > 0.95), recurrent
    assert np.all(np.abs(feed_forward) < 0.3), feed_forward


@pytest.mark.parametrize("masking", [False, True])
def test_multi_discrete_probe_is_learned(masking):
    config = jaxppo.Config(env_id="ProbeMultiDiscrete-v0", num_steps=8, ent_coef=0.0,
                           total_timesteps=16 * 8 * 60, action_masking=masking, **LEARN)
    assert np.all(_final_return(config) > 0.95)


def test_image_probe_is_learned_by_the_cnn():
    config = jaxppo.Config(env_id="ProbeImage-v0", encoder="cnn", hidden_sizes=(32,),
                           activation="relu", num_steps=8, total_timesteps=16 * 8 * 60,
                           ent_coef=0.0, **LEARN)
    assert np.all(_final_return(config) > 0.95)
