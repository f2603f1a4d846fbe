"""`jaxppo.sweep`: a grid or random search over dynamic fields, in one compiled call."""

import importlib
import re

import chex
import jax
import numpy as np
import pytest

import jaxppo

sweep_lib = importlib.import_module("jaxppo.sweep")  # the module; jaxppo.sweep is the function

TINY = jaxppo.Config(
    num_envs=4, num_steps=16, total_timesteps=4 * 16 * 2, update_epochs=1, num_minibatches=2
)


def test_grid_enumerates_every_combination():
    table = jaxppo.grid({"learning_rate": [1e-3, 3e-4], "clip_eps": [0.1, 0.2, 0.3]})
    np.testing.assert_allclose(table["learning_rate"], [1e-3] * 3 + [3e-4] * 3)
    np.testing.assert_allclose(table["clip_eps"], [0.1, 0.2, 0.3] * 2)


def test_sweep_setting_equals_a_single_run():
    result = jaxppo.sweep(TINY, {"learning_rate": [1e-2, 3e-4], "ent_coef": [0.0]}, seeds=2,
                          key=jax.random.key(5))
    assert result.num_settings == 2
    assert result.metrics.total_loss.shape == (2, 2, TINY.num_updates)
    keys = jax.random.split(jax.random.key(5), 2)
    single = jax.jit(jaxppo.train)
    for h, lr in enumerate((1e-2, 3e-4)):
        for s in range(2):
            _, metrics = single(TINY.replace(learning_rate=lr, ent_coef=0.0), keys[s])
            chex.assert_trees_all_close(
                jax.tree.map(lambda x, h=h, s=s: x[h, s], result.metrics), metrics,
                rtol=1e-5, atol=1e-6,
            )


def test_sweep_without_a_space_trains_the_config_alone_over_seeds():
    result = jaxppo.sweep(TINY, seeds=3, key=jax.random.key(5))
    assert result.settings == {} and result.num_settings == 1
    assert result.metrics.total_loss.shape == (1, 3, TINY.num_updates)
    keys = jax.random.split(jax.random.key(5), 3)
    _, metrics = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))(TINY, keys)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], result.metrics), metrics,
                                rtol=1e-5, atol=1e-6)


def test_random_search_is_reproducible_and_in_range():
    space = {"learning_rate": ("log", 1e-4, 1e-2), "clip_eps": (0.1, 0.3)}
    a = jaxppo.random_search(space, 50, seed=1)
    b = jaxppo.random_search(space, 50, seed=1)
    np.testing.assert_array_equal(a["learning_rate"], b["learning_rate"])
    assert np.all((a["learning_rate"] >= 1e-4) & (a["learning_rate"] <= 1e-2))
    assert np.all((a["clip_eps"] >= 0.1) & (a["clip_eps"] <= 0.3))
    # Log-uniform: about half the draws fall below the geometric midpoint 1e-3.
    assert 10 < np.sum(a["learning_rate"] < 1e-3) < 40


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({"num_envs": [4, 8]}, r"cannot sweep Config.num_envs: it is a static field.*one "
                               r"sweep per value"),
        ({"learnin_rate": [1e-3]}, r"cannot sweep 'learnin_rate': not a Config field"),
        ({"learning_rate": []}, r"expected a non-empty list"),
        ({}, r"at least one field.*space=None"),
        ({"clip_eps": [0.2, -0.1]}, r"clip_eps=-0.1"),
    ],
)
def test_bad_sweeps_are_refused_before_tracing(space, match):
    with pytest.raises(ValueError, match=match):
        jaxppo.sweep(TINY, space, seeds=2)


def test_random_search_refuses_bad_ranges():
    with pytest.raises(ValueError, match="low < high"):
        jaxppo.random_search({"clip_eps": (0.3, 0.1)}, 4)
    with pytest.raises(ValueError, match="num_settings=0"):
        jaxppo.random_search({"clip_eps": (0.1, 0.3)}, 0)


def test_a_table_of_settings_runs_row_by_row():
    table = jaxppo.random_search({"learning_rate": ("log", 1e-4, 1e-2)}, 3, seed=0)
    result = jaxppo.sweep(TINY, table, seeds=1)
    assert result.metrics.total_loss.shape == (3, 1, TINY.num_updates)
    np.testing.assert_array_equal(result.settings["learning_rate"], table["learning_rate"])
    with pytest.raises(ValueError, match="1-D arrays of one length"):
        jaxppo.sweep(TINY, {"learning_rate": np.ones(2), "clip_eps": np.ones(3) * 0.2})


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"learnin_rate": np.array([1e-3])}, r"cannot sweep 'learnin_rate': not a Config field "
                                             r"\(sweepable fields: learning_rate, gamma"),
        ({"num_envs": np.array([4.0, 8.0])}, r"cannot sweep Config.num_envs: it is a static "
                                             r"field.*one sweep per value"),
        ({"learning_rate": np.array([1e-3]), "hidden_sizes": np.array([8.0])},
         r"cannot sweep Config.hidden_sizes: it is a static field"),
    ],
)
def test_a_table_is_checked_field_by_field_as_a_grid_is(table, match):
    """A table (numpy arrays, as random_search returns) takes its own path in
    settings_table; its field names are refused with the grid's messages."""
    with pytest.raises(ValueError, match=match):
        jaxppo.sweep(TINY, table, seeds=2)
    with pytest.raises(ValueError, match=match):
        sweep_lib.settings_table(table)


