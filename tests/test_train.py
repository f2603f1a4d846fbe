"""The whole run: determinism, vmap == loop, no recompilation, rollout/update consistency.

Compiled functions are shared through module-scoped fixtures: each distinct jit of a whole run
costs seconds of compile time on a CPU.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import envs, networks, prng, rollout, update
from jaxppo import policy as policy_lib

TINY = jaxppo.Config(
    num_envs=4, num_steps=16, total_timesteps=4 * 16 * 3, update_epochs=2, num_minibatches=2
)


class CountingTrain:
    """jax.jit(train) that counts how often it is traced (= compiled, for jit)."""

    def __init__(self):
        self.traces = 0
        self.jitted = jax.jit(self._train)

    def _train(self, config, key):
        self.traces += 1
        return jaxppo.train(config, key)

    def __call__(self, config, key):
        return self.jitted(config, key)


def _comparable(tree):
    """Typed PRNG keys as their raw bits, so chex can compare whole train states."""
    return jax.tree.map(
        lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
        tree,
    )


@pytest.fixture(scope="module")
def train_jit():
    return CountingTrain()


@pytest.fixture(scope="module")
def single_run(train_jit):
    return train_jit(TINY, jax.random.key(0))


def test_tiny_run_has_finite_metrics_of_the_right_shape(single_run):
    state, metrics = single_run
    for name, value in vars(metrics).items():
        assert value.shape == (TINY.num_updates,), name
    finite = {k: v for k, v in vars(metrics).items() if k not in ("episode_return",
                                                                   "episode_length")}
    for name, value in finite.items():
        assert np.all(np.isfinite(value)), name
    # A near-random CartPole policy needs ~20 steps per episode: no episode ends in the first
    # update's 16 steps per env, so its episode stats are NaN (documented); later ones end some.
    count = np.asarray(metrics.episode_count)
    np.testing.assert_array_equal(np.isnan(metrics.episode_return), count == 0)
    assert count[0] == 0 and count[-1] > 0
    assert np.all(np.asarray(metrics.episode_length)[count > 0] >= 8)
    np.testing.assert_array_equal(metrics.env_steps, [64, 128, 192])
    assert int(state.update_step) == TINY.num_updates
    # Annealed rate: 2.5e-4 * (1 - k * 4 / 12) at the first gradient step of update k.
    np.testing.assert_allclose(metrics.learning_rate, [2.5e-4, 2.5e-4 * 2 / 3, 2.5e-4 / 3],
                               rtol=1e-6)


def test_same_key_gives_identical_results(train_jit, single_run):
    again = train_jit(TINY, jax.random.key(0))
    chex.assert_trees_all_equal(_comparable(again), _comparable(single_run))
    other = train_jit(TINY, jax.random.key(1))
    assert not np.array_equal(other[1].total_loss, single_run[1].total_loss)


def test_vmap_over_seeds_equals_single_runs(train_jit):
    keys = jax.random.split(jax.random.key(7), 2)
    batched = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))(TINY, keys)
    for i in range(2):
        single = train_jit(TINY, keys[i])
        chex.assert_trees_all_close(
            _comparable(jax.tree.map(lambda x, i=i: x[i], batched)), _comparable(single),
            rtol=1e-5, atol=1e-6,
        )


def test_settings_by_seeds_sweep_equals_single_runs(train_jit):
    rates = (1e-3, 3e-4)
    configs = jaxppo.stack_configs([TINY.replace(learning_rate=lr) for lr in rates])
    keys = jax.random.split(jax.random.key(3), 2)
    sweep = jax.jit(jax.vmap(jax.vmap(jaxppo.train, in_axes=(None, 0)), in_axes=(0, None)))
    _, metrics = sweep(configs, keys)
    assert metrics.total_loss.shape == (2, 2, TINY.num_updates)
    for h, lr in enumerate(rates):
        for s in range(2):
            _, single = train_jit(TINY.replace(learning_rate=lr), keys[s])
            chex.assert_trees_all_close(
                jax.tree.map(lambda x, h=h, s=s: x[h, s], metrics), single, rtol=1e-5,
                atol=1e-6,
            )


def test_dynamic_field_change_does_not_recompile_static_change_does(train_jit, single_run):
    before = train_jit.traces
    assert before >= 1
    for config in (
        TINY.replace(learning_rate=1e-3),
        TINY.replace(clip_eps=0.1, ent_coef=0.0, gamma=0.9),
        TINY.replace(learning_rate=5e-4, max_grad_norm=1.0),
    ):
        jax.block_until_ready(train_jit(config, jax.random.key(0)))
    assert train_jit.traces == before
    jax.block_until_ready(train_jit(TINY.replace(num_envs=8), jax.random.key(0)))
    assert train_jit.traces == before + 1


def test_learning_rate_changes_the_result(train_jit, single_run):
    _, faster = train_jit(TINY.replace(learning_rate=1e-2), jax.random.key(0))
    assert not np.allclose(faster.total_loss[1:], single_run[1].total_loss[1:])


def test_eager_step_equals_jitted_step():
    state = jaxppo.init(TINY, jax.random.key(4))
    eager_state, eager_metrics = jaxppo.step(TINY, state)
    jit_state, jit_metrics = jax.jit(jaxppo.step)(TINY, state)
    chex.assert_trees_all_close(eager_state.params, jit_state.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(eager_metrics, jit_metrics, rtol=1e-5, atol=1e-6)


def _rollout(config, key):
    env = envs.make(config.env_id)
    network = networks.make(config, env)
    state = jaxppo.init(config, key)
    carry = rollout.EnvCarry(state.obs, state.env_state)
    policy = policy_lib.Policy(state.params, state.normalizers)
    _, transitions = jax.jit(rollout.rollout, static_argnums=(0, 1, 2))(
        config, env, network, policy, carry, key
    )
    return network, state, transitions


def _final_values(config, network, state, tr):
    """V(final_obs) [T, N] as the update computes it, by the rollout's policy."""
    policy = policy_lib.Policy(state.params, state.normalizers)
    return policy_lib.critic_value(config, network, policy, tr.final_obs)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_first_minibatch_has_ratio_one(env_id):
    """The rollout's log-probs and values are those the update recomputes before any step,
    for continuous actions too (the log-prob is of the unclipped sample)."""
    # Pendulum with init_log_std 1: sigma = e, so |a| > 2 for |z| > 2 / e = 0.736, 46% of
    # the samples of the near-zero initial mean.
    config = TINY.replace(env_id=env_id, init_log_std=1.0 if env_id == "Pendulum-v1" else 0.0)
    network, state, tr = _rollout(config, jax.random.key(5))
    data = update.UpdateData(tr, tr.reward, state.normalizers)
    policy = policy_lib.Policy(state.params, state.normalizers)
    adv, targets = update.advantages(config, network, policy, data, tr.value)
    batch = update.make_batch(config, data, adv, targets)
    _, info = update.loss(state.params, network, config, batch, config.ent_coef)
    np.testing.assert_allclose(info.approx_kl, 0.0, atol=1e-6)
    assert float(info.clip_fraction) == 0.0
    # Ratio 1 and normalized advantages: the surrogate is -mean(normalized A) = 0.
    np.testing.assert_allclose(info.policy_loss, 0.0, atol=1e-5)
    if env_id == "Pendulum-v1":
        # The action is stored unclipped (the env clips its own copy to [-2, 2]) and its
        # log-prob is the Gaussian one of that stored action.
        assert tr.action.shape == (config.num_steps, config.num_envs, 1)
        action = np.float64(tr.action[..., 0])
        assert np.mean(np.abs(action) > 2.0) > 0.25
        mean = np.float64(networks.apply(network, state.params, config, tr.obs)[0].mean[..., 0])
        # log N(a; mu, e^1) = -((a - mu) / e)^2 / 2 - 1 - log(2 pi) / 2.
        expected = -0.5 * ((action - mean) / np.e) ** 2 - 1.0 - 0.5 * np.log(2 * np.pi)
        np.testing.assert_allclose(tr.log_prob, expected, rtol=1e-5, atol=1e-5)


