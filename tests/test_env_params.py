"""Environment parameters as hyperparameters (`Config.env_params`): the env steps with them
(known values, against gymnax stepped by hand), vmap == loop, no recompile when a value
changes, a sweep over them in one call, config.json and checkpoints, refusals, the CLI flag."""

import json
import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import cli, envs, rundir
from jaxppo import config as config_lib
from jaxppo import spec as spec_lib
from jaxppo.envs import core

TINY = jaxppo.Config(num_envs=4, num_steps=16, total_timesteps=128, num_minibatches=2,
                     update_epochs=1, hidden_sizes=(16,))
HEAVY = TINY.replace(env_params={"gravity": 12.0})
TINY_FLAGS = ["--num-envs", "4", "--num-steps", "16", "--total-timesteps", "128",
              "--num-minibatches", "2", "--update-epochs", "1", "--hidden-sizes", "16",
              "--seeds", "2", "--no-progress"]


def _comparable(tree):
    """Typed PRNG keys as their raw bits, so chex can compare whole train states."""
    return jax.tree.map(
        lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
        tree)


@pytest.fixture(scope="module")
def train_jit():
    return jax.jit(jaxppo.train)


# ---------------------------------------------------------------------------------------------
# The env sees them.


def _tilted(env):
    """An env reset, then set to x = x_dot = theta_dot = 0, theta = 0.1."""
    _, state = env.reset(jax.random.key(0))
    tilted = state.env_state.replace(x=0.0, x_dot=0.0, theta=0.1, theta_dot=0.0)
    return state.replace(env_state=tilted)


@pytest.mark.parametrize("gravity, theta_dot, x_dot", [
    # One Euler step of CartPole from theta = 0.1 at rest, pushed right (force 10):
    #   temp = 10 / total_mass 1.1 = 9.0909
    #   thetaacc = (g sin 0.1 - cos 0.1 temp) / (0.5 (4/3 - 0.1 cos^2 0.1 / 1.1))
    #            = (0.099833 g - 9.045493) / 0.621665
    #   theta_dot = tau 0.02 x thetaacc;  x_dot = 0.02 (temp - 0.05 thetaacc cos 0.1 / 1.1)
    (9.8, -0.2595328, 0.1935562),  # thetaacc -12.976640
    (12.0, -0.2524668, 0.1932366),  # thetaacc -12.623341: more gravity, less swing back
])
def test_cartpole_steps_with_its_gravity_known_values(gravity, theta_dot, x_dot):
    env = envs.make_for(TINY.replace(env_params={"gravity": gravity}))
    _, step = jax.jit(env.step)(jax.random.key(1), _tilted(env), jnp.int32(1))
    np.testing.assert_allclose(step.obs, [0.0, x_dot, 0.1, theta_dot], rtol=1e-5, atol=1e-7)


def test_cartpole_with_params_matches_gymnax_stepped_by_hand():
    import gymnax

    raw, defaults = gymnax.make("CartPole-v1")
    params = defaults.replace(gravity=12.0, masspole=0.2, total_mass=1.2)
    env = envs.make_for(TINY.replace(env_params={"gravity": 12.0, "masspole": 0.2,
                                                 "total_mass": 1.2}))
    state, plain = _tilted(env), _tilted(envs.make("CartPole-v1"))
    key = jax.random.key(1)
    for action in (1, 0, 1):
        by_hand = raw.step_env(key, state.env_state, action, params)[1]
        state, step = env.step(key, state, jnp.int32(action))
        plain, default_step = envs.make("CartPole-v1").step(key, plain, jnp.int32(action))
        np.testing.assert_allclose(step.obs, [by_hand.x, by_hand.x_dot, by_hand.theta,
                                              by_hand.theta_dot], rtol=1e-6, atol=1e-7)
        assert not np.allclose(step.obs, default_step.obs)
    # Only the params: spaces, shapes and the time limit are the env's.
    assert env.action_space == envs.make("CartPole-v1").action_space
    assert env.max_episode_steps == 500 and env.observation_shape == (4,)


def test_no_env_params_is_the_cached_env_itself():
    assert envs.make_for(TINY) is envs.make("CartPole-v1")
    assert envs.make_for(HEAVY) is not envs.make("CartPole-v1")


