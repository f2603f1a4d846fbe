"""evaluate and load: known returns on probes, a plain-loop reference, masks, policies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RUNNER_CONFIG, RUNNER_SEEDS

import jaxppo
from jaxppo import envs, experiment, networks, normalize, rollout

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


def _loop_reference(config, policy, key, num_episodes):
    """One run's evaluation as a plain Python loop over episodes and steps (mode actions)."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    reset_key, _ = jax.random.split(key)
    returns = []
    for k in jax.random.split(reset_key, num_episodes):
        obs, state = env.reset(k)
        total, done = 0.0, False
        while not done:
            action = networks.act(network, policy.params, config,
                                  rollout.observe(config, policy.normalizers, obs))
            state, step = env.step(jax.random.key(0), state, action)  # CartPole ignores it
            total += float(step.reward)
            obs, done = step.obs, bool(step.done)
        returns.append(total)
    return np.array(returns)


def test_cartpole_matches_plain_loop(finished_run):
    """Deterministic evaluation of each trained seed == stepping the env by hand."""
    key = jax.random.key(7)
    result = jaxppo.evaluate(RUNNER_CONFIG, finished_run.state, key, num_episodes=3)
    assert result.returns.shape == (RUNNER_SEEDS, 3)
    for s, run_key in enumerate(jax.random.split(key, RUNNER_SEEDS)):
        one = jax.tree.map(lambda x, s=s: x[s], finished_run.state)
        policy = rollout.Policy(one.params, one.normalizers)
        np.testing.assert_array_equal(result.returns[s],
                                      _loop_reference(RUNNER_CONFIG, policy, run_key, 3))


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
    with pytest.raises(ValueError, match="does not fit CartPole-v1"):
        policy(np.zeros(5))
    with pytest.raises(experiment.RunError, match="seed=2.*has 2 seeds"):
        jaxppo.load(finished_run.run_dir, seed=2)
    with pytest.raises(experiment.RunError, match="does not exist"):
        jaxppo.load(finished_run.run_dir / "nope")


def test_loaded_policy_normalizes_observations(tmp_path):
    """With normalize_obs, the loaded policy feeds clip((obs - mean) / std) to the network."""
    config = RUNNER_CONFIG.replace(normalize_obs=True, total_timesteps=32)
    experiment.run(config, 1, tmp_path / "norm", progress=False, plots=False)
    policy = jaxppo.load(tmp_path / "norm")
    stats = policy.policy.normalizers.obs
    assert float(stats.count) == 32.0  # 2 updates x 16 raw observations, merged after each
    obs = jnp.array([[0.3, -1.2, 0.05, 2.0], [5.0, 5.0, -5.0, 0.0]])
    network = networks.make(config, envs.make("CartPole-v1"))
    logits = network.apply({"params": policy.policy.params["params"]},
                           normalize.normalize(stats, obs, config.obs_clip))[0].logits
    np.testing.assert_array_equal(policy(obs), jnp.argmax(logits, axis=-1))
