"""The environment boundary: gymnax 1.0 steps, termination vs truncation, episode stats."""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_python

from jaxppo import envs


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown env_id 'CartPole-v9'.*CartPole-v1.*Probe"):
        envs.make("CartPole-v9")


def test_unknown_id_suggests_the_closest_ones():
    with pytest.raises(ValueError, match=r"'Pendulum-v2'; did you mean 'Pendulum-v1'\? known"):
        envs.make("Pendulum-v2")
    with pytest.raises(ValueError, match=r"'Breakout-Minatar'; did you mean 'Breakout-MinAtar'"):
        envs.make("Breakout-Minatar")
    with pytest.raises(ValueError, match="'Zzzzzz'; known environments: "):  # nothing close
        envs.make("Zzzzzz")


def test_every_listed_id_is_made_offline_but_the_marked_downloads():
    # The other suites' ids are made by their own tests (tests/test_suite_*.py).
    assert set(envs.DOWNLOADS) <= set(envs.builtin_ids())
    for env_id in envs.builtin_ids():
        if env_id not in envs.DOWNLOADS:
            assert envs.make(env_id).env_id == env_id


@pytest.fixture
def offline(monkeypatch):
    """MNIST's download failing as it does without a network, and a fresh `make` cache (an
    env made earlier, online, would come from the cache)."""
    import urllib.error

    envs.make("CartPole-v1")  # imports gymnax the way jaxppo does, before load_mnist below
    from gymnax.utils import load_mnist

    def no_network(*args, **kwargs):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(load_mnist, "load_mnist", no_network)
    monkeypatch.setattr(envs, "make", functools.cache(envs.make.__wrapped__))


def test_a_failed_download_is_one_error_naming_the_env_and_the_cause(offline):
    # Once a 77-line traceback ending in URLError, from deep inside gymnax.
    with pytest.raises(ValueError, match=re.escape(
            "env_id 'MNISTBandit-bsuite' could not be created: it downloads the MNIST data set "
            "(to /tmp/mnist) on first use, which failed ([Errno -2] Name or service not known); "
            "run it once with network access or choose another env")):
        envs.make("MNISTBandit-bsuite")


def test_make_is_cached_and_describes_spaces():
    cartpole = envs.make("CartPole-v1")
    assert envs.make("CartPole-v1") is cartpole
    assert cartpole.action_space.discrete and cartpole.action_space.num_actions == 2
    assert cartpole.observation_size == 4
    pendulum = envs.make("Pendulum-v1")
    assert not pendulum.action_space.discrete
    assert pendulum.action_space.shape == (1,)
    np.testing.assert_array_equal(pendulum.action_space.low, [-2.0])
    np.testing.assert_array_equal(pendulum.action_space.high, [2.0])
    # MinAtar observations (10 x 10 x 4) are flattened for an MLP.
    assert envs.make("Breakout-MinAtar").observation_size == 400


@pytest.mark.parametrize(
    ("env_id", "limit"),
    # gymnax's defaults: CartPole-v1 500 steps, Pendulum-v1 200; the probes' own params:
    # ProbeTruncation-v0 cuts at 5, the others keep ProbeParams' 1000.
    [("CartPole-v1", 500), ("Pendulum-v1", 200), ("ProbeTruncation-v0", 5),
     ("ProbeValue-v0", 1000)],
)
def test_make_names_the_env_and_keeps_its_default_params(env_id, limit):
    env = envs.make(env_id)
    assert env.env_id == env_id
    assert repr(env) == f"GymnaxEnv({env_id!r})"
    assert env.max_episode_steps == limit


def _run(env, actions, key):
    obs, state = env.reset(key)
    steps = []
    for i, action in enumerate(actions):
        state, step = env.step(jax.random.fold_in(key, i), state, action)
        steps.append(step)
    return jax.tree.map(lambda *x: jnp.stack(x), *steps)