def test_evaluation_steps_the_env_with_its_params():
    # One policy, two pole-angle limits stacked: with a limit of 0 rad every episode ends at
    # its first step (the pole is never exactly upright); at the default 12 degrees (0.2094
    # rad) none does (from |theta| <= 0.05 a falling pole needs several steps to reach it).
    configs = config_lib.stack_configs([
        TINY.replace(env_params={"theta_threshold_radians": 12 * 2 * math.pi / 360}),
        TINY.replace(env_params={"theta_threshold_radians": 0.0})])
    state = jaxppo.init(TINY, jax.random.key(0))
    both = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    lengths = jaxppo.evaluate(configs, both, jax.random.key(1), num_episodes=8).lengths
    assert np.all(lengths[0] > 1)
    np.testing.assert_array_equal(lengths[1], 1)


# ---------------------------------------------------------------------------------------------
# Traced leaves: vmap == loop, no recompile, one sweep.


def test_vmap_over_gravity_equals_each_run_alone(train_jit):
    gravities = (9.8, 12.0)
    configs = [TINY.replace(env_params={"gravity": g}) for g in gravities]
    key = jax.random.key(3)
    batched = jax.jit(jax.vmap(jaxppo.train, in_axes=(0, None)))(
        config_lib.stack_configs(configs), key)
    singles = [train_jit(c, key) for c in configs]
    for h, single in enumerate(singles):
        chex.assert_trees_all_close(_comparable(jax.tree.map(lambda x, h=h: x[h], batched)),
                                    _comparable(single), rtol=1e-5, atol=1e-6)
    assert not np.allclose(singles[0][1].total_loss, singles[1][1].total_loss)


def test_values_change_without_recompiling():
    # A jit of its own: jax.jit(jaxppo.train) shares its cache with every other test's in
    # this worker.
    traces = []

    def train(config, key):
        traces.append(1)
        return jaxppo.train(config, key)

    run, key = jax.jit(train), jax.random.key(0)
    for gravity in (12.0, 5.0, 20.0):
        jax.block_until_ready(run(HEAVY.replace(env_params={"gravity": gravity}), key))
    assert len(traces) == 1
    # Names are structure: another set of names would be another program.
    assert jax.tree.structure(HEAVY) != jax.tree.structure(
        HEAVY.replace(env_params={"gravity": 12.0, "masspole": 0.2}))


def test_a_sweep_over_env_params_in_one_call_equals_single_runs(train_jit):
    result = jaxppo.sweep(TINY, {"env_params": [{"gravity": 9.8}, {"gravity": 12.0}]}, seeds=1)
    assert list(result.settings) == ["env_params.gravity"]
    np.testing.assert_array_equal(result.settings["env_params.gravity"],
                                  np.float32([9.8, 12.0]))
    assert result.metrics.total_loss.shape == (2, 1, TINY.num_updates)
    key = jax.random.split(jax.random.key(0), 1)[0]  # seed 0 of every setting
    for h, gravity in enumerate((9.8, 12.0)):
        _, single = train_jit(TINY.replace(env_params={"gravity": gravity}), key)
        chex.assert_trees_all_close(jax.tree.map(lambda x, h=h: x[h, 0], result.metrics),
                                    single, rtol=1e-5, atol=1e-6)


def test_grid_and_random_search_take_env_params_by_name():
    listed = jaxppo.grid({"env_params": [{"gravity": 9.8, "tau": 0.01},
                                         {"tau": 0.02, "gravity": 12.0}],
                          "learning_rate": [1e-3, 3e-4]})
    # One axis of two settings x two rates, the first slowest; one column per parameter.
    assert list(listed) == ["env_params.gravity", "env_params.tau", "learning_rate"]
    np.testing.assert_array_equal(listed["env_params.gravity"], np.float32([9.8, 9.8, 12, 12]))
    np.testing.assert_array_equal(listed["env_params.tau"], np.float32([.01, .01, .02, .02]))
    named = jaxppo.grid({"env_params.gravity": [9.8, 12.0]})
    np.testing.assert_array_equal(named["env_params.gravity"], np.float32([9.8, 12.0]))
    drawn = jaxppo.random_search({"env_params.gravity": (8.0, 14.0)}, 5, seed=1)
    assert drawn["env_params.gravity"].shape == (5,)
    assert np.all((drawn["env_params.gravity"] >= 8) & (drawn["env_params.gravity"] <= 14))
    configs = spec_lib.make_spec(TINY.replace(env_params={"masspole": 0.2}), drawn,
                                 seeds=1).configs()
    # A setting's parameter is added beside the base config's.
    assert [sorted(c.env_params) for c in configs] == [["gravity", "masspole"]] * 5
    assert configs[2].env_params["gravity"] == float(str(drawn["env_params.gravity"][2]))


