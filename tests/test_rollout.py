"""Tests of `jaxppo.rollout`: the Transition's shapes, determinism, what its observation
fields hold (normalized, pre-reset), the policy's log-probs and values, and the keys it draws
from."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import envs, networks, normalize, rollout
from jaxppo import policy as policy_lib

# CartPole observed through non-trivial statistics, clipped at 5 (the angular velocity, std
# 0.1, often clips). 64 steps of 4 envs end ~10 episodes of the near-random initial policy.
CONFIG = jaxppo.Config(num_envs=4, num_steps=64, total_timesteps=256, hidden_sizes=(8,),
                       normalize_obs=True, obs_clip=5.0)
OBS_STATS = normalize.RunningStats(jnp.float32([0.1, -0.2, 0.0, 0.3]),
                                   jnp.float32([0.25, 1.0, 0.01, 0.01]), jnp.float32(100.0))
KEYS_CONFIG = jaxppo.Config(env_id="ProbePolicy-v0", num_envs=8, num_steps=6,
                            total_timesteps=48, num_minibatches=2, hidden_sizes=(8,))

# Jitted once for the module (config, env and network static: one compile per config).
_rollout = jax.jit(rollout.rollout, static_argnums=(0, 1, 2))
_init = jax.jit(jaxppo.init)


def _start(config, obs_stats=None):
    """(env, network, policy, carry) of a fresh run; ``obs_stats`` replaces the obs statistics."""
    env = envs.make(config.env_id)
    state = _init(config, jax.random.key(0))
    normalizers = state.normalizers
    if obs_stats is not None:
        normalizers = normalizers.replace(obs=obs_stats)
    return (env, networks.make(config, env), policy_lib.Policy(state.params, normalizers),
            rollout.EnvCarry(state.obs, state.env_state))


@pytest.fixture(scope="module")
def cartpole():
    """CONFIG's rollout with key 1: (policy, carry in, carry out, transitions, network)."""
    env, network, policy, carry = _start(CONFIG, OBS_STATS)
    carry_out, tr = _rollout(CONFIG, env, network, policy, carry, jax.random.key(1))
    return policy, carry, carry_out, tr, network


def _shapes(config):
    """The rollout's output shapes and dtypes, traced but not compiled."""
    env = envs.make(config.env_id)
    network = networks.make(config, env)

    def run(key):
        state = jaxppo.init(config, key)
        return rollout.rollout(config, env, network,
                               policy_lib.Policy(state.params, state.normalizers),
                               rollout.EnvCarry(state.obs, state.env_state), key)

    return jax.eval_shape(run, jax.random.key(0))


@pytest.mark.parametrize(
    ("config", "obs_size", "action_shape", "action_dtype"),
    [
        (CONFIG.replace(normalize_obs=False), 4, (), jnp.int32),
        (CONFIG, 4, (), jnp.int32),
        (CONFIG.replace(env_id="Pendulum-v1"), 3, (1,), jnp.float32),
        (CONFIG.replace(env_id="ProbeMasked-v0", action_masking=True), 1, (), jnp.int32),
    ],
    ids=["cartpole", "normalize_obs", "pendulum", "masked"],
)
def test_every_field_is_time_major_and_unused_fields_are_none(config, obs_size, action_shape,
                                                               action_dtype):
    carry, tr = _shapes(config)
    t, n = config.num_steps, config.num_envs
    assert carry.obs.shape == (n, obs_size)
    for name in ("obs", "final_obs"):
        assert getattr(tr, name).shape == (t, n, obs_size), name
    assert tr.action.shape == (t, n, *action_shape) and tr.action.dtype == action_dtype
    for name in ("log_prob", "value", "reward", "episode_return"):
        field = getattr(tr, name)
        assert field.shape == (t, n) and field.dtype == jnp.float32, name
    for name in ("terminated", "truncated"):
        assert getattr(tr, name).shape == (t, n) and getattr(tr, name).dtype == jnp.bool_, name
    assert tr.episode_length.shape == (t, n)
    if config.normalize_obs:
        assert tr.raw_obs.shape == (t, n, obs_size)
    else:
        assert tr.raw_obs is None
    if config.action_masking:
        assert tr.action_mask.shape == (t, n, 4) and tr.action_mask.dtype == jnp.bool_
    else:
        assert tr.action_mask is None


def test_a_key_determines_the_rollout(cartpole):
    policy, carry, carry_out, tr, network = cartpole
    env = envs.make(CONFIG.env_id)
    again = _rollout(CONFIG, env, network, policy, carry, jax.random.key(1))
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, again),
                                jax.tree.map(np.asarray, (carry_out, tr)))
    _, other = _rollout(CONFIG, env, network, policy, carry, jax.random.key(2))
    assert not np.array_equal(other.action, tr.action)