def test_cartpole_terminates_and_reports_the_episode():
    env = envs.make("CartPole-v1")
    # Always pushing right topples the pole within a few dozen steps: a termination.
    steps = _run(env, [1] * 60, jax.random.key(0))
    end = int(np.argmax(np.asarray(steps.terminated)))
    assert steps.terminated[end] and not steps.truncated[:end + 1].any()
    np.testing.assert_array_equal(steps.episode_length[: end + 1], np.arange(1, end + 2))
    np.testing.assert_allclose(steps.episode_return[end], end + 1)  # reward 1 per step
    # After the end, the env was reset: the next obs starts a fresh episode and differs from
    # the pre-reset observation reported in final_obs; elsewhere they are equal.
    assert not np.allclose(steps.obs[end], steps.final_obs[end])
    np.testing.assert_array_equal(steps.obs[:end], steps.final_obs[:end])
    assert steps.episode_length[end + 1] == 1


def test_truncation_is_separate_from_termination():
    env = envs.make("ProbeTruncation-v0")
    steps = _run(env, [0] * 10, jax.random.key(1))
    np.testing.assert_array_equal(steps.truncated, [0, 0, 0, 0, 1] * 2)
    assert not steps.terminated.any()
    np.testing.assert_array_equal(steps.done, steps.truncated)


def test_episode_statistics_restart_after_each_cut():
    env = envs.make("ProbeTruncation-v0")
    steps = _run(env, [0] * 12, jax.random.key(1))
    # Reward 1 a step, cut every 5 steps: return and length count 1..5, then start again.
    np.testing.assert_array_equal(steps.episode_return, [1, 2, 3, 4, 5] * 2 + [1, 2])
    np.testing.assert_array_equal(steps.episode_length, [1, 2, 3, 4, 5] * 2 + [1, 2])


def test_a_terminal_step_at_the_time_limit_is_terminated_not_truncated():
    # ProbeValue ends after one step; with a 1-step limit gymnax reports that step as both
    # terminated and truncated. The MDP ended, so there is nothing to bootstrap: truncated
    # must be False (else the learner would bootstrap from a terminal state).
    from jaxppo.envs import probes

    params = probes.ProbeParams(max_steps_in_episode=1)
    raw = probes.ProbeValue()
    _, raw_state = raw.reset(jax.random.key(0), params)
    raw_step = raw.step(jax.random.key(1), raw_state, 0, params)
    assert bool(raw_step[3]) and bool(raw_step[4])  # gymnax: terminated and truncated
    env = envs.GymnaxEnv("ProbeValue-v0", raw, params)
    steps = _run(env, [0] * 3, jax.random.key(0))
    np.testing.assert_array_equal(steps.terminated, [True, True, True])
    np.testing.assert_array_equal(steps.truncated, [False, False, False])
    np.testing.assert_array_equal(steps.episode_length, [1, 1, 1])


def test_pendulum_clips_the_action_it_receives():
    env = envs.make("Pendulum-v1")
    key = jax.random.key(2)
    _, state = env.reset(key)
    _, big = env.step(key, state, jnp.array([50.0]))
    _, bound = env.step(key, state, jnp.array([2.0]))
    # The env sees clip(50, -2, 2) = 2: identical reward and next observation.
    np.testing.assert_array_equal(big.reward, bound.reward)
    np.testing.assert_array_equal(big.obs, bound.obs)
    _, inside = env.step(key, state, jnp.array([0.5]))
    assert not np.array_equal(inside.obs, bound.obs)
    # The bounds are the env's (+-2), not +-1: 1.5 passes unclipped. Pendulum's reward is
    # -(theta^2 + 0.1 theta_dot^2 + 0.001 u^2) at the state before the step, so
    # r(1.5) - r(1.0) = -0.001 * (2.25 - 1) = -0.00125.
    _, one = env.step(key, state, jnp.array([1.0]))
    _, one_half = env.step(key, state, jnp.array([1.5]))
    np.testing.assert_allclose(one_half.reward - one.reward, -0.00125, rtol=1e-3)
    assert not np.array_equal(one_half.obs, one.obs)


def test_a_discrete_observation_is_one_hot_with_the_envs_own_index():
    env = envs.make("FrozenLake-misc")  # gymnax: Discrete(16), the tile's index
    assert env.observation_shape == (16,)
    raw = env._env
    obs, state = env.reset(jax.random.key(0))
    raw_obs, _ = raw.reset(jax.random.key(0), env._params)
    np.testing.assert_array_equal(obs, np.eye(16, dtype=np.float32)[int(raw_obs)])
    # Walk until a step ends the episode: final_obs is the one-hot of the tile it ended on
    # (a hole or the goal, never the start, 0) and obs the reset's.
    key = jax.random.key(1)
    for _ in range(200):
        key, step_key = jax.random.split(key)
        state, step = env.step(step_key, state, jnp.asarray(2))  # 2: move right
        for one_hot in (step.obs, step.final_obs):
            assert one_hot.dtype == jnp.float32 and float(one_hot.sum()) == 1.0
        if step.terminated:
            assert int(jnp.argmax(step.final_obs)) != 0
            assert int(jnp.argmax(step.obs)) == 0
            break
    else:
        pytest.fail("no FrozenLake episode ended in 200 steps")


