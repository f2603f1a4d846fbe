"""Craftax through `jaxppo.envs.craftax`: its one done split into termination and truncation,
the final observation kept, spaces and shapes, eager == jit, vmap == loop, a tiny run.

Craftax compiles slowly on a CPU (world generation, the game step, the renderer), so the
behaviour is pinned on Craftax-Classic-Symbolic through a few shared compiled programs
(module-scoped fixtures: one env object stepped eagerly, which runs Craftax's own jitted
reset and step, and one jit of a vmapped step); full Craftax is stepped eagerly too and the
pixel envs are checked by tracing (and Classic's pixels by one reset).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("craftax")

from conftest import tiny_training_metrics  # noqa: E402

from jaxppo import envs  # noqa: E402
from jaxppo.envs import craftax  # noqa: E402

CLASSIC = "Craftax-Classic-Symbolic-v1"
LIMIT = 3  # the time limit of the test envs, in place of Classic's 10000 steps
ACTIONS = (1, 2, 3)  # Classic's LEFT, RIGHT, UP: one per step up to the limit


def _short(name: str, limit: int) -> craftax.CraftaxEnv:
    """Craftax env ``name`` whose episodes are cut after ``limit`` steps."""
    default = craftax.make(name).params
    return craftax.CraftaxEnv(name, default.replace(max_timesteps=limit))


def _dying(state):
    """``state`` (an `EpisodeState`) with the player's health at -1: the next step kills it
    (recovery adds at most 1 health a step: -1 + 1 = 0, and health <= 0 is Craftax's
    is_dead)."""
    env_state = state.env_state
    return state.replace(env_state=env_state.replace(player_health=env_state.player_health
                                                     - env_state.player_health - 1))


def _comparable(tree):
    """Typed PRNG keys (Craftax keeps one in its state) as their raw bits, for chex."""
    return jax.tree.map(
        lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
        tree)


@pytest.fixture(scope="module")
def classic():
    # One env object for every test of it: jit caches programs by the env's identity.
    return _short(CLASSIC, LIMIT)


@pytest.fixture(scope="module")
def rollout(classic):
    """LIMIT eager steps of the adapter and of Craftax's own env stepped by hand (no reset)
    on the same keys: the states before each step, the steps, Craftax's (obs, reward, done)
    per step and the observation of the reset after the last step. Eager, the adapter runs
    Craftax's own jitted reset and step, the programs the hand-stepped env compiles."""
    key = jax.random.key(0)
    _, state = classic.reset(key)
    _, suite_state = classic.suite_env.reset(key, classic.params)
    states, steps, suite = [], [], []
    for t, action in enumerate(ACTIONS):
        step_key = jax.random.fold_in(key, t)
        states.append(state)
        state, step = classic.step(step_key, state, jnp.int32(action))
        steps.append(step)
        own_key, reset_key = jax.random.split(step_key)  # as `core.SuiteEnv.step` splits it
        suite_obs, suite_state, reward, done, _ = classic.suite_env.step(
            own_key, suite_state, jnp.int32(action), classic.params)
        suite.append((suite_obs, reward, done))
    reset_obs, _ = classic.suite_env.reset(reset_key, classic.params)
    return {"states": states, "steps": steps, "suite": suite, "reset_obs": reset_obs,
            "keys": [jax.random.fold_in(key, t) for t in range(LIMIT)], "after": state}


def test_ids_and_make_through_jaxppo():
    assert craftax.ids() == ("Craftax-Classic-Symbolic-v1", "Craftax-Classic-Pixels-v1",
                             "Craftax-Symbolic-v1", "Craftax-Pixels-v1")
    assert all(envs.is_known(f"craftax/{name}") for name in craftax.ids())
    env = envs.make(f"craftax/{CLASSIC}")
    assert isinstance(env, craftax.CraftaxEnv) and env.env_id == f"craftax/{CLASSIC}"
    assert env.action_space.discrete and env.action_space.num_actions == 17
    assert env.max_episode_steps == 10000  # Classic's EnvParams.max_timesteps
    assert not env.has_action_mask
    with pytest.raises(ValueError, match="did you mean 'craftax/Craftax-Symbolic-v1'"):
        envs.make("craftax/Craftax-Symbolic-v2")


