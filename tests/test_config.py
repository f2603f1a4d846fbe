"""Tests of `jaxppo.config`: static/dynamic split, derived values, validation, stacking."""

import dataclasses
import re

import chex
import jax
import numpy as np
import pytest

import jaxppo
from jaxppo import config as config_lib


def _distinct_dynamic_config():
    """A config whose float fields all differ (0.01, 0.02, ...), so order errors show."""
    values = {name: 0.01 * (i + 1) for i, name in enumerate(config_lib.float_fields())}
    return jaxppo.Config(**values)


def test_leaves_are_the_dynamic_fields_in_order():
    config = _distinct_dynamic_config()
    leaves = jax.tree.leaves(config)
    assert len(leaves) == len(config_lib.float_fields()) == 16
    assert leaves == [getattr(config, name) for name in config_lib.float_fields()]
    assert jax.tree.leaves(jaxppo.Config()) == [
        getattr(jaxppo.Config(), name) for name in config_lib.float_fields()
    ]
    # Then env_params' values, by sorted name (gravity before masspole), whatever the order given.
    params = config.replace(env_params={"masspole": 0.2, "gravity": 12.0})
    assert jax.tree.leaves(params) == leaves + [12.0, 0.2]
    assert config_lib.dynamic_fields() == (*config_lib.float_fields(), "env_params")


def test_static_fields_live_in_the_treedef():
    base = jaxppo.Config()
    assert jax.tree.structure(base) == jax.tree.structure(base.replace(gamma=0.5))
    assert jax.tree.structure(base) != jax.tree.structure(base.replace(num_envs=8))


def test_static_and_dynamic_fields_partition_the_dataclass():
    names = [f.name for f in dataclasses.fields(jaxppo.Config)]
    static, dynamic = config_lib.static_fields(), config_lib.dynamic_fields()
    assert not set(static) & set(dynamic)
    assert sorted(static + dynamic) == sorted(names)
    # Both keep declaration order.
    assert list(static) == [n for n in names if n in static]
    assert list(dynamic) == [n for n in names if n in dynamic]
    assert "num_envs" in static and "anneal_lr" in static and "env_id" in static
    assert "learning_rate" in dynamic and "gamma" in dynamic and "init_log_std" in dynamic


def test_derived_properties_known_values():
    config = jaxppo.Config()
    assert config.batch_size == 512  # 4 envs x 128 steps
    assert config.minibatch_size == 128  # 512 / 4 minibatches
    assert config.num_updates == 976  # 500_000 // 512 (976 x 512 = 499_712; 288 steps unrun)
    assert config.num_gradient_steps == 15_616  # 976 updates x 4 epochs x 4 minibatches
    small = jaxppo.Config(num_envs=2, num_steps=5, total_timesteps=35, num_minibatches=5,
                          update_epochs=3)
    assert small.batch_size == 10  # 2 x 5
    assert small.minibatch_size == 2  # 10 / 5
    assert small.num_updates == 3  # 35 // 10
    assert small.num_gradient_steps == 45  # 3 x 3 x 5


def test_defaults_validate():
    config = jaxppo.Config()
    assert jaxppo.validate(config) is config
    assert jaxppo.validate(jaxppo.Config(env_id="Pendulum-v1", action_dist="gaussian"))
    assert jaxppo.validate(jaxppo.Config(action_dist="categorical"))


def _raises(match, **overrides):
    with pytest.raises(ValueError, match=match):
        jaxppo.validate(jaxppo.Config(**overrides))


def test_minibatches_must_divide_batch():
    # 3 envs x 5 steps = 15 transitions cannot be split into 4 minibatches.
    _raises(
        re.escape("Config.num_minibatches=4 is invalid: must divide the batch num_envs x "
                  "num_steps = 3 x 5 = 15"),
        num_envs=3, num_steps=5, num_minibatches=4, total_timesteps=1000,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("num_envs", 0), ("num_steps", -1), ("update_epochs", 0), ("num_minibatches", 0),
     ("total_timesteps", 0), ("num_envs", 2.0), ("update_epochs", True)],
)
def test_counts_must_be_positive_integers(name, value):
    _raises(re.escape(f"Config.{name}={value!r} is invalid: must be an integer >= 1"),
            **{name: value})


