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
    """A config whose dynamic fields all differ (0.01, 0.02, ...), so order errors show."""
    values = {name: 0.01 * (i + 1) for i, name in enumerate(config_lib.dynamic_fields())}
    return jaxppo.Config(**values)


def test_leaves_are_the_dynamic_fields_in_order():
    config = _distinct_dynamic_config()
    leaves = jax.tree.leaves(config)
    assert len(leaves) == len(config_lib.dynamic_fields()) == 16
    assert leaves == [getattr(config, name) for name in config_lib.dynamic_fields()]
    assert jax.tree.leaves(jaxppo.Config()) == [
        getattr(jaxppo.Config(), name) for name in config_lib.dynamic_fields()
    ]


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
    for known in ("CartPole-v1", "Pendulum-v1", *jaxppo.envs.registered()):
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
             "kl_early_stop", "action_masking", "squash_mean")


@pytest.mark.parametrize("name", _SWITCHES)
def test_switches_must_be_bools(name):
    assert isinstance(getattr(jaxppo.Config(), name), bool)
    # 1 is truthy but not a bool: a typo such as anneal_lr=1 is refused, not taken as True.
    _raises(re.escape(f"Config.{name}=1 is invalid: must be True or False."), **{name: 1})
    _raises(re.escape(f"Config.{name}='yes' is invalid: must be True or False."),
            **{name: "yes"})


@pytest.mark.parametrize("sizes", [(0,), (64, 0), (64, -8), (64, 2.0), (True,)])
def test_hidden_sizes_must_be_positive_integers(sizes):
    _raises(re.escape(f"Config.hidden_sizes={sizes!r} is invalid: must be a tuple of positive "
                      "integers, e.g. (64, 64)."), hidden_sizes=sizes)


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