def test_final_obs_value_is_the_next_steps_value_where_no_episode_ended():
    config = TINY.replace(num_steps=64, total_timesteps=256)
    network, state, tr = _rollout(config, jax.random.key(6))
    done = np.asarray(tr.done[:-1])
    assert done.any() and (~done).any()
    nv = np.asarray(_final_values(config, network, state, tr)[:-1])
    v_next = np.asarray(tr.value[1:])
    np.testing.assert_allclose(nv[~done], v_next[~done], rtol=1e-5, atol=1e-6)
    # Where an episode ended, it is the value of the pre-reset observation, not of the
    # fresh episode's first observation.
    assert not np.allclose(nv[done], v_next[done])


def test_truncation_is_not_termination_in_the_rollout():
    """ProbeTruncation never terminates and is cut every 5 steps."""
    config = TINY.replace(env_id="ProbeTruncation-v0", num_steps=10)
    _, _, tr = _rollout(config, jax.random.key(0))
    assert not np.asarray(tr.terminated).any()
    truncated = np.asarray(tr.truncated)
    np.testing.assert_array_equal(truncated[:, 0], [0, 0, 0, 0, 1] * 2)
    np.testing.assert_array_equal(np.asarray(tr.episode_length)[:, 0], [1, 2, 3, 4, 5] * 2)