def test_batch_is_at_most_two_to_the_31_transitions():
    # The shuffle indexes the batch with int32: 2**16 x 2**15 = 2**31 is the largest batch.
    assert jaxppo.validate(jaxppo.Config(num_envs=2**16, num_steps=2**15, total_timesteps=2**31))
    _raises(re.escape(f"Config.num_envs={2**16 + 1} is invalid: makes a batch num_envs x "
                      f"num_steps = {2**16 + 1} x {2**15} of more than 2**31 transitions"),
            num_envs=2**16 + 1, num_steps=2**15, total_timesteps=2**40)


def test_total_timesteps_at_least_one_batch():
    # The default batch is 4 x 128 = 512 transitions.
    _raises(re.escape("Config.total_timesteps=100 is invalid: must be at least one batch, "
                      "num_envs x num_steps = 512"), total_timesteps=100)
    assert jaxppo.validate(jaxppo.Config(total_timesteps=512))


@pytest.mark.parametrize("value", [0.0, -0.1])
def test_clip_eps_must_be_positive(value):
    _raises(re.escape(f"Config.clip_eps={value} is invalid: must be > 0"), clip_eps=value)


@pytest.mark.parametrize("value", [1.0, 0.5])
def test_dual_clip_c_above_one_only_when_enabled(value):
    _raises(re.escape(f"Config.dual_clip_c={value} is invalid: must be > 1 when dual_clip"),
            dual_clip=True, dual_clip_c=value)
    # Unused when the dual clip is off.
    assert jaxppo.validate(jaxppo.Config(dual_clip=False, dual_clip_c=value))


@pytest.mark.parametrize("name", ["gamma", "gae_lambda"])
@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_discounts_lie_in_unit_interval(name, value):
    _raises(re.escape(f"Config.{name}={value} is invalid: must lie in [0, 1]"), **{name: value})


@pytest.mark.parametrize("name", ["gamma", "gae_lambda"])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_discount_bounds_are_accepted(name, value):
    assert jaxppo.validate(jaxppo.Config(**{name: value}))


def test_nan_dynamic_value_is_rejected():
    _raises(re.escape("Config.learning_rate=nan is invalid"), learning_rate=float("nan"))


def test_unknown_activation():
    _raises(re.escape("Config.activation='gelu' is invalid: must be one of ('tanh', 'relu')"),
            activation="gelu")


def test_unknown_env_id_lists_known_ids():
    with pytest.raises(ValueError, match=re.escape("unknown env_id 'NoSuchEnv-v0'")) as info:
        jaxppo.validate(jaxppo.Config(env_id="NoSuchEnv-v0"))
    message = str(info.value)
    assert "known environments:" in message
    for known in ("CartPole-v1", "Pendulum-v1", *jaxppo.envs.builtin_ids()):
        assert known in message


@pytest.mark.parametrize(
    ("env_id", "action_dist", "space", "needed"),
    [("CartPole-v1", "gaussian", "discrete", "categorical"),
     ("Pendulum-v1", "categorical", "continuous", "gaussian")],
)
def test_action_dist_must_fit_action_space(env_id, action_dist, space, needed):
    _raises(
        re.escape(f"Config.action_dist='{action_dist}' is invalid: {env_id} has a {space} "
                  f"action space, so it needs '{needed}'"),
        env_id=env_id, action_dist=action_dist,
    )


def test_unknown_action_dist():
    _raises(re.escape("Config.action_dist='beta' is invalid"), action_dist="beta")


def test_stack_configs_stacks_dynamic_leaves():
    first, second = jaxppo.Config(learning_rate=1e-3), jaxppo.Config(learning_rate=3e-4, gamma=0.9)
    stacked = config_lib.stack_configs([first, second])
    chex.assert_tree_shape_prefix(stacked, (2,))
    assert all(leaf.shape == (2,) for leaf in jax.tree.leaves(stacked))
    chex.assert_trees_all_close(stacked.learning_rate, np.float32([1e-3, 3e-4]))
    chex.assert_trees_all_close(stacked.gamma, np.float32([0.99, 0.9]))
    assert jax.tree.structure(stacked) == jax.tree.structure(first)
    assert stacked.num_envs == first.num_envs
    # Unstacking the leaves gives the configs back.
    for i, original in enumerate((first, second)):
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], stacked), original)
    # A stacked, valid config validates.
    assert jaxppo.validate(stacked) is stacked


