"""What a run is: the Spec, its JSON round trip (config.json) and the checks of its values."""

import json

import numpy as np
import pytest
from conftest import RUNNER_CONFIG

import jaxppo
from jaxppo import spec as spec_lib


def test_spec_json_round_trip():
    """A sweep's spec through JSON text and back: the same spec; swept values are the
    shortest decimals of their float32 leaves, hidden_sizes a tuple again."""
    config = RUNNER_CONFIG.replace(clip_eps=0.15)
    spec = spec_lib.make_spec(config, {"learning_rate": [1e-3, 3e-4], "ent_coef": [0.0]},
                              seeds=3, seed=7, chunk_updates=2, checkpoint_every=4)
    data = json.loads(json.dumps(spec.to_json()))
    assert data["settings"] == {"learning_rate": [0.001, 0.0003], "ent_coef": [0.0, 0.0]}
    assert data["config"]["hidden_sizes"] == [8] and data["format"] == spec_lib.FORMAT_VERSION
    again = spec_lib.Spec.from_json(data)
    assert again == spec
    assert again.config.hidden_sizes == (8,)
    assert (again.num_settings, again.num_runs) == (2, 6)


def test_config_dict_round_trip_of_every_field():
    config = jaxppo.preset("Pendulum-v1")
    values = spec_lib.config_to_dict(config)
    assert set(values) == {f for f in config.__dataclass_fields__}
    assert spec_lib.config_from_dict(json.loads(json.dumps(values))) == config
    with pytest.raises(spec_lib.RunError, match="unknown Config field\\(s\\) bogus"):
        spec_lib.config_from_dict({**values, "bogus": 1})


def test_static_values_are_json():
    values = spec_lib.static_values(RUNNER_CONFIG)
    assert values["num_envs"] == 2 and values["hidden_sizes"] == [8]
    assert "learning_rate" not in values  # a dynamic field
    assert json.loads(json.dumps(values)) == values


def test_configs_and_labels_per_setting():
    spec = spec_lib.make_spec(RUNNER_CONFIG, {"learning_rate": [1e-3, 1e-2]}, seeds=2)
    assert [c.learning_rate for c in spec.configs()] == [0.001, 0.01]
    assert spec_lib.setting_labels(spec) == ["learning_rate=0.001", "learning_rate=0.01"]
    assert spec_lib.setting_labels(spec_lib.make_spec(RUNNER_CONFIG, seeds=2)) == ["config"]
    # A table of settings (numpy arrays, e.g. from random_search) is taken row by row.
    table = {"clip_eps": np.array([0.1, 0.3], np.float32)}
    assert spec_lib.make_spec(RUNNER_CONFIG, table, seeds=1).settings == {"clip_eps": (0.1, 0.3)}


def test_default_chunking():
    assert spec_lib.default_chunk_updates(976) == 20  # ceil(976 / 50)
    assert spec_lib.default_chunk_updates(7) == 1
    spec = spec_lib.make_spec(RUNNER_CONFIG, seeds=2, chunk_updates=100)
    assert spec.chunk_updates == 7  # never longer than the run


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": 0}, "seeds=0: expected an integer >= 1"),
    ({"seeds": True}, "seeds=True: expected an integer >= 1"),
    ({"seeds": 2.0}, "seeds=2.0: expected an integer >= 1"),
    ({"seed": "1"}, "seed='1': expected an integer$"),
    ({"chunk_updates": 0}, "chunk_updates=0: expected an integer >= 1"),
    ({"checkpoint_every": -1}, "checkpoint_every=-1: expected an integer >= 1"),
])
def test_bad_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        spec_lib.make_spec(RUNNER_CONFIG, **kwargs)
    assert spec_lib.make_spec(RUNNER_CONFIG, seed=-3).seed == -3  # any integer seeds keys


def test_from_json_of_a_missing_entry_is_a_key_error():
    data = spec_lib.make_spec(RUNNER_CONFIG, seeds=2).to_json()
    del data["seeds"]
    with pytest.raises(KeyError, match="seeds"):
        spec_lib.Spec.from_json(data)
