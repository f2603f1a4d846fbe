"""evaluate and load: known returns on probes, a plain-loop reference, masks, policies."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RUNNER_CONFIG, RUNNER_SEEDS

import jaxppo
from jaxppo import envs, evaluation, experiment, networks, normalize, prng
from jaxppo import policy as policy_lib
from jaxppo import spec as spec_lib

PROBE = jaxppo.Config(env_id="ProbeTruncation-v0", num_envs=2, num_steps=8,
                      total_timesteps=16, num_minibatches=2, update_epochs=1,
                      hidden_sizes=(8,))


@pytest.fixture(scope="module")
def probe_state():
    return jax.vmap(jaxppo.init, in_axes=(None, 0))(PROBE, jax.random.split(jax.random.key(0), 3))


def test_probe_truncation_known_returns(probe_state):
    """Reward 1 per step, cut at 5 steps: every episode returns exactly 5 in 5 steps."""
    result = jaxppo.evaluate(PROBE, probe_state, jax.random.key(1), num_episodes=4)
    assert result.returns.shape == (3, 4)
    np.testing.assert_array_equal(result.returns, 5.0)
    np.testing.assert_array_equal(result.lengths, 5)
    assert result.finished.all()


def test_max_steps_cuts_episodes(probe_state):
    """Cut after 3 of the 5 steps: partial return 3, length 3, not finished."""
    result = jaxppo.evaluate(PROBE, probe_state, jax.random.key(1), num_episodes=2, max_steps=3)
    np.testing.assert_array_equal(result.returns, 3.0)
    np.testing.assert_array_equal(result.lengths, 3)
    assert not result.finished.any()


def test_max_steps_reports_the_partial_return_not_the_length():
    """ProbeDiscount: reward 0 on step 1, reward 1 at the end of step 2. Cut after 1 step: the
    partial return is 0.0 (not the length 1), length 1, not finished."""
    config = PROBE.replace(env_id="ProbeDiscount-v0")
    state = jaxppo.init(config, jax.random.key(2))
    result = jaxppo.evaluate(config, state, jax.random.key(4), num_episodes=3, max_steps=1)
    np.testing.assert_array_equal(result.returns, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(result.lengths, [1, 1, 1])
    np.testing.assert_array_equal(result.finished, [False, False, False])


def test_sampled_evaluation_samples_around_the_mode():
    """ProbeContinuous (one step, reward -(clip(a, -1, 1) - sign / 2)^2), untrained policy:
    deterministic episodes earn r(sign) of the mode; sampled ones draw a ~ N(mode, 1)
    (init_log_std 0), so the returns spread over [-2.25, 0]."""
    config = PROBE.replace(env_id="ProbeContinuous-v0")
    state = jaxppo.init(config, jax.random.key(2))
    network = networks.make(config, envs.make(config.env_id))
    signs = jnp.array([[1.0], [-1.0]])
    mode = networks.act(network, state.params, config, signs)[:, 0]
    # r(+1) and r(-1) of the mode (at init the network is odd in obs: tanh, zero biases, so
    # mode(-1) = -mode(+1) and the two are equal; the test does not rely on it).
    expected = -((np.clip(mode, -1.0, 1.0) - 0.5 * signs[:, 0]) ** 2)
    key = jax.random.key(6)
    mode_result = jaxppo.evaluate(config, state, key, num_episodes=32)
    sampled = jaxppo.evaluate(config, state, key, num_episodes=32, deterministic=False)
    plus = np.isclose(mode_result.returns, expected[0], rtol=1e-6)
    minus = np.isclose(mode_result.returns, expected[1], rtol=1e-6)
    assert (plus | minus).all()
    # |a - mode| > 1 (clipped, then r in {-0.25, -2.25}) has probability 0.32: about 22 of
    # the 32 samples stay inside the bounds, each with its own return. The mode gives one or
    # two values. The worst return is |clip(a) - sign / 2| = 1.5 -> -2.25.
    assert len(np.unique(sampled.returns)) >= 16
    assert (sampled.returns >= -2.25).all() and (sampled.returns <= 0).all()
    np.testing.assert_array_equal(sampled.lengths, 1)


def test_single_run_state(probe_state):
    one = jax.tree.map(lambda x: x[0], probe_state)
    result = jaxppo.evaluate(PROBE, one, jax.random.key(1), num_episodes=3)
    assert result.returns.shape == (3,)


def test_masked_policy_never_takes_invalid_actions():
    """ProbeMasked: an invalid action earns -1; with masking, every episode earns >= 0,
    sampled or deterministic."""
    config = jaxppo.Config(env_id="ProbeMasked-v0", action_masking=True, num_envs=2,
                           num_steps=8, total_timesteps=16, num_minibatches=2,
                           hidden_sizes=(8,))
    state = jax.vmap(jaxppo.init, in_axes=(None, 0))(config, jax.random.split(jax.random.key(3), 4))
    for deterministic in (True, False):
        result = jaxppo.evaluate(config, state, jax.random.key(5), num_episodes=64,
                                 deterministic=deterministic)
        assert (result.returns >= 0).all()
        np.testing.assert_array_equal(result.lengths, 1)


def _loop_reference(config, policy, key, num_episodes, deterministic=True):
    """One run's evaluation as a plain Python loop over steps, the E envs in lockstep.

    Each env's first episode is recorded by hand (Python lists, no freezing masks); the envs
    keep stepping (and auto-resetting) until every one has ended once. The key stream is
    the documented one: reset keys from the first split, then (next, act, step) per step.
    Returns the per-env (returns, lengths) of the first episodes.
    """
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    step_fn = jax.jit(jax.vmap(env.step))

    @jax.jit  # one program for every step, not the network dispatched op by op
    def act(obs, act_key):
        dist = networks.policy(network, policy.params, config,
                               policy_lib.observe(config, policy.normalizers, obs))
        return dist.mode() if deterministic else dist.sample(act_key)

    reset_key, key = jax.random.split(prng.fast(key))
    obs, state = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))
    returns, lengths = [None] * num_episodes, [None] * num_episodes
    while any(r is None for r in returns):
        key, act_key, step_key = jax.random.split(key, 3)
        action = act(obs, act_key)
        state, step = step_fn(jax.random.split(step_key, num_episodes), state, action)
        for i in range(num_episodes):
            if returns[i] is None and bool(step.done[i]):
                returns[i] = float(step.episode_return[i])
                lengths[i] = int(step.episode_length[i])
        obs = step.obs
    return np.array(returns, np.float32), np.array(lengths)


# A grid env's dynamics are integer, and Asterix's enemies come at random, so its episodes
# have many lengths. A continuous env would not do: its trajectory under a deterministic
# policy is chaotic, and two programs that round its physics differently drift apart within
# a few hundred steps.
GRID = jaxppo.Config(env_id="Asterix-MinAtar", hidden_sizes=(8,))


def test_grid_env_matches_plain_loop():
    """Deterministic evaluation of each run == stepping the env by hand. The policy head is
    scaled up 1000 times so that no action is a near-tie of logits (init gain 0.01), which two
    programs may round either way."""
    key = jax.random.key(7)
    state = jax.vmap(jaxppo.init, in_axes=(None, 0))(GRID, jax.random.split(key, RUNNER_SEEDS))
    state = state.replace(params=jax.tree_util.tree_map_with_path(
        lambda path, x: x * 1000 if "'actor'" in str(path) and "'head'" in str(path) else x,
        state.params))
    result = jaxppo.evaluate(GRID, state, key, num_episodes=3)
    assert result.returns.shape == (RUNNER_SEEDS, 3)
    for s, run_key in enumerate(jax.random.split(key, RUNNER_SEEDS)):
        one = jax.tree.map(lambda x, s=s: x[s], state)
        policy = policy_lib.Policy(one.params, one.normalizers)
        returns, lengths = _loop_reference(GRID, policy, run_key, 3)
        np.testing.assert_array_equal(result.returns[s], returns)
        np.testing.assert_array_equal(result.lengths[s], lengths)


def test_sampled_cartpole_keeps_each_envs_first_episode(finished_run):
    """Sampled actions, 32 envs: each env reports its FIRST episode, even when it ended early
    and ran (and perhaps finished) further episodes while the slowest env was still going."""
    key = jax.random.key(11)
    result = jaxppo.evaluate(RUNNER_CONFIG, finished_run.state, key, num_episodes=32,
                             deterministic=False)
    one = jax.tree.map(lambda x: x[0], finished_run.state)
    policy = policy_lib.Policy(one.params, one.normalizers)
    returns, lengths = _loop_reference(RUNNER_CONFIG, policy,
                                       jax.random.split(key, RUNNER_SEEDS)[0], 32,
                                       deterministic=False)
    # The case under test happens: some env could finish twice before the longest ended.
    assert 2 * lengths.min() < lengths.max()
    np.testing.assert_array_equal(result.returns[0], returns)
    np.testing.assert_array_equal(result.lengths[0], lengths)
    np.testing.assert_array_equal(result.returns[0], result.lengths[0])  # CartPole: 1 a step
    assert result.finished.all()


def test_stacked_config_and_errors(finished_run):
    configs = jaxppo.stack_configs([RUNNER_CONFIG] * RUNNER_SEEDS)
    stacked = jaxppo.evaluate(configs, finished_run.state, jax.random.key(7), num_episodes=3)
    plain = jaxppo.evaluate(RUNNER_CONFIG, finished_run.state, jax.random.key(7), num_episodes=3)
    np.testing.assert_array_equal(stacked.returns, plain.returns)
    with pytest.raises(ValueError, match="stacked over \\[3\\] runs but the state holds 2"):
        jaxppo.evaluate(jaxppo.stack_configs([RUNNER_CONFIG] * 3), finished_run.state,
                        jax.random.key(0))
    with pytest.raises(ValueError, match="num_episodes=0"):
        jaxppo.evaluate(RUNNER_CONFIG, finished_run.state, jax.random.key(0), num_episodes=0)
    with pytest.raises(TypeError, match="needs a jaxppo.TrainState"):
        jaxppo.evaluate(RUNNER_CONFIG, {"params": 1}, jax.random.key(0))


def test_load_policy_acts_like_the_network(finished_run):
    policy = jaxppo.load(finished_run.run_dir, seed=1)
    assert policy.config == RUNNER_CONFIG and policy.seed == 1
    state = jax.tree.map(lambda x: x[1], finished_run.state)
    network = networks.make(RUNNER_CONFIG, envs.make("CartPole-v1"))
    obs = jax.random.normal(jax.random.key(0), (16, 4))
    expected = networks.act(network, state.params, RUNNER_CONFIG, obs)
    np.testing.assert_array_equal(policy(obs), expected)  # a batch
    np.testing.assert_array_equal(policy(np.asarray(obs[3])), expected[3])  # one observation
    sampled = policy(obs, jax.random.key(1))
    assert sampled.shape == (16,) and set(np.asarray(sampled).tolist()) <= {0, 1}
    # policy(obs, key) samples one action per observation with jax.random.split(key, B).
    batch = jax.random.normal(jax.random.key(2), (256, 4))
    key = jax.random.key(3)
    expected_sample = jax.vmap(lambda o, k: networks.act(network, state.params, RUNNER_CONFIG,
                                                         o, k))(batch, jax.random.split(key, 256))
    sampled = policy(batch, key)
    np.testing.assert_array_equal(sampled, expected_sample)
    assert (np.asarray(sampled) != np.asarray(policy(batch))).any()  # not the mode everywhere
    with pytest.raises(ValueError, match="does not fit CartPole-v1"):
        policy(np.zeros(5))
    with pytest.raises(spec_lib.RunError, match="seed=2.*has 2 seeds"):
        jaxppo.load(finished_run.run_dir, seed=2)
    with pytest.raises(spec_lib.RunError, match="does not exist"):
        jaxppo.load(finished_run.run_dir / "nope")


def test_loaded_policy_normalizes_observations(tmp_path):
    """With normalize_obs, the loaded policy feeds clip((obs - mean) / std) to the network."""
    config = RUNNER_CONFIG.replace(normalize_obs=True, total_timesteps=32)
    experiment.run(config, 1, tmp_path / "norm",
                   output=experiment.Output(progress=False, plots=False))
    policy = jaxppo.load(tmp_path / "norm")
    stats = policy.policy.normalizers.obs
    assert float(stats.count) == 32.0  # 2 updates x 16 raw observations, merged after each
    obs = jnp.array([[0.3, -1.2, 0.05, 2.0], [5.0, 5.0, -5.0, 0.0]])
    network = networks.make(config, envs.make("CartPole-v1"))
    logits = network.apply({"params": policy.policy.params["params"]},
                           normalize.normalize(stats, obs, config.obs_clip))[0].logits
    np.testing.assert_array_equal(policy(obs), jnp.argmax(logits, axis=-1))


def test_loaded_policy_takes_a_discrete_observation_as_the_envs_index(tmp_path):
    """FrozenLake observes a tile index (Discrete(16)); the network reads it one-hot, and the
    loaded policy takes the index as the env gives it, one or a batch [B]."""
    config = jaxppo.Config(env_id="FrozenLake-misc", num_envs=4, num_steps=8,
                           total_timesteps=64, num_minibatches=2, update_epochs=1)
    experiment.run(config, 1, tmp_path / "lake", output=QUIET)
    policy = jaxppo.load(tmp_path / "lake")
    network = networks.make(config, envs.make("FrozenLake-misc"))
    tiles = np.array([0, 5, 14])
    logits = network.apply({"params": policy.policy.params["params"]},
                           jnp.eye(16)[tiles])[0].logits
    np.testing.assert_array_equal(policy(tiles), jnp.argmax(logits, axis=-1))
    assert int(policy(14)) == int(jnp.argmax(logits[2]))
    for bad in (16, -1, 2.5, np.zeros((2, 2))):
        with pytest.raises(ValueError, match=r"does not fit FrozenLake-misc: its observation is "
                                             r"an index in 0\.\.15"):
            policy(bad)


# ---------------------------------------------------------------------------------------------
# Recurrent, image and multi-discrete policies.

# A GRU that learns ProbeMemory (cue at t = 0, query at t = 4) within these 16 updates: its
# answer at the query is the cue's, which a memoryless policy cannot give for both cues.
MEMORY = jaxppo.Config(env_id="ProbeMemory-v0", core="gru", core_size=8,
                       shuffle="trajectories", num_envs=8, num_steps=16, total_timesteps=2048,
                       num_minibatches=2, update_epochs=4, learning_rate=1e-2,
                       hidden_sizes=(8,))
QUIET = experiment.Output(progress=False, plots=False)
# networks.step compiled (eager, its many small ops take seconds per call).
_step = jax.jit(networks.step, static_argnums=0)


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    return experiment.run(MEMORY, 1, tmp_path_factory.mktemp("runs") / "memory", output=QUIET)


def _recurrent_loop_reference(config, policy, key, num_episodes, deterministic=True):
    """`_loop_reference` for a recurrent policy: the E envs in lockstep, the network stepped
    by hand with its carry threaded from zeros, ``start`` never set.

    No carry is ever reset: the probes it runs on have episodes of one fixed length
    (ProbeMemory: DELAY + 1 = 5 steps), so the envs' first episodes all end at one step.
    """
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    step_fn = jax.jit(jax.vmap(env.step))
    reset_key, key = jax.random.split(prng.fast(key))
    obs, state = jax.jit(jax.vmap(env.reset))(jax.random.split(reset_key, num_episodes))
    carry = networks.initial_carry(network, (num_episodes,))
    never = jnp.zeros((num_episodes,), jnp.bool_)
    done = np.zeros(num_episodes, bool)
    while not done.all():
        key, act_key, step_key = jax.random.split(key, 3)
        carry, dist, _ = _step(network, policy.params, config, carry,
                               policy_lib.observe(config, policy.normalizers, obs), never)
        action = dist.mode() if deterministic else dist.sample(act_key)
        state, step = step_fn(jax.random.split(step_key, num_episodes), state, action)
        done = np.asarray(step.done)
        assert done.all() or not done.any(), "episodes of different lengths"
        obs = step.obs
    return np.asarray(step.episode_return), np.asarray(step.episode_length)


@pytest.mark.parametrize("deterministic", [True, False])
def test_gru_evaluation_matches_plain_loop(memory_run, deterministic):
    """A trained GRU on ProbeMemory, evaluated == the network stepped by hand with its carry;
    every query is answered right (return 1), which needs the cue carried for 4 steps."""
    key = jax.random.key(7)
    result = jaxppo.evaluate(MEMORY, memory_run.state, key, num_episodes=16,
                             deterministic=deterministic)
    one = jax.tree.map(lambda x: x[0], memory_run.state)
    returns, lengths = _recurrent_loop_reference(
        MEMORY, policy_lib.Policy(one.params, one.normalizers), jax.random.split(key, 1)[0], 16,
        deterministic)
    np.testing.assert_array_equal(result.returns[0], returns)
    np.testing.assert_array_equal(result.lengths[0], lengths)
    np.testing.assert_array_equal(returns, 1.0)
    np.testing.assert_array_equal(lengths, 5)


def test_lstm_shared_encoder_evaluation_matches_plain_loop():
    """An untrained LSTM (carry (c, h)) under a shared torso, sampled: evaluate == the
    by-hand reference; its functional form keeps the (c, h) carry [B, H] each."""
    config = MEMORY.replace(core="lstm", shared_encoder=True, normalize_obs=True)
    state = jaxppo.init(config, jax.random.key(4))
    policy = policy_lib.Policy(state.params, state.normalizers)
    key = jax.random.key(8)
    result = jaxppo.evaluate(config, state, key, num_episodes=32, deterministic=False)
    # One run: its key is the first of jax.random.split(key, 1), as for the runs of a stack.
    returns, lengths = _recurrent_loop_reference(config, policy, jax.random.split(key, 1)[0],
                                                 32, deterministic=False)
    np.testing.assert_array_equal(result.returns, returns)
    np.testing.assert_array_equal(result.lengths, lengths)
    # Untrained, the answers are coin flips: both +1 and -1 at the query.
    assert set(np.unique(result.returns).tolist()) == {-1.0, 1.0}
    loaded = evaluation.LoadedPolicy(config, policy)
    zeros = (jnp.zeros((3, 8)), jnp.zeros((3, 8)))
    chex.assert_trees_all_equal(loaded.initial_carry(3), zeros)
    carry, action = loaded.step(loaded.initial_carry(3), jnp.zeros((3, 2)), True)
    assert action.shape == (3,)
    chex.assert_trees_all_equal_shapes(carry, zeros)


# ProbeMemory's episode for the cues +1 and -1 (two envs): [cue, 0] at t = 0, [0, 0] until
# the query [0, 1] at t = 4.
CUED = jnp.zeros((5, 2, 2)).at[0, :, 0].set(jnp.array([1.0, -1.0])).at[4, :, 1].set(1.0)


def _by_hand(config, params, episode):
    """The modes [T, B] and the final carry of `networks.step` over ``episode`` [T, B, O]
    from a zero carry (``start`` at t = 0)."""
    network = networks.make(config, envs.make(config.env_id))
    carry = networks.initial_carry(network, episode.shape[1:2])
    modes = []
    for t in range(episode.shape[0]):
        carry, dist, _ = _step(network, params, config, carry, episode[t],
                               jnp.full(episode.shape[1:2], t == 0))
        modes.append(dist.mode())
    return jnp.stack(modes), carry


def test_recurrent_loaded_policy_carries_its_state(memory_run):
    """Called step by step, the loaded GRU == `networks.step` with the carry threaded by
    hand; `reset` forgets the carry, and so does a call of another batch shape."""
    policy = jaxppo.load(memory_run.run_dir)
    assert policy.recurrent
    params = jax.tree.map(lambda x: x[0], memory_run.state).params
    modes, final = _by_hand(MEMORY, params, CUED)
    np.testing.assert_array_equal([policy(obs) for obs in CUED], modes)
    # The case under test: the query's answers are the cues' (1 on +1, 0 on -1), which only
    # a carry kept between the calls can give (the query observations are equal).
    np.testing.assert_array_equal(modes[4], [1, 0])
    # An episode without a cue from a zero carry: equal inputs, equal answers in both envs.
    # Without `reset` the carry would still hold the cues and answer [1, 0] at the query.
    blank = CUED.at[0].set(0.0)
    blank_modes, _ = _by_hand(MEMORY, params, blank)
    assert blank_modes[4, 0] == blank_modes[4, 1]
    policy.reset()
    np.testing.assert_array_equal([policy(obs) for obs in blank], blank_modes)
    # One observation after a batch: a fresh episode (of the -1 cue), stepped on its own.
    np.testing.assert_array_equal([policy(obs[1]) for obs in CUED], modes[:, 1])
    # The functional form keeps nothing: the same actions and carry as by hand, twice over.
    for _ in range(2):
        carry = policy.initial_carry(2)
        for t, obs in enumerate(CUED):
            carry, action = policy.step(carry, obs, t == 0)
            np.testing.assert_array_equal(action, modes[t])
        chex.assert_trees_all_close(carry, final, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="does not fit obs of batch shape \\[3\\]"):
        policy.step(carry, jnp.zeros((3, 2)), True)


IMAGE = jaxppo.Config(env_id="ProbeImage-v0", encoder="cnn", normalize_obs=True, num_envs=4,
                      num_steps=4, total_timesteps=32, num_minibatches=2, update_epochs=1,
                      hidden_sizes=(8,))


def test_cnn_policy_evaluates_and_loads_image_observations(tmp_path):
    """ProbeImage [6, 6, 2]: statistics of that shape are saved and loaded; evaluate's
    one-step returns are the rewards of the loaded policy's actions on the same reset images,
    and the loaded policy reads images (one [6, 6, 2] or a batch [B, 6, 6, 2]) unflattened."""
    run = experiment.run(IMAGE, 1, tmp_path / "image", output=QUIET)
    policy = jaxppo.load(tmp_path / "image")
    stats = policy.policy.normalizers.obs
    assert stats.mean.shape == (6, 6, 2) and float(stats.count) == 32.0
    key = jax.random.key(5)
    result = jaxppo.evaluate(IMAGE, run.state, key, num_episodes=16)
    env = envs.make(IMAGE.env_id)
    reset_key, key = jax.random.split(prng.fast(jax.random.split(key, 1)[0]))
    obs, state = jax.jit(jax.vmap(env.reset))(jax.random.split(reset_key, 16))
    assert obs.shape == (16, 6, 6, 2)
    actions = policy(obs)
    network = networks.make(IMAGE, env)
    _, dist, _ = _step(network, policy.policy.params, IMAGE, None,
                       normalize.normalize(stats, obs, IMAGE.obs_clip), None)
    expected = dist.mode()
    np.testing.assert_array_equal(actions, expected)
    np.testing.assert_array_equal(policy(np.asarray(obs[5])), expected[5])
    _, step = jax.jit(jax.vmap(env.step))(jax.random.split(jax.random.split(key, 3)[2], 16),
                                          state, actions)
    np.testing.assert_array_equal(result.returns[0], step.reward)
    np.testing.assert_array_equal(result.lengths, 1)
    for bad in (np.zeros(72), np.zeros((16, 72)), np.zeros((6, 6))):
        with pytest.raises(ValueError, match="expected one observation \\[6, 6, 2\\] or a "
                                             "batch \\[B, 6, 6, 2\\]"):
            policy(bad)
    # A policy of [6, 6, 2] images on an env of [2] vectors: one error, naming both shapes
    # (the image's trailing 2 is not taken for the vector).
    with pytest.raises(ValueError, match="trained on observations of shape \\[6, 6, 2\\] but "
                                         "ProbeMemory-v0 has observations of shape \\[2\\]"):
        jaxppo.evaluate(PROBE.replace(env_id="ProbeMemory-v0"), run.state, key)


def test_multi_discrete_policy_acts_with_one_integer_per_component():
    """ProbeMultiDiscrete (nvec (3, 2), mask [K = 5], component 0's action 1 masked and
    costing -1): the loaded policy gives actions [2] for one observation, [B, 2] for a batch,
    and reads masks [B, 5]; masked sampled evaluation never pays the -1."""
    config = jaxppo.Config(env_id="ProbeMultiDiscrete-v0", action_masking=True, num_envs=2,
                           num_steps=8, total_timesteps=16, num_minibatches=2,
                           hidden_sizes=(8,))
    state = jaxppo.init(config, jax.random.key(3))
    policy = evaluation.LoadedPolicy(config, policy_lib.Policy(state.params, state.normalizers))
    assert not policy.recurrent and policy.initial_carry(4) is None
    obs = jnp.array([[1.0], [-1.0], [1.0], [-1.0]])
    network = networks.make(config, envs.make(config.env_id))
    expected = _step(network, state.params, config, None, obs, None)[1].mode()
    assert expected.shape == (4, 2)
    np.testing.assert_array_equal(policy(obs), expected)
    np.testing.assert_array_equal(policy(jnp.array([-1.0])), expected[1])
    carry, action = policy.step(None, obs, True)
    assert carry is None
    np.testing.assert_array_equal(action, expected)
    # Masking each row's own mode of component 0 moves that component, and only as the
    # network's masked distribution says.
    masks = np.ones((4, 5), bool)
    masks[np.arange(4), np.asarray(expected[:, 0])] = False
    masked = policy(obs, mask=masks)
    assert (masked[:, 0] != expected[:, 0]).all()
    np.testing.assert_array_equal(
        masked, _step(network, state.params, config, None, obs, None, jnp.asarray(masks))[1]
        .mode())
    result = jaxppo.evaluate(config, state, jax.random.key(5), num_episodes=64,
                             deterministic=False)
    assert set(np.unique(result.returns).tolist()) <= {0.0, 0.5, 1.0}
    np.testing.assert_array_equal(result.lengths, 1)
    with pytest.raises(ValueError, match="expected one observation \\[1\\] or a batch \\[B, 1\\]"):
        policy(jnp.zeros(3))