def test_stack_configs_rejects_differing_static_field():
    with pytest.raises(ValueError, match=re.escape("configs[1].num_envs=8 differs from "
                                                   "configs[0].num_envs=4")):
        config_lib.stack_configs([jaxppo.Config(), jaxppo.Config(num_envs=8)])


def test_stack_configs_rejects_empty():
    with pytest.raises(ValueError, match="at least one config"):
        config_lib.stack_configs([])


def test_stack_configs_rejects_invalid_element():
    with pytest.raises(ValueError, match=re.escape("Config.gamma=1.5 is invalid")):
        config_lib.stack_configs([jaxppo.Config(), jaxppo.Config(gamma=1.5)])


def test_stacked_config_with_one_bad_element_fails_validate():
    stacked = jaxppo.Config().replace(gamma=np.float32([0.99, 1.5]))
    with pytest.raises(ValueError, match=re.escape("Config.gamma=1.5 is invalid")):
        jaxppo.validate(stacked)
    stacked = jaxppo.Config().replace(clip_eps=np.float32([0.2, 0.1, -0.3]))
    with pytest.raises(ValueError, match=re.escape("Config.clip_eps=-0.3")):
        jaxppo.validate(stacked)


def test_validate_skips_traced_dynamic_leaves():
    def check(gamma):
        jaxppo.validate(jaxppo.Config().replace(gamma=gamma))
        return gamma

    # A traced value cannot be checked; it is skipped rather than raising a tracer error.
    chex.assert_trees_all_close(jax.jit(check)(np.float32(0.5)), 0.5)


def test_validate_rejects_non_config():
    with pytest.raises(TypeError, match="expected a jaxppo.Config"):
        jaxppo.validate({"gamma": 0.99})


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [("learning_rate", 0.0, "must be > 0"), ("learning_rate", -1e-3, "must be > 0"),
     ("max_grad_norm", 0.0, "must be > 0"), ("max_grad_norm", -0.5, "must be > 0"),
     ("vf_coef", -0.5, "must be >= 0"), ("ent_coef", -0.01, "must be >= 0")],
)
def test_rates_and_coefficients_out_of_range(name, value, allowed):
    _raises(re.escape(f"Config.{name}={value} is invalid: {allowed}."), **{name: value})


@pytest.mark.parametrize("name", ["vf_coef", "ent_coef"])
def test_zero_loss_coefficients_are_accepted(name):
    # ">= 0": a zero weight switches the term off.
    assert jaxppo.validate(jaxppo.Config(**{name: 0.0}))


_SWITCHES = ("anneal_lr", "normalize_advantages", "clip_value_loss", "dual_clip",
             "normalize_obs", "scale_rewards", "normalize_values", "recompute_advantages",
             "kl_early_stop", "action_masking", "squash_mean", "gsde")


@pytest.mark.parametrize("name", _SWITCHES)
def test_switches_must_be_bools(name):
    assert isinstance(getattr(jaxppo.Config(), name), bool)
    # 1 is truthy but not a bool: a typo such as anneal_lr=1 is refused, not taken as True.
    _raises(re.escape(f"Config.{name}=1 is invalid: must be True or False."), **{name: 1})
    _raises(re.escape(f"Config.{name}='yes' is invalid: must be True or False."),
            **{name: "yes"})


@pytest.mark.parametrize("sizes", [(0,), (64, 0), (64, -8), (64, 2.0), (True,), 64, "64",
                                   (64, "64")])
def test_hidden_sizes_must_be_positive_integers(sizes):
    _raises(re.escape(f"Config.hidden_sizes={sizes!r} is invalid: must be a sequence of "
                      "positive integers, e.g. (64, 64)."), hidden_sizes=sizes)


