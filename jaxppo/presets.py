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
}


def preset(env_id: str) -> Config:
    """A config known to learn ``env_id`` (`PRESETS`), else the defaults with that env."""
    return PRESETS.get(env_id, Config(env_id=env_id))