def _frozen_lake_success(raw, steps: int, best: bool) -> float:
    """P(goal within ``steps``) from the start of gymnax's slippery FrozenLake ``raw``, by
    dynamic programming: the best policy's (``best``) or uniformly random actions'."""
    desc = np.asarray(raw.desc)
    rows, cols = desc.shape
    moves = ((0, -1), (1, 0), (0, 1), (-1, 0))  # gymnax's actions: left, down, right, up
    ends = {int(i) for i in np.flatnonzero(np.isin(desc.ravel(), (2, 3)))}  # hole, goal
    goal = int(np.flatnonzero(desc.ravel() == 3)[0])  # tiles: 0 start, 1 ice, 2 hole, 3 goal
    slip = (1.0 - raw.success_rate) / 2.0

    def land(s, a):
        r, c = divmod(s, cols)
        return min(max(r + moves[a][0], 0), rows - 1) * cols + min(max(c + moves[a][1], 0),
                                                                   cols - 1)

    value = np.zeros(rows * cols)
    for _ in range(steps):
        new = np.zeros_like(value)
        for s in set(range(rows * cols)) - ends:
            q = [sum(p * (1.0 if land(s, b) == goal else value[land(s, b)])
                     for b, p in ((a, raw.success_rate), ((a - 1) % 4, slip),
                                  ((a + 1) % 4, slip)))
                 for a in range(4)]
            new[s] = max(q) if best else np.mean(q)
        value = new  # holes and the goal keep 0: nothing comes after them
    return float(value[0])


def test_frozen_lake_success_is_at_most_0_744_and_0_014_at_random():
    # The bounds the learning check and the zoo's note quote, for gymnax's own 4x4 map.
    raw = envs.make("FrozenLake-misc")._env
    assert _frozen_lake_success(raw, 100, best=True) == pytest.approx(0.744, abs=5e-4)
    assert _frozen_lake_success(raw, 100, best=False) == pytest.approx(0.014, abs=5e-4)
    # One step cannot reach the goal from the start: 0.
    assert _frozen_lake_success(raw, 1, best=True) == 0.0


def test_probe_masked_masks_depend_on_the_sign_and_score_actions():
    env = envs.make("ProbeMasked-v0")
    assert "ProbeMasked-v0" in envs.registered()
    assert env.has_action_mask and env.action_space.num_actions == 4
    obs, states = jax.vmap(env.reset)(jax.random.split(jax.random.key(3), 16))
    signs = np.asarray(obs[:, 0])
    assert set(signs) == {-1.0, 1.0}
    masks = np.asarray(jax.jit(jax.vmap(env.action_mask))(states))
    positive = np.array([True, False, True, False])
    np.testing.assert_array_equal(masks, np.where(signs[:, None] > 0, positive, ~positive))
    # Rewards per action: sign +1 -> [0, -1, +1, -1] (best 2); sign -1 -> [-1, +1, -1, 0]
    # (best 1); invalid actions -1, the other valid one 0. Every episode is one step.
    keys = jax.random.split(jax.random.key(4), 16)
    for action, on_plus, on_minus in [(0, 0.0, -1.0), (1, -1.0, 1.0), (2, 1.0, -1.0),
                                      (3, -1.0, 0.0)]:
        actions = jnp.full((16,), action, jnp.int32)
        _, step = jax.vmap(env.step)(keys, states, actions)
        np.testing.assert_array_equal(step.reward, np.where(signs > 0, on_plus, on_minus))
        assert step.terminated.all() and not step.truncated.any()
        np.testing.assert_array_equal(step.episode_length, np.ones(16))


