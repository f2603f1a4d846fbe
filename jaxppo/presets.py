"""Settings known to learn, per environment: `PRESETS` and `preset(env_id)`.

Each entry names where it came from. `jaxppo train --env X` starts from `preset(X)`.
"""

from __future__ import annotations

from jaxppo.config import Config

# Settings known to learn, per environment (the learning tests check them; see README).
PRESETS: dict[str, Config] = {
    # REFERENCES.md's classic CartPole settings are Config's defaults.
    "CartPole-v1": Config(env_id="CartPole-v1"),
    # Continuous control: longer rollouts, 10 epochs of 64-sample minibatches, a shorter
    # horizon (gamma 0.95, the swing-up reward is dense), no entropy bonus, no value clipping
    # (returns reach -150, far outside any 0.2 clip band), lr 1e-3 annealed.
    "Pendulum-v1": Config(
        env_id="Pendulum-v1",
        num_envs=16,
        num_steps=128,
        total_timesteps=1_000_000,
        update_epochs=10,
        num_minibatches=32,
        learning_rate=1e-3,
        gamma=0.95,
        ent_coef=0.0,
        clip_value_loss=False,
    ),
    # A memory task: the context bit is shown at the first step and asked for at the last
    # (5 steps later), so it needs the recurrent core; a feed-forward policy stays at chance.
    # The probe settings of tests/test_recurrent.py on bsuite's chain: a GRU of 32 after one
    # 32-wide layer, 16 envs x 20 steps, lr 3e-3, gamma 0.9 (bench/results/networks_learning).
    "MemoryChain-bsuite": Config(
        env_id="MemoryChain-bsuite",
        num_envs=16,
        num_steps=20,
        total_timesteps=48_000,
        num_minibatches=2,
        hidden_sizes=(32,),
        core="gru",
        core_size=32,
        shuffle="trajectories",
        learning_rate=3e-3,
        anneal_lr=False,
        clip_value_loss=False,
        gamma=0.9,
    ),
}

# MinAtar's 10 x 10 x C grids: MinAtar's own network (Young & Tian 2019: one 3x3 conv of 16
# channels, then 128 relu units), here one torso under both heads, with gymnax-blines' PPO
# batch for MinAtar (64 envs x 128 steps, 8 minibatches, 4 epochs, lr 5e-4), annealed, gamma
# 0.99. Measured in bench/results/networks_learning (Breakout at 2M steps, 8 seeds).
for _game in ("Asterix", "Breakout", "Freeway", "SpaceInvaders"):
    PRESETS[f"{_game}-MinAtar"] = Config(
        env_id=f"{_game}-MinAtar",
        num_envs=64,
        num_steps=128,
        total_timesteps=2_000_000,
        num_minibatches=8,
        update_epochs=4,
        encoder="cnn",
        hidden_sizes=(128,),
        activation="relu",
        shared_encoder=True,
        learning_rate=5e-4,
    )


def preset(env_id: str) -> Config:
    """A config known to learn ``env_id`` (`PRESETS`), else the defaults with that env."""
    return PRESETS.get(env_id, Config(env_id=env_id))