@pytest.mark.parametrize("space, message", [
    ({"env_params": [{"gravity": 9.8}, {"masspole": 0.2}]},
     "grid['env_params'][1] sets ['masspole'] but grid['env_params'][0] sets ['gravity']: "
     "every setting must set the same env parameters"),
    ({"env_params": [9.8, 12.0]}, "grid['env_params']=[9.8, 12.0]: expected a non-empty list "
     "of mappings of parameter name -> number"),
    ({"env_params": []}, "expected a non-empty list of mappings"),
    ({"env_params": [{"gravity": "heavy"}]}, "grid['env_params.gravity']=['heavy']: expected "
     "a non-empty list of numbers"),
    ({"env_params": [{"gravity": float("nan")}]}, "every value must be finite"),
    ({"env_params": [{"gravity": 9.8}], "env_params.gravity": [12.0]},
     "grid sets 'env_params.gravity' twice"),
    ({"env_params.": [1.0]}, "cannot sweep 'env_params.': not a Config field"),
])
def test_bad_env_params_grids_are_refused_in_one_line(space, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        jaxppo.grid(space)


def test_random_search_takes_env_params_one_by_one():
    with pytest.raises(ValueError, match=re.escape("give each env parameter its own entry, "
                                                   "'env_params.NAME'")):
        jaxppo.random_search({"env_params": (8.0, 14.0)}, 4)


def test_stacked_configs_must_set_the_same_names():
    with pytest.raises(ValueError, match=re.escape(
            "stack_configs: configs[1].env_params sets ['masspole'] but configs[0].env_params "
            "sets ['gravity']; every config must set the same env parameters")):
        config_lib.stack_configs([HEAVY, TINY.replace(env_params={"masspole": 0.2})])
    stacked = config_lib.stack_configs([HEAVY, TINY.replace(env_params={"gravity": 9.8})])
    assert stacked.env_params["gravity"].dtype == np.float32
    np.testing.assert_array_equal(stacked.env_params["gravity"], np.float32([12.0, 9.8]))


# ---------------------------------------------------------------------------------------------
# The type: immutable, hashable, a pytree.


def test_env_params_is_an_immutable_hashable_mapping():
    params = HEAVY.env_params
    assert isinstance(params, config_lib.EnvParams) and params == {"gravity": 12.0}
    assert hash(HEAVY) == hash(TINY.replace(env_params=config_lib.EnvParams(gravity=12.0)))
    assert list(config_lib.EnvParams({"tau": 0.1, "gravity": 1.0})) == ["gravity", "tau"]
    with pytest.raises(AttributeError, match="immutable"):
        params.gravity = 1.0
    with pytest.raises(TypeError):
        params["gravity"] = 1.0
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(HEAVY)]
    assert paths[-1] == ".env_params['gravity']"


# ---------------------------------------------------------------------------------------------
# Refusals: values (config.validate) and names (envs.check_params), one line each.


def _refused(config, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        jaxppo.validate(config)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value, message", [
    (float("nan"), "Config.env_params={'gravity': nan} is invalid: must be finite."),
    ("12", "Config.env_params={'gravity': '12'} is invalid: must be a real number"),
    (True, "Config.env_params={'gravity': True} is invalid: must be a real number"),
    (1e39, "Config.env_params={'gravity': 1e+39} is invalid: must fit a float32"),
    (np.float32([9.8, np.inf]), "Config.env_params={'gravity': inf} is invalid: must be "
     "finite."),
])
def test_values_must_be_real_finite_numbers(value, message):
    _refused(TINY.replace(env_params={"gravity": value}), message)


def test_env_params_must_be_a_mapping_of_names():
    _refused(TINY.replace(env_params=12.0), "Config.env_params=12.0 is invalid: must be a "
             "mapping of parameter name (a string) -> number, e.g. {'gravity': 12.0}.")
    _refused(TINY.replace(env_params={1: 12.0}), "Config.env_params={1: 12.0} is invalid")