def test_random_search_draws_depend_on_the_seed():
    space = {"learning_rate": ("log", 1e-4, 1e-2), "clip_eps": (0.1, 0.3)}
    one, two = (jaxppo.random_search(space, 50, seed=s) for s in (1, 2))
    again = jaxppo.random_search(space, 50, seed=2)
    for name in space:
        np.testing.assert_array_equal(two[name], again[name])
        # 50 continuous draws from two streams: not one of them coincides.
        assert not np.any(one[name] == two[name])
    # The draws are numpy's default_rng(seed), uniform in log space then in the range, field
    # by field in the order given: the first field's log-uniform, then the second's uniform.
    rng = np.random.default_rng(2)
    want_lr = np.exp(rng.uniform(np.log(1e-4), np.log(1e-2), 50)).astype(np.float32)
    want_clip = rng.uniform(0.1, 0.3, 50).astype(np.float32)
    np.testing.assert_array_equal(two["learning_rate"], want_lr)
    np.testing.assert_array_equal(two["clip_eps"], want_clip)


@pytest.mark.parametrize("low", [0.0, -1e-3])
def test_random_search_refuses_a_log_range_from_zero_or_below(low):
    # log(0) = -inf and log(-1e-3) = nan: the range must be refused, not drawn from.
    spec = ("log", low, 1e-2)
    with pytest.raises(ValueError, match=re.escape(
            f"random_search['learning_rate']={spec!r}: expected (low, high) or "
            "('log', low, high) with low < high (and low > 0 for 'log')")):
        jaxppo.random_search({"learning_rate": spec}, 4)


@pytest.mark.parametrize("seeds", [0, -1, True, 2.0])
def test_seeds_below_one_or_not_an_int_are_refused_before_tracing(seeds, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("sweep reached run_sharded with a bad seeds")

    monkeypatch.setattr(sweep_lib, "run_sharded", never)
    with pytest.raises(ValueError, match=re.escape(f"seeds={seeds!r}: expected an integer >= 1")):
        jaxppo.sweep(TINY, {"clip_eps": [0.1, 0.2]}, seeds=seeds)


@pytest.fixture
def no_training(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("sweep reached run_sharded with a bad space")

    monkeypatch.setattr(sweep_lib, "run_sharded", never)


@pytest.mark.parametrize("values, shown, example", [
    (1e-3, "0.001", "[0.001]"),  # once "object of type 'float' has no len()"
    (np.float32(1e-3), "np.float32(0.001)", "[np.float32(0.001)]"),
    ("1e-3", "'1e-3'", "[1e-3, 3e-4]"),
    (["1e-3"], "['1e-3']", "[1e-3, 3e-4]"),  # a string is not a number in a list either
    ([[1e-3, 3e-4]], "[[0.001, 0.0003]]", "[1e-3, 3e-4]"),
    ([True], "[True]", "[1e-3, 3e-4]"),
    (None, "None", "[1e-3, 3e-4]"),
    ({1e-3}, "{0.001}", "[1e-3, 3e-4]"),
])
def test_each_swept_field_takes_a_list_of_numbers(no_training, values, shown, example):
    with pytest.raises(ValueError, match=re.escape(
            f"grid['learning_rate']={shown}: expected a non-empty list of numbers (each swept "
            f"field takes a list of values, e.g. {example})")):
        jaxppo.sweep(TINY, {"learning_rate": values}, seeds=1)


@pytest.mark.parametrize("values", [[0.1, float("inf")], [float("nan")], [10**400], [1e39]])
def test_swept_values_must_be_finite_float32_numbers(no_training, values):
    # 10**400 used to raise OverflowError; 1e39 became inf in the float32 table.
    with pytest.raises(ValueError, match=re.escape(
            f"grid['clip_eps']={values!r}"[:60]) + ".*: every value must be finite and fit a "
            "float32"):
        jaxppo.sweep(TINY, {"clip_eps": values}, seeds=1)


def test_a_table_of_non_numbers_is_refused_by_name(no_training):
    with pytest.raises(ValueError, match=re.escape("grid['clip_eps']=array(['a'], dtype='<U1'): "
                                                   "expected a non-empty list of numbers")):
        jaxppo.sweep(TINY, {"clip_eps": np.array(["a"])}, seeds=1)


@pytest.mark.parametrize("space", [[("learning_rate", [1e-3])], "learning_rate", 1e-3])
def test_a_space_that_is_not_a_mapping_is_refused(no_training, space):
    with pytest.raises(ValueError, match=re.escape(
            f"space={space!r}: expected a mapping of field -> list of values")):
        jaxppo.sweep(TINY, space, seeds=1)
    with pytest.raises(ValueError, match="expected a mapping"):
        jaxppo.random_search(space, 4)


@pytest.mark.parametrize("spec", [1e-3, (1e-3,), ("log", 1e-3), (1e-4, 1e-3, 1e-2),
                                  ("1e-4", "1e-3"), (0.0, float("inf")), (float("nan"), 1.0),
                                  (0, 10**400), None, ("lin", 1e-4, 1e-2),
                                  (np.zeros(2), np.ones(2))])
def test_random_search_refuses_malformed_ranges_by_name(spec):
    # Each used to fail inside numpy or Python (no len(), cannot unpack) or draw nan / inf.
    with pytest.raises(ValueError, match=re.escape(
            "random_search['clip_eps']=") + ".*: expected \\(low, high\\) or"):
        jaxppo.random_search({"clip_eps": spec}, 4)


@pytest.mark.parametrize("num_settings", ["4", 2.0, None])
def test_random_search_num_settings_must_be_an_int(num_settings):
    with pytest.raises(ValueError, match=re.escape(
            f"num_settings={num_settings!r}: expected an integer >= 1")):
        jaxppo.random_search({"clip_eps": (0.1, 0.3)}, num_settings)