# One update on a probe, with the keys `step` hands to the rollout and the update captured
# from inside the jitted step (one compile serves the reward-scaling and key tests).
PROBE = TINY.replace(env_id="ProbeTruncation-v0", num_envs=1, num_steps=16, total_timesteps=16,
                     update_epochs=1, num_minibatches=2, hidden_sizes=(8,), scale_rewards=True)


@pytest.fixture(scope="module")
def probe_step():
    captured = {}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            captured[name] = args[-1]  # the key is the last positional argument of both
            captured[name + " output"] = fn(*args, **kwargs)
            return captured[name + " output"]
        return wrapped

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rollout, "rollout", spy("rollout", rollout.rollout))
        patch.setattr(update, "update", spy("update", update.update))

        @jax.jit
        def step_with_keys(state):
            new_state, metrics = jaxppo.step(PROBE, state)
            return (new_state, metrics, captured["rollout"], captured["update"],
                    captured["update output"][1])  # the UpdateInfo

        state = jaxppo.init(PROBE, jax.random.key(0))
        return (state, *step_with_keys(state))


def test_running_return_for_reward_scaling_resets_at_truncation(probe_step):
    """ProbeTruncation: reward 1 every step, cut every 5 steps, never terminated. 16 steps
    are 3 whole episodes and step 1 of a fourth; R resets after every cut."""
    _, state, metrics, _, _, _ = probe_step
    # R_t = 0.99 R_{t-1} + 1 within an episode: 1, 1.99, 2.9701, 3.940399, 4.90099501.
    episode = [1.0, 1.99, 2.9701, 3.940399, 4.90099501]
    returns = np.array(episode * 3 + [1.0])
    normalizers = state.normalizers
    # After the rollout R = 1 (step 1 of episode 4), not sum_{k<16} 0.99^k = 14.85 (no reset).
    np.testing.assert_allclose(normalizers.discounted_return, [1.0], rtol=1e-6)
    assert float(normalizers.reward.count) == 16
    np.testing.assert_allclose(normalizers.reward.mean, returns.mean(), rtol=1e-5)
    np.testing.assert_allclose(normalizers.reward.var, returns.var(), rtol=1e-4)
    # 3 episodes ended, each of length 5 and return 5.
    assert int(metrics.episode_count) == 3
    np.testing.assert_allclose([metrics.episode_return, metrics.episode_length], [5.0, 5.0])


@pytest.mark.layout
def test_step_splits_its_key_into_next_rollout_and_update_keys(probe_step):
    """step: key, rollout_key, update_key = split(state.key, 3), the rollout's key on the
    unrolled threefry (`prng.fast`, same bits)."""
    before, after, _, rollout_key, update_key, _ = probe_step
    next_key, want_rollout, want_update = jax.random.split(before.key, 3)
    data = jax.random.key_data
    np.testing.assert_array_equal(data(after.key), data(next_key))
    np.testing.assert_array_equal(data(rollout_key), data(want_rollout))
    assert str(jax.random.key_impl(rollout_key)) == str(prng.UNROLLED)
    np.testing.assert_array_equal(data(update_key), data(want_update))
    # Three different keys, none the old one.
    words = {tuple(np.asarray(data(k)).tolist())
             for k in (before.key, after.key, rollout_key, update_key)}
    assert len(words) == 4


def test_episode_length_and_return_are_separate_metrics():
    """ProbeDiscount: 2 steps per episode, reward 0 then 1, so return 1 and length 2; 16 steps
    of 1 env end 8 episodes."""
    config = PROBE.replace(env_id="ProbeDiscount-v0", scale_rewards=False)
    _, metrics = jax.jit(jaxppo.step, static_argnums=0)(config, jaxppo.init(config,
                                                                            jax.random.key(0)))
    assert int(metrics.episode_count) == 8
    np.testing.assert_array_equal([metrics.episode_return, metrics.episode_length], [1.0, 2.0])