def test_final_obs_is_the_next_obs_unless_the_episode_ended(cartpole):
    policy, _, carry_out, tr, _ = cartpole
    done = np.asarray(tr.done)
    np.testing.assert_array_equal(done, np.asarray(tr.terminated) | np.asarray(tr.truncated))
    assert done[:-1].any() and (~done[:-1]).any()
    final, following = np.asarray(tr.final_obs[:-1]), np.asarray(tr.obs[1:])
    # Where no episode ended, the observation reached is the next one acted on, exactly.
    np.testing.assert_array_equal(final[~done[:-1]], following[~done[:-1]])
    # Where one ended, it is the terminal observation, not the fresh episode's first.
    assert np.all(np.any(final[done[:-1]] != following[done[:-1]], axis=-1))
    # The last step's is the carry's observation (as the networks see it; eager here).
    last = np.asarray(policy_lib.observe(CONFIG, policy.normalizers, carry_out.obs))
    np.testing.assert_allclose(np.asarray(tr.final_obs[-1])[~done[-1]], last[~done[-1]],
                               rtol=1e-6, atol=1e-6)


def test_stored_obs_are_the_normalized_raw_obs(cartpole):
    _, carry, _, tr, _ = cartpole
    raw = np.float64(tr.raw_obs)
    np.testing.assert_array_equal(tr.raw_obs[0], carry.obs)
    # clip((raw - mean) / sqrt(var + 1e-8), -5, 5) with the statistics given, in float64.
    std = np.sqrt(np.float64(OBS_STATS.var) + 1e-8)
    expected = np.clip((raw - np.float64(OBS_STATS.mean)) / std, -5.0, 5.0)
    np.testing.assert_allclose(tr.obs, expected, rtol=1e-5, atol=1e-5)
    clipped = np.abs(np.asarray(tr.obs)) == 5.0
    assert clipped.any() and not clipped.all()
    assert np.abs(np.asarray(tr.final_obs)).max() <= 5.0


def test_log_probs_and_values_are_the_policys_at_the_stored_obs(cartpole):
    policy, _, _, tr, network = cartpole
    dist, _ = networks.apply(network, policy.params, CONFIG, tr.obs)
    np.testing.assert_allclose(tr.log_prob, dist.log_prob(tr.action), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tr.value,
                               policy_lib.critic_value(CONFIG, network, policy, tr.obs),
                               rtol=1e-5, atol=1e-6)


# --- the keys: actions and env steps --------------------------------------------------------


@pytest.fixture(scope="module")
def probe_rollout():
    """KEYS_CONFIG's rollout with key 9: (env, network, policy, carry, key, transitions)."""
    env, network, policy, carry = _start(KEYS_CONFIG)
    key = jax.random.key(9)
    _, tr = _rollout(KEYS_CONFIG, env, network, policy, carry, key)
    return env, network, policy, carry, key, tr


def _replayed_rollout(config, env, network, policy, carry, key):
    """A plain loop over the documented keys: step t uses split(key, T)[t] = (action_key,
    env_key), and env i steps (and auto-resets) with split(env_key, N)[i]."""
    obs, env_state = carry.obs, carry.env_state
    observed, actions = [], []
    for step_key in jax.random.split(key, config.num_steps):
        action_key, env_key = jax.random.split(step_key)
        dist, _ = networks.apply(network, policy.params, config, obs)
        action = dist.sample(action_key)
        env_state, step = jax.vmap(env.step)(jax.random.split(env_key, config.num_envs),
                                             env_state, action)
        observed.append(obs)
        actions.append(action)
        obs = step.obs
    return np.stack(observed), np.stack(actions)


@pytest.mark.layout
def test_rollout_draws_actions_and_env_steps_from_their_own_keys(probe_rollout):
    """ProbePolicy-v0 ends every episode after one step, so every observation after the first
    is a fresh reset's random sign: the obs show the env keys, the actions the action keys."""
    env, network, policy, carry, key, tr = probe_rollout
    obs, actions = _replayed_rollout(KEYS_CONFIG, env, network, policy, carry, key)
    np.testing.assert_array_equal(tr.obs, obs)
    np.testing.assert_array_equal(tr.action, actions)


def test_every_env_steps_and_acts_with_its_own_randomness(probe_rollout):
    tr = probe_rollout[-1]
    # Every env has its own step key: the reset signs differ across envs (at each of the 5
    # later steps all 8 agree with probability 2 / 2^8).
    signs = np.asarray(tr.obs[1:, :, 0])
    assert np.all(np.any(signs != signs[:, :1], axis=1))
    assert np.any(np.asarray(tr.action) == 0) and np.any(np.asarray(tr.action) == 1)