CARTPOLE_PARAMS = ("its numeric parameters: force_mag, gravity, length, masscart, masspole, "
                   "polemass_length, tau, theta_threshold_radians, total_mass, x_threshold.")


@pytest.mark.parametrize("env_id, name, message", [
    ("CartPole-v1", "gravit", "Config.env_params={'gravit': 1.0} is invalid: 'gravit' is not a "
     "parameter of CartPole-v1 (did you mean 'gravity'?); " + CARTPOLE_PARAMS),
    ("CartPole-v1", "max_steps_in_episode", "'max_steps_in_episode' cannot be set: it is the "
     "time limit"),
    ("Pendulum-v1", "max_torque", "'max_torque' cannot be set: it sets Pendulum-v1's action or "
     "observation space, which jaxppo fixes per env id; its numeric parameters: dt, g, l, m, "
     "max_speed."),
    ("Acrobot-v1", "available_torque", "'available_torque' cannot be set: it is an array of "
     "shape [3]; only scalars can be set"),
    ("SpaceInvaders-MinAtar", "shot_cool_down", "'shot_cool_down' cannot be set: it is an "
     "integer (sizes, counts and intervals may shape the program), refused rather than cast "
     "from a float; SpaceInvaders-MinAtar has no numeric parameters."),
    ("FourRooms-misc", "resample_init_pos", "'resample_init_pos' cannot be set: it is a switch "
     "(a bool)"),
    ("ProbeValue-v0", "gravity", "'gravity' is not a parameter of ProbeValue-v0; ProbeValue-v0 "
     "has no numeric parameters."),
])
def test_names_the_env_cannot_take_are_refused_naming_them(env_id, name, message):
    _refused(jaxppo.preset(env_id).replace(env_params={name: 1.0}), message)


class _Branchy:
    """A gymnax-style env that reads its float param in a Python branch (untraceable) and
    another only in arithmetic."""

    def __init__(self):
        from flax import struct
        from gymnax.environments import environment, spaces

        @struct.dataclass
        class Params(environment.EnvParams):
            threshold: float = 1.0
            scale: float = 2.0

        self.default_params = Params()
        self.spaces = spaces

    def reset(self, key, params):
        return jnp.zeros((1,)), jnp.zeros(())

    def step(self, key, state, action, params):
        reward = 1.0 if params.threshold > 0 else 0.0  # a Python branch: needs a concrete value
        obs = jnp.ones((1,)) * params.scale
        done = jnp.zeros((), jnp.bool_)
        return obs, state, reward * params.scale, done, done, {"final_observation": obs}

    def action_space(self, params):
        return self.spaces.Discrete(2)

    def observation_space(self, params):
        return self.spaces.Box(-1.0, 1.0, (1,))


def test_a_param_the_env_cannot_trace_is_refused():
    raw = _Branchy()
    env = core.GymnaxEnv("Branchy-v0", raw, raw.default_params)
    assert env.tunable_params() == ("scale",)
    assert env.param_error("threshold") == (
        "'threshold' cannot be set: the env uses it in a shape or a Python branch (it cannot "
        "be traced); its numeric parameters: scale")
    with pytest.raises(ValueError, match="env_params: 'threshold' cannot be set"):
        env.with_params({"threshold": 0.5})
    _, step = jax.jit(lambda s: env.with_params({"scale": s}).step(
        jax.random.key(0), env.reset(jax.random.key(0))[1], jnp.int32(0)))(3.0)
    assert float(step.reward) == 3.0  # 1.0 x scale 3


def test_an_env_without_params_support_is_refused(monkeypatch):
    class Adapter:  # an adapter-shaped env of another suite: no with_params
        action_space = envs.make("CartPole-v1").action_space

    monkeypatch.setattr(envs, "make", lambda env_id: Adapter())
    with pytest.raises(ValueError, match=re.escape(
            "Config.env_params={'gravity': 12.0} is invalid: CartPole-v1 takes no env params "
            "(gymnax, Craftax and Playground envs do).")):
        envs.check_params(HEAVY)
    with pytest.raises(ValueError, match="CartPole-v1 takes no env params"):
        envs.make_for(HEAVY)


# ---------------------------------------------------------------------------------------------
# JSON, run directories and the command line.