@pytest.mark.parametrize(("name", "shape", "num_actions", "limit"), [
    # Classic: a 7x9 view of 17 block + 4 mob channels, then 22 (12 inventory + 4 intrinsics
    # + light + sleeping + 4 direction): 63 * 21 + 22 = 1345.
    (CLASSIC, (1345,), 17, 10000),
    # Classic pixels: (7 + 2 inventory rows) x 9 tiles of 7x7 pixels.
    ("Craftax-Classic-Pixels-v1", (63, 63, 3), 17, 10000),
    # Full: a 9x11 view of 37 blocks + 5 items + 5 * 8 mobs + 1 light, then 51:
    # 99 * 83 + 51 = 8268.
    ("Craftax-Symbolic-v1", (8268,), 43, 100000),
    # Full pixels: (9 + 4 inventory rows) x 11 tiles of 10x10 pixels.
    ("Craftax-Pixels-v1", (130, 110, 3), 43, 100000),
])
def test_spaces_and_traced_step_shapes(name, shape, num_actions, limit):
    env = craftax.make(name)
    assert env.observation_shape == shape
    assert env.observation_size == int(np.prod(shape))
    assert env.action_space.num_actions == num_actions and env.time_limit == limit
    _, state = jax.eval_shape(env.reset, jax.random.key(0))
    _, step = jax.eval_shape(env.step, jax.random.key(0), state, jnp.int32(0))
    assert step.obs.shape == step.final_obs.shape == shape
    assert step.obs.dtype == step.final_obs.dtype == jnp.float32
    assert step.reward.shape == () and step.reward.dtype == jnp.float32
    for flag in (step.terminated, step.truncated):
        assert flag.shape == () and flag.dtype == jnp.bool_


def test_flags_reward_and_obs_are_typed_scalars_and_shaped(classic, rollout):
    for step in rollout["steps"]:
        for flag in (step.terminated, step.truncated):
            assert flag.shape == () and flag.dtype == jnp.bool_
        assert step.reward.shape == () and step.reward.dtype == jnp.float32
        assert step.obs.shape == step.final_obs.shape == classic.observation_shape == (1345,)


def test_time_limit_is_a_truncation_with_the_suites_final_obs(rollout):
    steps, suite = rollout["steps"], rollout["suite"]
    for t, (step, (suite_obs, reward, done)) in enumerate(zip(steps, suite, strict=True)):
        last = t == LIMIT - 1
        # Craftax's done is its time limit here (timestep 3 >= max_timesteps 3) and nowhere
        # before: a truncation, never a termination.
        assert bool(done) == last
        assert bool(step.truncated) == last and not step.terminated
        np.testing.assert_array_equal(step.final_obs, suite_obs)
        np.testing.assert_array_equal(step.reward, reward)
        assert int(step.episode_length) == t + 1
        if not last:
            np.testing.assert_array_equal(step.obs, step.final_obs)
    # After the cut the env was reset: obs is the fresh episode's, the counters restart.
    np.testing.assert_array_equal(steps[-1].obs, rollout["reset_obs"])
    assert not np.array_equal(steps[-1].obs, steps[-1].final_obs)
    assert int(rollout["after"].episode_length) == 0
    assert int(rollout["after"].env_state.timestep) == 0


@pytest.mark.parametrize("t", [0, LIMIT - 1])
def test_dying_is_a_termination_also_on_the_time_limits_step(classic, rollout, t):
    # t = LIMIT - 1: the step reaches the time limit too; the death wins, as a terminal
    # state ends the MDP whether or not the episode is also cut there.
    state = _dying(rollout["states"][t])
    after, step = classic.step(rollout["keys"][t], state, jnp.int32(ACTIONS[t]))
    assert step.terminated and not step.truncated
    assert int(step.episode_length) == t + 1
    assert int(after.episode_length) == 0 and int(after.env_state.timestep) == 0
    own_key, _ = jax.random.split(rollout["keys"][t])
    suite_obs, suite_state, _, done, _ = classic.suite_env.step(
        own_key, state.env_state, jnp.int32(ACTIONS[t]), classic.params)
    assert done and int(suite_state.player_health) <= 0
    np.testing.assert_array_equal(step.final_obs, suite_obs)


