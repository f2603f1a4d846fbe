"""Probe environments with known answers are learned (each isolates one part of the learner).

Probe settings: gamma 0.9, a constant learning rate of 3e-3, no entropy bonus, no value
clipping, 60 updates of 8 envs x 16 steps (7,680 env steps).
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxppo
from jaxppo import envs, networks
from jaxppo.envs import probes

PROBE = jaxppo.Config(
    num_envs=8,
    num_steps=16,
    total_timesteps=8 * 16 * 60,
    num_minibatches=2,
    hidden_sizes=(32, 32),
    gamma=0.9,
    learning_rate=3e-3,
    anneal_lr=False,
    clip_value_loss=False,
    ent_coef=0.0,
)
SIGNS = jnp.array([[1.0], [-1.0]])


def test_probe_policy_rewards_per_sign_and_action():
    # +1 for action 1 on sign +1 or action 0 on sign -1; the wrong action earns -1 (not 0).
    probe = probes.ProbePolicy()
    params = probe.default_params
    for sign, action, reward in [(1.0, 1, 1.0), (1.0, 0, -1.0), (-1.0, 0, 1.0), (-1.0, 1, -1.0)]:
        state = probes.ProbeState(sign=jnp.float32(sign), time=0)
        _, _, r, terminated, truncated, _ = probe.step(jax.random.key(0), state, action, params)
        assert float(r) == reward, (sign, action)
        assert bool(terminated) and not bool(truncated)


def test_probe_reset_signs_are_fair_coins():
    # 4000 reset keys: the fraction of +1 has sd sqrt(0.5 * 0.5 / 4000) = 0.0079, so the
    # tolerance 0.03 is 3.8 sd (a fair coin fails once in ~7,000 key choices; p = 0.9 or 0.1
    # is 50 sd away). The same `reset_env` serves every probe.
    probe = probes.ProbeValue()
    keys = jax.random.split(jax.random.key(0), 4000)
    obs, _ = jax.jit(jax.vmap(probe.reset, in_axes=(0, None)))(keys, probe.default_params)
    signs = np.asarray(obs[:, 0])
    assert set(np.unique(signs).tolist()) == {-1.0, 1.0}
    assert abs(np.mean(signs > 0) - 0.5) < 0.03


def _trained(env_id: str):
    config = PROBE.replace(env_id=env_id)
    state, metrics = jax.jit(jaxppo.train)(config, jax.random.key(0))
    network = networks.make(config, envs.make(env_id))
    return network, state.params, metrics


def test_value_conditions_on_the_observation():
    network, params, _ = _trained("ProbeValue-v0")
    # One step, reward = sign: V(+1) = +1, V(-1) = -1.
    np.testing.assert_allclose(network.apply(params, SIGNS, method="value"), [1.0, -1.0],
                               atol=0.05)


def test_value_discounts_over_two_steps():
    network, params, _ = _trained("ProbeDiscount-v0")
    # Reward 1 at the end of step 2: V(t=0) = gamma * 1 = 0.9, V(t=1) = 1.
    times = jnp.array([[0.0], [1.0]])
    np.testing.assert_allclose(network.apply(params, times, method="value"), [0.9, 1.0],
                               atol=0.05)


def test_truncated_episodes_bootstrap():
    network, params, metrics = _trained("ProbeTruncation-v0")
    # Reward 1 forever, cut every 5 steps, constant observation. Bootstrapping through the
    # time limit gives V = 1 / (1 - 0.9) = 10. Treating the cut as a terminal state would
    # instead fit the average over the 5 in-episode positions of sum_{k<5-t} 0.9^k:
    # (4.0951 + 3.439 + 2.71 + 1.9 + 1) / 5 = 2.63.
    value = network.apply(params, jnp.zeros((1, 1)), method="value")
    np.testing.assert_allclose(value, [10.0], atol=0.5)
    np.testing.assert_allclose(metrics.episode_length[-1], 5.0)
    np.testing.assert_allclose(metrics.episode_return[-1], 5.0)


def test_policy_conditions_on_the_observation():
    network, params, metrics = _trained("ProbePolicy-v0")
    dist, value = network.apply(params, SIGNS)
    np.testing.assert_array_equal(dist.mode(), [1, 0])
    # Optimal: reward +1 every episode, so V = 1 and the training return reaches 1.
    assert np.all(np.exp(dist.log_prob(jnp.array([1, 0]))) > 0.95)
    np.testing.assert_allclose(value, [1.0, 1.0], atol=0.1)
    assert metrics.episode_return[-1] > 0.9


def test_gaussian_policy_conditions_on_the_observation():
    network, params, _ = _trained("ProbeContinuous-v0")
    dist, _ = network.apply(params, SIGNS)
    # Reward -(a - sign / 2)^2: the optimal mean is sign / 2.
    np.testing.assert_allclose(dist.mode()[:, 0], [0.5, -0.5], atol=0.1)


def test_masked_actions_are_never_taken_while_learning():
    config = PROBE.replace(env_id="ProbeMasked-v0", action_masking=True)
    state, metrics = jax.jit(jaxppo.train)(config, jax.random.key(0))
    # An invalid action would earn -1; valid ones earn 0 or +1. So no update's mean return
    # can be below 0, and the best valid action (+1) is learned.
    assert np.all(np.asarray(metrics.episode_return) >= 0.0)
    assert metrics.episode_return[-1] > 0.9
    network = networks.make(config, envs.make("ProbeMasked-v0"))
    masks = jnp.array([[True, False, True, False], [False, True, False, True]])
    dist = networks.policy(network, state.params, config, SIGNS, masks)
    np.testing.assert_array_equal(dist.mode(), [2, 1])
    np.testing.assert_array_equal(np.exp(dist.log_prob(jnp.array([1, 0]))), [0.0, 0.0])
