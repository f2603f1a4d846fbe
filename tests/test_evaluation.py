"""evaluate and load: known returns on probes, a plain-loop reference, masks, policies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RUNNER_CONFIG, RUNNER_SEEDS

import jaxppo
from jaxppo import envs, experiment, networks, normalize, prng
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
    reset_key, key = jax.random.split(prng.fast(key))
    obs, state = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))
    returns, lengths = [None] * num_episodes, [None] * num_episodes
    while any(r is None for r in returns):
        key, act_key, step_key = jax.random.split(key, 3)
        dist = networks.policy(network, policy.params, config,
                               policy_lib.observe(config, policy.normalizers, obs))
        action = dist.mode() if deterministic else dist.sample(act_key)
        state, step = step_fn(jax.random.split(step_key, num_episodes), state, action)
        for i in range(num_episodes):
            if returns[i] is None and bool(step.done[i]):
                returns[i] = float(step.episode_return[i])
                lengths[i] = int(step.episode_length[i])
        obs = step.obs
    return np.array(returns, np.float32), np.array(lengths)


def test_cartpole_matches_plain_loop(finished_run):
    """Deterministic evaluation of each trained seed == stepping the env by hand."""
    key = jax.random.key(7)
    result = jaxppo.evaluate(RUNNER_CONFIG, finished_run.state, key, num_episodes=3)
    assert result.returns.shape == (RUNNER_SEEDS, 3)
    for s, run_key in enumerate(jax.random.split(key, RUNNER_SEEDS)):
        one = jax.tree.map(lambda x, s=s: x[s], finished_run.state)
        policy = policy_lib.Policy(one.params, one.normalizers)
        returns, lengths = _loop_reference(RUNNER_CONFIG, policy, run_key, 3)
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