def test_probe_masked_mask_follows_the_auto_reset():
    env = envs.make("ProbeMasked-v0")
    _, state = env.reset(jax.random.key(0))
    for i in range(6):
        state, step = env.step(jax.random.key(10 + i), state, jnp.int32(0))
        # After the one-step episode the state is the reset one: its mask matches the new obs.
        expected = [True, False, True, False] if step.obs[0] > 0 else [False, True, False, True]
        np.testing.assert_array_equal(env.action_mask(state), expected)


def test_envs_without_masks_allow_every_action():
    cartpole = envs.make("CartPole-v1")
    assert not cartpole.has_action_mask
    _, state = cartpole.reset(jax.random.key(0))
    np.testing.assert_array_equal(cartpole.action_mask(state), [True, True])
    assert not envs.make("ProbePolicy-v0").has_action_mask


def test_gymnax_comes_without_its_rendering_modules_and_they_still_work():
    # A fresh process: gymnax imports seaborn and matplotlib.pyplot for rendering only; jaxppo
    # leaves them unloaded (1 s of seaborn's scipy and pandas) until someone uses them.
    script = """
import sys
import jaxppo
jaxppo.envs.make("CartPole-v1")
print(sorted(m for m in ("seaborn", "matplotlib.pyplot", "scipy.stats", "pandas")
             if m in sys.modules))
import gymnax.environments.misc.pong as pong
print(len(pong.sns.color_palette("cubehelix", 3)), callable(pong.plt.subplots))
import seaborn
print(type(seaborn).__name__, seaborn is sys.modules["seaborn"], "pandas" in sys.modules)
"""
    done = run_python(script, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["[]", "3 True", "module True True"]


def test_a_rendering_module_imported_before_gymnax_is_left_as_it_is():
    script = """
import sys
import seaborn
import jaxppo
jaxppo.envs.make("CartPole-v1")
import gymnax.environments.misc.pong as pong
print(pong.sns is seaborn)
"""
    done = run_python(script, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True"]


def test_a_rendering_module_that_is_not_installed_gets_no_stand_in():
    # find_spec raises, rather than returning None, for a dotted name whose parent is missing.
    assert envs._installed("seaborn")
    assert not envs._installed("no_such_package")
    assert not envs._installed("no_such_package.pyplot")


class _Countdown(envs.SuiteEnv):
    """A suite env without auto-reset: observation [t, start], start drawn from the key;
    action 1 at t >= 2 terminates (reward 10), else reward 1; cut at 4 steps by `SuiteEnv`."""

    env_id = "test/Countdown"
    action_space = envs.ActionSpace(discrete=True, num_actions=2)
    time_limit = 4

    def _reset(self, key):
        start = jax.random.uniform(key)
        return {"t": jnp.zeros(()), "start": start}, (jnp.zeros((), jnp.int32), start)

    def _step(self, key, state, action):
        t, start = state
        t = t + 1
        terminated = (action == 1) & (t >= 2)
        reward = jnp.where(terminated, 10.0, 1.0)
        return {"t": t.astype(jnp.float32), "start": start}, (t, start), reward, terminated, \
            jnp.zeros((), jnp.bool_)


def test_a_suite_env_resets_keeping_the_final_observation_and_cuts_at_its_limit():
    env = _Countdown()
    # A dict observation is its leaves flattened in key order: [start, t].
    assert env.observation_shape == (2,) and env.max_episode_steps == 4
    steps = _run(env, [0, 0, 0, 0, 0, 0, 1, 0], jax.random.key(3))
    # Never terminating, the first episode is cut at its 4th step: truncated, not terminated;
    # the second (steps 5 to 7) ends at its 3rd step by action 1: terminated.
    np.testing.assert_array_equal(steps.truncated, [0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(steps.terminated, [0, 0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(steps.episode_length, [1, 2, 3, 4, 1, 2, 3, 1])
    np.testing.assert_array_equal(steps.episode_return, [1, 2, 3, 4, 1, 2, 12, 1])
    # final_obs is what the step reached (t = 4 and t = 3); obs there is a fresh reset's
    # (t = 0, a new start); elsewhere the two are the same.
    np.testing.assert_array_equal(steps.final_obs[:, 1], [1, 2, 3, 4, 1, 2, 3, 1])
    np.testing.assert_array_equal(steps.obs[:, 1], [1, 2, 3, 0, 1, 2, 0, 1])
    ended = np.asarray(steps.done)
    np.testing.assert_array_equal(steps.obs[~ended], steps.final_obs[~ended])
    starts = np.asarray(steps.obs[:, 0])
    assert starts[3] != starts[2] and starts[4] == starts[3] and starts[6] != starts[5]
    assert steps.reward.dtype == jnp.float32 and steps.terminated.dtype == jnp.bool_


class _CountedResets(_Countdown):
    """`_Countdown` that counts, from inside the compiled program, the resets it computes
    (under vmap the callback runs once, with the batch)."""

    def __init__(self):
        self.resets = []

    def _reset(self, key):
        out = super()._reset(key)
        jax.debug.callback(lambda start: self.resets.append(np.size(start)), out[1][1])
        return out

    @property
    def computed(self) -> int:
        return sum(self.resets)


def test_a_batch_step_equals_vmapped_steps_and_resets_only_the_envs_that_finished():
    env = _CountedResets()
    keys = jax.random.split(jax.random.key(5), 3)
    _, state = jax.vmap(env.reset)(keys)
    # Env 0 is cut at its 4th step; env 1 terminates at its 3rd (action 1 from t = 2), and
    # again 3 steps later; env 2 always acts 0 and is cut at steps 4 and 8.
    actions = jnp.array([[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0],
                         [0, 1, 0], [0, 0, 0]])
    batch_step, vmap_step = jax.jit(env.batch_step), jax.jit(jax.vmap(env.step))
    vmapped, computed = state, []
    for t, action in enumerate(actions):
        step_keys = jax.random.split(jax.random.fold_in(jax.random.key(6), t), 3)
        before = env.computed
        state, step = batch_step(step_keys, state, action)
        jax.effects_barrier()
        computed.append(env.computed - before)
        vmapped, expected = vmap_step(step_keys, vmapped, action)
        chex.assert_trees_all_equal((state, step), (vmapped, expected))
    # Envs finished per step: 0, 0, 1, 2, 0, 1, 0, 2. With 3 envs, one reset slot
    # (core.reset_slots): one finished env gets its own reset alone, two get all three.
    assert envs.core.reset_slots(3) == 1
    assert computed == [0, 0, 1, 3, 0, 1, 0, 3]


def test_a_batch_step_resets_up_to_its_slots_alone():
    """33 envs: 3 slots. Three finished envs are reset alone, in their own places, the
    others untouched; a fourth makes every env's reset computed."""
    env = _CountedResets()
    assert envs.core.reset_slots(33) == 3 and envs.core.reset_slots(32) == 2
    _, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(5), 33))
    batch_step, vmap_step = jax.jit(env.batch_step), jax.jit(jax.vmap(env.step))
    keys = jax.random.split(jax.random.key(6), 33)
    state = state.replace(env_state=(state.env_state[0].at[:].set(2), state.env_state[1]))
    for finishing, resets in (([4, 17, 32], 3), ([0, 4, 17, 32], 33)):
        action = jnp.zeros(33, jnp.int32).at[jnp.array(finishing)].set(1)
        before = env.computed
        out = batch_step(keys, state, action)
        jax.effects_barrier()
        assert env.computed - before == resets
        chex.assert_trees_all_equal(out, vmap_step(keys, state, action))
        np.testing.assert_array_equal(np.flatnonzero(out[1].done), finishing)


def test_a_batch_step_vmapped_over_runs_resets_only_when_an_env_of_any_run_finished():
    env = _CountedResets()
    keys = jax.random.split(jax.random.key(7), (2, 3))  # [runs, envs]
    _, state = jax.vmap(jax.vmap(env.reset))(keys)
    # Run 0 never ends early; run 1's env 0 terminates at its 3rd step. Both are cut at 4.
    actions = jnp.zeros((6, 2, 3), jnp.int32).at[2, 1, 0].set(1)
    batch_step = jax.jit(jax.vmap(env.batch_step))
    vmap_step = jax.jit(jax.vmap(jax.vmap(env.step)))
    vmapped, seen = state, []
    for t, action in enumerate(actions):
        step_keys = jax.random.split(jax.random.fold_in(jax.random.key(8), t), (2, 3))
        before = len(env.resets)
        state, step = batch_step(step_keys, state, action)
        jax.effects_barrier()
        seen.append(len(env.resets) > before)
        vmapped, expected = vmap_step(step_keys, vmapped, action)
        chex.assert_trees_all_equal((state, step), (vmapped, expected))
    # Steps 3 (run 1's termination) and 4 (every env cut) compute resets; the rest do not,
    # though a plain cond under vmap would run them at every step.
    assert seen == [False, False, True, True, False, False]


def test_a_suite_env_trains_like_a_gymnax_env(monkeypatch):
    import jaxppo

    env = _Countdown()
    monkeypatch.setattr(envs, "_USER", {"test/Countdown": env})
    envs.make.cache_clear()
    try:
        config = jaxppo.Config(env_id="test/Countdown", num_envs=4, num_steps=16,
                               total_timesteps=128, num_minibatches=2, update_epochs=1,
                               hidden_sizes=(16,))
        _, metrics = jax.jit(jaxppo.train)(config, jax.random.key(0))
    finally:
        envs.make.cache_clear()
    assert np.isfinite(np.asarray(metrics.total_loss)).all()
    # Every episode ends by step 4: at least 4 envs x 16 steps / 4 = 16 ends per update.
    assert (np.asarray(metrics.episode_count) >= 16).all()


def test_a_suite_that_is_not_installed_names_its_extra(monkeypatch):
    monkeypatch.setitem(envs.SUITES, "nosuch", envs.Suite("jaxppo.envs.nosuch",
                                                          "jaxppo_no_such_package", "nosuch"))
    envs.make.cache_clear()
    message = ("env_id 'nosuch/Thing-v0' is from nosuch, which is not installed; install it "
               'with: pip install "jaxppo[nosuch]"')
    with pytest.raises(ValueError, match=re.escape(message)):
        envs.make("nosuch/Thing-v0")
    assert not envs.is_known("nosuch/Thing-v0")
    assert ("nosuch", None, "nosuch") in envs.catalog()


def test_a_pytrees_one_grid_comes_first_and_is_named():
    board = jnp.arange(12.0).reshape(3, 4)
    obs = {"a_count": jnp.float32(7), "board": board, "position": jnp.array([1, 2])}
    flat = envs.core.observation_array(obs)
    # The board first (12 values, row-major), then the other leaves in key order: 12 + 1 + 2.
    np.testing.assert_array_equal(flat, [*range(12), 7, 1, 2])
    assert envs.core.observation_grid(obs) == (3, 4, 1)  # a 2-D board has one channel
    image = {"image": jnp.zeros((5, 6, 2)), "t": jnp.float32(0)}
    assert envs.core.observation_grid(image) == (5, 6, 2)
    assert envs.core.observation_array(image).shape == (5 * 6 * 2 + 1,)


@pytest.mark.parametrize("obs", [
    jnp.zeros((3, 4, 2)),  # one array keeps its shape: nothing to find
    {"a": jnp.zeros((3, 3)), "b": jnp.zeros((2, 2))},  # two boards: which one is ambiguous
    {"a": jnp.zeros((3,)), "b": jnp.float32(1)},  # no board
    {"a": jnp.zeros((2, 3, 3, 3)), "b": jnp.zeros((3, 3))},  # a rank-4 leaf
])
def test_no_single_grid_means_no_grid_and_key_order(obs):
    assert envs.core.observation_grid(obs) is None
    leaves = jax.tree.leaves(obs)
    if len(leaves) > 1:
        np.testing.assert_array_equal(envs.core.observation_array(obs),
                                      np.concatenate([np.ravel(x) for x in leaves]))


def test_lazy_cond_vmaps_branches_that_close_over_batched_values():
    # A branch closing over a value batched by an outer vmap (an env's traced params in a
    # sweep), inside a scan whose carry starts unbatched: update k adds g at even k.
    def run(g):
        def body(x, k):
            x = envs.core.lazy_cond(k % 2 == 0, lambda o: o + g, lambda o: o, x)
            return x, x

        return jax.lax.scan(body, jnp.zeros(2), jnp.arange(4))[1]

    out = jax.jit(jax.vmap(run))(jnp.array([1.0, 3.0]))
    np.testing.assert_array_equal(out[:, :, 0], [[1, 1, 2, 2], [3, 3, 6, 6]])
    np.testing.assert_array_equal(out, jnp.stack([run(1.0), run(3.0)]))