@pytest.mark.parametrize("sizes", [[64, 64], range(64, 66), np.array([64, 64])])
def test_hidden_sizes_may_be_any_sequence_and_become_a_tuple(sizes):
    # config.json stores a list; a static field must be hashable, so every sequence becomes
    # the tuple of its items (a list left as it is could not be hashed into the treedef).
    config = jaxppo.validate(jaxppo.Config(hidden_sizes=sizes))
    assert config.hidden_sizes == tuple(int(s) for s in sizes)
    assert type(config.hidden_sizes) is tuple
    assert config == jaxppo.Config(hidden_sizes=tuple(int(s) for s in sizes))
    hash(jax.tree.structure(config))
    assert jaxppo.Config().replace(hidden_sizes=[8]).hidden_sizes == (8,)
    # A list of a bad width is refused by validate, named, as a tuple of it is.
    _raises(re.escape("Config.hidden_sizes=(64, 0) is invalid"), hidden_sizes=[64, 0])


def test_minibatches_need_only_divide_the_batch():
    # 4 envs x 5 steps = 20 transitions split into 4 minibatches of 5: valid, though 4 does
    # not divide num_steps = 5 (transitions are shuffled across the whole batch, so only
    # T x N must split evenly).
    config = jaxppo.Config(num_envs=4, num_steps=5, num_minibatches=4, total_timesteps=20)
    assert jaxppo.validate(config) is config
    assert config.minibatch_size == 5  # 20 / 4
    # 5 envs x 4 steps = 20 into 4: num_steps divides, the batch too: valid as well.
    assert jaxppo.validate(jaxppo.Config(num_envs=5, num_steps=4, num_minibatches=4,
                                         total_timesteps=20))


# --- switch-dependent ranges: checked where the switch uses the field, ignored elsewhere -------


@pytest.mark.parametrize(
    ("switch", "name", "allowed"),
    [("clip_value_loss", "vf_clip", "must be > 0 when clip_value_loss is enabled"),
     ("kl_early_stop", "target_kl", "must be > 0 when kl_early_stop is enabled"),
     ("normalize_obs", "obs_clip", "must be > 0")],
)
@pytest.mark.parametrize("value", [0.0, -0.2])
def test_switched_field_must_be_positive_only_when_switched_on(switch, name, allowed, value):
    # "> 0": a zero clip range or threshold is refused, not only a negative one.
    _raises(re.escape(f"Config.{name}={value} is invalid: {allowed}."),
            **{switch: True, name: value})
    # The field is unused when its switch is off, so any value passes.
    assert jaxppo.validate(jaxppo.Config(**{switch: False, name: value}))


def test_fourier_scale_is_checked_only_with_fourier_features():
    _raises(re.escape("Config.fourier_scale=-1.0 is invalid: must be > 0."),
            fourier_features=4, fourier_scale=-1.0)
    assert jaxppo.validate(jaxppo.Config(fourier_features=0, fourier_scale=0.0))


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_values_are_rejected(value):
    _raises(re.escape(f"Config.init_log_std={value} is invalid: must be finite."),
            init_log_std=value)
    # The reason is that it is not finite, not that it is out of range.
    _raises(re.escape(f"Config.learning_rate={value} is invalid: must be finite."),
            learning_rate=value)


@pytest.mark.parametrize("name", config_lib.float_fields())
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_every_dynamic_field_must_be_finite_even_where_unused(name, value):
    # vf_clip is unused without clip_value_loss, dual_clip_c without dual_clip, ...: a
    # non-finite value there is a mistake all the same.
    _raises(re.escape(f"Config.{name}={value} is invalid: must be finite."),
            clip_value_loss=False, **{name: value})
    stacked = jaxppo.Config().replace(**{name: np.float32([1.0, value])})
    _raises_for(stacked, f"Config.{name}={value} is invalid: must be finite.")


@pytest.mark.parametrize("value", [1e39, -1e39, 10**400])
def test_dynamic_values_must_fit_a_float32(value):
    # 1e39 is a finite float64 but inf as the float32 the jitted program computes in.
    _raises(re.escape("Config.gamma=") + ".* is invalid: must fit a float32", gamma=value)


