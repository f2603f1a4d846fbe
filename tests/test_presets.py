"""Tests of `jaxppo.presets`: every preset is a valid config of its own env; an env without one
gets the defaults."""

import json
import pathlib

import pytest

import jaxppo
from jaxppo import presets


def test_preset_without_known_settings_is_the_defaults_with_that_env():
    assert jaxppo.preset("Catch-bsuite") == jaxppo.Config(env_id="Catch-bsuite")
    assert jaxppo.preset("CartPole-v1") == jaxppo.Config()


def test_pendulum_preset_values():
    config = jaxppo.preset("Pendulum-v1")
    # Only these fields differ from the defaults (presets.py's comment on them).
    assert config == jaxppo.Config(
        env_id="Pendulum-v1", num_envs=16, num_steps=128, total_timesteps=1_000_000,
        update_epochs=10, num_minibatches=32, learning_rate=1e-3, gamma=0.95, ent_coef=0.0,
        clip_value_loss=False,
    )
    assert config.minibatch_size == 64  # 16 envs x 128 steps / 32 minibatches
    assert config.num_updates == 488  # 1_000_000 // 2048
    assert jaxppo.validate(config) is config


def test_acrobot_preset_is_rl_zoos_batch_in_64_sample_minibatches():
    config = jaxppo.preset("Acrobot-v1")
    assert config.minibatch_size == 64  # 16 envs x 256 steps / 64 minibatches
    assert config.num_updates == 244  # 1_000_000 // 4096
    assert config.normalize_obs and config.scale_rewards and not config.anneal_lr
    assert (config.gae_lambda, config.ent_coef, config.learning_rate) == (0.94, 0.0, 3e-4)


@pytest.mark.parametrize("env_id", list(jaxppo.PRESETS))
def test_every_preset_validates_for_the_env_it_is_listed_under(env_id):
    config = jaxppo.PRESETS[env_id]
    assert config.env_id == env_id
    assert jaxppo.validate(config) is config
    assert jaxppo.preset(env_id) is config


@pytest.mark.parametrize("env_id", ["DeepSea-bsuite", "Reacher-misc", "ProbeValue-v0"])
def test_an_env_without_a_preset_gets_the_defaults_with_that_env(env_id):
    assert env_id not in presets.PRESETS
    assert presets.preset(env_id) == jaxppo.Config(env_id=env_id)


def test_presets_are_the_packages_presets():
    assert jaxppo.PRESETS is presets.PRESETS and jaxppo.preset is presets.preset
    assert "CartPole-v1" in presets.PRESETS and "Pendulum-v1" in presets.PRESETS


def test_minatar_presets_use_the_cnn_and_memory_chain_a_recurrent_core():
    breakout = jaxppo.preset("Breakout-MinAtar")
    assert (breakout.encoder, breakout.hidden_sizes, breakout.shared_encoder) == (
        "cnn", (128,), True)
    assert breakout.batch_size == 8192 and breakout.num_updates == 732  # 6M // (64 x 128)
    chain = jaxppo.preset("MemoryChain-bsuite")
    assert chain.core == "gru" and chain.shuffle == "trajectories"


ZOO = pathlib.Path(__file__).resolve().parents[1] / "bench" / "results" / "zoo" / "zoo.json"


def test_measured_scores_are_the_zoos_results():
    rows = json.loads(ZOO.read_text())["envs"]
    assert set(presets.MEASURED) == set(rows)
    for env_id, (score, steps) in presets.MEASURED.items():
        assert steps == rows[env_id]["env_steps"], env_id
        assert score == round(rows[env_id]["train_aggregate"]["iqm"]["value"], 1), env_id
        # Measured with the preset as it is now (or the defaults, for an env without one).
        assert rows[env_id]["preset"] == (env_id in presets.PRESETS), env_id


def test_known_failures_are_measured_envs_without_a_preset():
    assert presets.KNOWN_FAILURES
    for env_id, why in presets.KNOWN_FAILURES.items():
        assert jaxppo.envs.is_known(env_id) and env_id in presets.MEASURED, env_id
        assert env_id not in presets.PRESETS and why.strip() and "\n" not in why, env_id