def test_spec_json_round_trips_env_params():
    spec = spec_lib.make_spec(TINY.replace(env_params={"masspole": 0.2}),
                              {"env_params.gravity": [9.8, 12.0]}, seeds=2)
    data = json.loads(json.dumps(spec.to_json()))
    assert data["config"]["env_params"] == {"masspole": 0.2}
    assert data["settings"] == {"env_params.gravity": [9.8, 12.0]}
    again = spec_lib.Spec.from_json(data)
    assert again == spec
    assert [dict(c.env_params) for c in again.configs()] == [
        {"gravity": 9.8, "masspole": 0.2}, {"gravity": 12.0, "masspole": 0.2}]
    assert spec_lib.setting_labels(again) == ["env_params.gravity=9.8",
                                              "env_params.gravity=12"]


def test_a_checkpoint_written_before_env_params_resumes():
    # A spec without the field counts it as its default (empty); another value differs.
    now = spec_lib.make_spec(TINY, seeds=1).to_json()
    old = json.loads(json.dumps(now))
    del old["config"]["env_params"]
    assert rundir._spec_difference(old, now) is None
    heavy = spec_lib.make_spec(HEAVY, seeds=1).to_json()
    assert rundir._spec_difference(now, heavy) == ("env_params", {}, {"gravity": 12.0})


def test_cli_trains_with_env_params_and_a_checkpoint_keeps_them(tmp_path, capsys):
    out = tmp_path / "heavy"
    code = cli.main(["train", "--env", "CartPole-v1", "--env-param", "gravity=12.0",
                     "--env-param", "masspole=0.2", *TINY_FLAGS, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["env_params"] == {"gravity": 12.0, "masspole": 0.2}
    assert jaxppo.load(out).config.env_params == {"gravity": 12.0, "masspole": 0.2}
    # config.json edited after the checkpoint: resume refuses, naming the field.
    data = json.loads((out / "config.json").read_text())
    data["config"]["env_params"]["gravity"] = 9.8
    (out / "config.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert cli.main(["resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "config.json of" in err and "says env_params={'gravity': 9.8, 'masspole': 0.2}" in err


@pytest.fixture()
def run_spy(monkeypatch):
    calls = []

    def spy(config, seeds, out, **kwargs):
        calls.append({"config": config, **kwargs})
        raise ValueError("spy: not training")

    monkeypatch.setattr(jaxppo.experiment, "run", spy)
    return calls


def test_sweep_flag_lists_values_to_sweep(run_spy, capsys):
    assert cli.main(["sweep", "--env-param", "gravity=9.8,12.0", "--env-param",
                     "masspole=0.2"]) == 2
    (call,) = run_spy
    assert call["config"].env_params == {"masspole": 0.2}
    assert call["space"] == {"env_params.gravity": [9.8, 12.0]}


@pytest.mark.parametrize("argv, message", [
    (["train", "--env-param", "gravity"], "--env-param 'gravity': expected NAME=VALUE, e.g. "
     "gravity=12.0"),
    (["train", "--env-param", "gravity=heavy"], "--env-param 'gravity=heavy': expected a "
     "number after '='"),
    (["train", "--env-param", "gravity=9.8,12"], "--env-param 'gravity=9.8,12': one value "
     "expected; use `jaxppo sweep`"),
    (["sweep", "--env-param", "gravity=9.8,,12"], "a malformed list (an empty item)"),
    (["train", "--env-param", "gravity=1", "--env-param", "gravity=2"], "--env-param "
     "'gravity=2': gravity is given twice"),
    (["train", "--env-param", "gravit=12"], "--env-param gravit=12.0 is invalid: 'gravit' is "
     "not a parameter of CartPole-v1 (did you mean 'gravity'?)"),
    (["train", "--env-param", "gravity=nan"], "--env-param gravity=nan is invalid: must be "
     "finite"),
    # As for every swept flag: the grid's check names the column.
    (["sweep", "--env-param", "gravity=9.8,inf"], "grid['env_params.gravity']=[9.8, inf]: "
     "every value must be finite"),
    (["train", "--env-params", "gravity=1"], "did you mean --env-param?"),
])
def test_bad_env_param_flags_exit_2_with_one_line(capsys, argv, message):
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_docstring_and_help_document_env_params(capsys):
    assert "env_params" in config_lib.dynamic_fields()
    assert cli._field_docs()["env_params"].startswith("environment parameters by name")
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "--env-param NAME=X[,X...]" in text and "e.g. --env-param gravity=12.0" in text