def _raises_for(config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        jaxppo.validate(config)


@pytest.mark.parametrize("name", config_lib.float_fields())
@pytest.mark.parametrize("value, got", [
    ("3e-4", "str"), (None, "NoneType"), (True, "bool"), (np.bool_(True), "dtype bool"),
    ([0.1, 0.2], "list"), (1j, "complex"), (np.array(["0.1"]), "dtype <U3"),
    (np.array([True]), "dtype bool"),
])
def test_dynamic_fields_must_be_real_numbers(name, value, got):
    # A string used to pass validate (numpy parses it) and fail inside the program with
    # "unsupported operand type(s) for -: 'str' and 'float'".
    _raises_for(jaxppo.Config(**{name: value}),
                f"Config.{name}={value!r} is invalid: must be a real number (an array of "
                f"them for a stacked config), got {got}.")


@pytest.mark.parametrize("value", [1, 0.5, np.float32(0.5), np.float64(0.5), np.int32(1),
                                   np.array(0.5), np.float32([0.5, 0.9]),
                                   jax.numpy.float32(0.5), jax.numpy.array([0.5, 0.9])])
def test_dynamic_fields_accept_numbers_and_numeric_arrays(value):
    assert jaxppo.validate(jaxppo.Config(gamma=value))


def test_stacked_and_traced_configs_pass_the_type_checks():
    stacked = config_lib.stack_configs([jaxppo.Config(), jaxppo.Config(gamma=0.5)])
    assert jaxppo.validate(stacked) is stacked

    def gamma(config):
        config_lib.validate(config)  # traced leaves: skipped, not refused as non-numbers
        return config.gamma

    chex.assert_trees_all_close(jax.jit(gamma)(stacked), np.float32([0.99, 0.5]))
    chex.assert_trees_all_close(jax.vmap(gamma)(stacked), np.float32([0.99, 0.5]))
    chex.assert_trees_all_close(jax.jit(jax.vmap(gamma))(stacked), np.float32([0.99, 0.5]))


@pytest.mark.parametrize("name, value", [
    ("activation", 1), ("activation", ["tanh"]), ("action_dist", np.array(["auto", "auto"])),
    ("shuffle", None), ("encoder", b"mlp"), ("core", ("none",)), ("matmul_dtype", np.float32),
])
def test_choice_fields_must_be_one_of_their_strings(name, value):
    # An array used to raise numpy's "truth value of an array is ambiguous" instead.
    with pytest.raises(ValueError, match=re.escape(f"Config.{name}=") + ".* is invalid: must "
                       "be one of"):
        jaxppo.validate(jaxppo.Config(**{name: value}))


def test_a_long_value_is_shown_on_one_line():
    with pytest.raises(ValueError) as info:
        jaxppo.validate(jaxppo.Config(gamma=np.array(["x"] * 1000)))
    assert "\n" not in str(info.value) and len(str(info.value)) < 250
    assert str(info.value).startswith("Config.gamma=array(['x', 'x'")


# --- entropy schedules ------------------------------------------------------------------------


def test_unknown_ent_schedule():
    _raises(re.escape("Config.ent_schedule='cosine' is invalid: must be one of ('constant', "
                      "'linear', 'exponential')."), ent_schedule="cosine")


def test_ent_coef_end_is_checked_only_by_a_decaying_schedule():
    # Linear: the end coefficient must be >= 0; decaying to exactly 0 is allowed.
    _raises(re.escape("Config.ent_coef_end=-0.01 is invalid: must be >= 0."),
            ent_schedule="linear", ent_coef_end=-0.01)
    assert jaxppo.validate(jaxppo.Config(ent_schedule="linear", ent_coef_end=0.0))
    # Constant: ent_coef_end is unused, so any value passes.
    assert jaxppo.validate(jaxppo.Config(ent_schedule="constant", ent_coef_end=-0.01))


@pytest.mark.parametrize("name", ["ent_coef", "ent_coef_end"])
def test_exponential_schedule_needs_positive_ends(name):
    # ent_coef * (ent_coef_end / ent_coef) ** f (update.py) needs both ends > 0.
    _raises(re.escape(f"Config.{name}=0.0 is invalid: must be > 0 for an exponential schedule "
                      "(ent_schedule='exponential')."),
            **{"ent_schedule": "exponential", "ent_coef": 0.01, "ent_coef_end": 0.001,
               name: 0.0})
    # The same zero is fine for a linear schedule.
    assert jaxppo.validate(jaxppo.Config(ent_schedule="linear", **{name: 0.0}))


def test_numpy_bool_switches_are_accepted():
    # Switches read back from numpy (e.g. a saved config) are np.bool_, not bool.
    config = jaxppo.Config(anneal_lr=np.bool_(False), dual_clip=np.bool_(True))
    assert jaxppo.validate(config) is config


# --- stacking ---------------------------------------------------------------------------------

# One value per static field, each different from Config's default.
_OTHER_STATIC = dict(
    env_id="Pendulum-v1", num_envs=8, num_steps=64, total_timesteps=1000, update_epochs=2,
    num_minibatches=2, hidden_sizes=(32,), activation="relu", encoder="cnn", core="gru",
    core_size=64, shared_encoder=True, action_dist="categorical",
    anneal_lr=False, normalize_advantages=False, clip_value_loss=False, dual_clip=True,
    normalize_obs=True, scale_rewards=True, normalize_values=True, recompute_advantages=True,
    shuffle="trajectories", ent_schedule="linear", kl_early_stop=True, action_masking=True,
    squash_mean=True, gsde=True, gsde_sample_freq=4, grad_norm_type="max", fourier_features=4,
    matmul_dtype="bfloat16",
)


def test_other_static_values_cover_every_static_field():
    assert tuple(_OTHER_STATIC) == config_lib.static_fields()
    for name, value in _OTHER_STATIC.items():
        assert value != getattr(jaxppo.Config(), name), name


@pytest.mark.parametrize("name", list(_OTHER_STATIC))
def test_stack_configs_rejects_every_differing_static_field(name):
    other = jaxppo.Config(**{name: _OTHER_STATIC[name]})
    # The third config differs: every config is compared with the first, not only the second.
    configs = [jaxppo.Config(), jaxppo.Config(learning_rate=1e-3), other]
    message = (f"stack_configs: configs[2].{name}={_OTHER_STATIC[name]!r} differs from "
               f"configs[0].{name}={getattr(jaxppo.Config(), name)!r}; static fields change "
               "the compiled program and must agree (only dynamic fields can be stacked: "
               "learning_rate, gamma, gae_lambda, clip_eps, dual_clip_c, vf_coef, vf_clip, "
               "ent_coef, max_grad_norm, adam_eps, init_log_std, obs_clip, ent_coef_end, "
               "target_kl, temperature, fourier_scale, env_params)")
    with pytest.raises(ValueError, match=re.escape(message)):
        config_lib.stack_configs(configs)


def test_stack_configs_leaves_are_float32():
    # Python floats would stack as float64 (and be cast by jit, x64 off); the stack is float32.
    stacked = config_lib.stack_configs([jaxppo.Config(), jaxppo.Config(gamma=0.9),
                                        jaxppo.Config(gamma=0.5)])
    for name in config_lib.float_fields():
        leaf = getattr(stacked, name)
        assert isinstance(leaf, np.ndarray) and leaf.dtype == np.float32, name
        assert leaf.shape == (3,), name
    np.testing.assert_array_equal(stacked.gamma, np.float32([0.99, 0.9, 0.5]))


def test_docstring_lists_every_static_and_dynamic_field():
    """Config's docstring names each field in the right list (what a reader sweeps by)."""
    doc = jaxppo.Config.__doc__
    static = doc[doc.index("Static fields"):doc.index("Dynamic fields")]
    dynamic = doc[doc.index("Dynamic fields"):doc.index("Attributes:")]
    assert set(re.findall(r"``(\w+)``", static)) == set(config_lib.static_fields())
    assert set(re.findall(r"``(\w+)``", dynamic)) == set(config_lib.dynamic_fields())


@pytest.mark.parametrize(("value", "minimum", "message"), [
    (0, 1, "n=0: expected an integer >= 1"),
    (True, 1, "n=True: expected an integer >= 1"),
    (2.0, 1, "n=2.0: expected an integer >= 1"),
    (-1, 0, "n=-1: expected an integer >= 0"),
    ("3", None, "n='3': expected an integer$"),
])
def test_checked_int_names_the_value_and_what_is_allowed(value, minimum, message):
    with pytest.raises(ValueError, match=message):
        config_lib.checked_int("n", value, minimum)


def test_checked_int_returns_a_python_int():
    assert config_lib.checked_int("n", np.int64(3)) == 3
    assert type(config_lib.checked_int("n", np.int64(3))) is int
    assert config_lib.checked_int("seed", -5, minimum=None) == -5