def test_bad_input_is_refused_before_tracing():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="unknown env_id 'NoSuchEnv-v0'.*CartPole-v1"):
        jaxppo.train(jaxppo.Config(env_id="NoSuchEnv-v0"), key)
    with pytest.raises(ValueError, match="num_minibatches=3.*must divide"):
        jax.jit(jaxppo.train)(TINY.replace(num_minibatches=3), key)
    with pytest.raises(ValueError, match="action_dist='gaussian'.*discrete"):
        jaxppo.init(TINY.replace(action_dist="gaussian"), key)
    with pytest.raises(ValueError, match="action_dist='categorical'.*continuous"):
        jaxppo.init(TINY.replace(env_id="Pendulum-v1", action_dist="categorical"), key)
    with pytest.raises(ValueError, match="clip_eps=-0.1"):
        jaxppo.train(TINY.replace(clip_eps=-0.1), key)


def test_stack_configs_rejects_a_static_difference():
    with pytest.raises(ValueError, match=r"configs\[1\]\.num_envs=8 differs"):
        jaxppo.stack_configs([TINY, TINY.replace(num_envs=8)])


@pytest.mark.layout
def test_config_leaves_are_traced_not_closed_over():
    """A jaxpr of train holds the dynamic leaves as inputs, not as baked constants."""
    jaxpr = jax.make_jaxpr(jaxppo.train)(TINY, jax.random.key(0))
    assert len(jaxpr.in_avals) == len(jax.tree.leaves(TINY)) + 1
    assert all(aval.shape == () for aval in jaxpr.in_avals[:-1])
    assert jnp.issubdtype(jaxpr.in_avals[0].dtype, jnp.floating)


@pytest.mark.layout
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_whole_run_lowers_for_accelerators(env_id):
    # CI has no accelerator, but JAX lowers for one on this machine: nothing CPU-only (a
    # LAPACK call, a CPU-only branch) may reach the GPU or TPU program of a whole run.
    traced = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0))).trace(
        TINY.replace(env_id=env_id), jax.random.split(jax.random.key(0), 2))
    for platform in ("cuda", "rocm", "tpu"):
        text = traced.lower(lowering_platforms=(platform,)).as_text()
        assert "lapack" not in text and "optimization_barrier" not in text, platform
    assert "lapack" in traced.lower(lowering_platforms=("cpu",)).as_text()



# CartPole (2 actions, so entropy, approx_kl and clip_fraction are not 0) with a large rate and
# clip_eps 0.01, so that later minibatches clip: 4 updates of 2 x 2 gradient steps, 16 in all.
INFO = PROBE.replace(env_id="CartPole-v1", num_envs=4, total_timesteps=4 * 4 * 16,
                     update_epochs=2, scale_rewards=False, learning_rate=0.05, clip_eps=0.01)


@pytest.fixture(scope="module")
def two_steps_with_info():
    """Metrics and the UpdateInfo `update.update` returned, for the first two updates of
    INFO (one compiled step, called twice)."""
    captured = {}
    original = update.update

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        captured["info"] = out[1]
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(update, "update", spy)

        @jax.jit
        def step_with_info(state):
            new_state, metrics = jaxppo.step(INFO, state)
            return new_state, metrics, captured["info"]

        state = jaxppo.init(INFO, jax.random.key(0))
        state, *first = step_with_info(state)
        _, *second = step_with_info(state)
        return first, second


@pytest.mark.layout
def test_step_metrics_are_the_updates_info(two_steps_with_info):
    """Each loss metric is the field of the same name of the UpdateInfo that `update.update`
    returned (its mean over the 2 x 2 gradient steps), not a neighbour's; env_steps
    (k + 1) x 64; learning_rate the annealed schedule at the update's first gradient step."""
    names = ("total_loss", "policy_loss", "value_loss", "entropy", "approx_kl",
             "clip_fraction", "grad_norm")
    for k, (metrics, info) in enumerate(two_steps_with_info):
        for name in names:
            np.testing.assert_array_equal(getattr(metrics, name), getattr(info, name),
                                          err_msg=name)
        # The seven differ pairwise (none is 0), so a swap of two cannot pass above.
        values = [float(getattr(info, name)) for name in names]
        assert len(set(values)) == len(values) and 0.0 not in values, values
        assert int(metrics.gradient_steps) == int(info.gradient_steps) == 4
        assert int(metrics.env_steps) == (k + 1) * 64
        assert int(metrics.episode_count) >= 0
        np.testing.assert_allclose(metrics.ent_coef, INFO.ent_coef, rtol=1e-7)
    # 0.05 x (1 - 4k / 16) at gradient step 4k: 0.05, then 0.0375.
    lr = [float(metrics.learning_rate) for metrics, _ in two_steps_with_info]
    np.testing.assert_allclose(lr, [0.05, 0.0375], rtol=1e-6)