def test_jitted_vmap_over_three_envs_equals_an_eager_loop(classic, rollout):
    # One compiled program checks jit == eager and vmap == loop at once. Env 2 is on its
    # last step: it truncates and resets inside the vmap.
    picks = (0, 1, LIMIT - 1)
    states = jax.tree.map(lambda *x: jnp.stack(x), *[rollout["states"][t] for t in picks])
    keys = jnp.stack([rollout["keys"][t] for t in picks])
    actions = jnp.asarray([ACTIONS[t] for t in picks], jnp.int32)
    batched = jax.jit(jax.vmap(classic.step))(keys, states, actions)
    for i, t in enumerate(picks):
        after = rollout["after"] if t == LIMIT - 1 else rollout["states"][t + 1]
        chex.assert_trees_all_close(_comparable(jax.tree.map(lambda x, i=i: x[i], batched)),
                                    _comparable((after, rollout["steps"][t])), rtol=1e-6,
                                    atol=1e-6)
    assert list(np.asarray(batched[1].truncated)) == [False, False, True]


@pytest.mark.slow  # a suite's physics or world compiled into a whole run
def test_full_craftax_splits_its_done_and_keeps_the_final_obs():
    # Full Craftax has its own game logic (is_game_over also ends on beating the boss):
    # stepped eagerly, so only Craftax's own reset and step are compiled.
    env = _short("Craftax-Symbolic-v1", 2)  # cut after 2 steps
    key = jax.random.key(1)
    _, start = env.reset(key)
    _, suite_state = env.suite_env.reset(key, env.params)
    state = start
    for t in range(2):
        step_key = jax.random.fold_in(key, t)
        state, step = env.step(step_key, state, jnp.int32(0))  # NOOP
        suite_obs, suite_state, _, done, _ = env.suite_env.step(
            jax.random.split(step_key)[0], suite_state, jnp.int32(0), env.params)
        np.testing.assert_array_equal(step.final_obs, suite_obs)
        assert bool(done) == bool(step.truncated) == (t == 1) and not step.terminated
    # Dying on the first step: a termination.
    _, step = env.step(jax.random.fold_in(key, 0), _dying(start), jnp.int32(0))
    assert step.terminated and not step.truncated


def test_classic_pixel_observations_are_images():
    env = craftax.make("Craftax-Classic-Pixels-v1")
    obs, _ = env.reset(jax.random.key(0))
    assert obs.shape == (63, 63, 3) and obs.dtype == jnp.float32
    # Craftax's renderer divides 0..255 colours by 255.
    assert 0.0 <= float(obs.min()) < float(obs.max()) <= 1.0


@pytest.mark.slow  # a suite's physics or world compiled into a whole run
def test_tiny_training_run_has_finite_metrics():
    metrics = tiny_training_metrics(f"craftax/{CLASSIC}")
    # No episode ends in 32 steps per env (the limit is 10000; with this key nobody dies).
    np.testing.assert_array_equal(metrics.episode_count, [0, 0])


def test_spawn_chances_are_the_env_params(classic):
    assert classic.tunable_params() == ("spawn_cow_chance", "spawn_skeleton_chance",
                                        "spawn_zombie_base_chance", "spawn_zombie_night_chance")
    assert classic.param_error("zombie_health").startswith(
        "'zombie_health' cannot be set: it is an integer")
    assert classic.param_error("max_timesteps").startswith(
        "'max_timesteps' cannot be set: it is the time limit")


@pytest.mark.slow  # a suite's world compiled
def test_a_traced_spawn_chance_steps_as_craftax_own_params(classic):
    key = jax.random.key(1)
    _, state = classic.reset(key)

    @jax.jit
    def cows(chance):
        one, state_t = classic.with_params({"spawn_cow_chance": chance}), state
        for t in range(LIMIT - 1):  # within the episode: no reset
            state_t = one.step(jax.random.fold_in(key, t), state_t, 0)[0]
        return state_t.env_state.cows.mask.sum()

    def by_hand(chance):
        params = classic.params.replace(spawn_cow_chance=chance)
        suite_state = state.env_state
        for t in range(LIMIT - 1):
            own_key, _ = jax.random.split(jax.random.fold_in(key, t))
            suite_state = classic.suite_env.step(own_key, suite_state, jnp.int32(0), params)[1]
        return suite_state.cows.mask.sum()

    # With a cow spawned at every step it can be (1.0), more cows than with none (0.0).
    assert int(cows(1.0)) == int(by_hand(1.0)) > int(cows(0.0)) == int(by_hand(0.0))
