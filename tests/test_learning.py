"""Learning thresholds (slow): IQM over 8 seeds of the final training returns.

"Final return" is `stats.final_returns`: the mean training-episode return over the last 10
updates of each seed. All 8 seeds train in one vmapped call.
"""

import jax
import numpy as np
import pytest

import jaxppo
from jaxppo import stats

pytestmark = pytest.mark.slow


def _final_iqm(config: jaxppo.Config, seeds: int = 8) -> tuple[float, np.ndarray]:
    keys = jax.random.split(jax.random.key(0), seeds)
    _, metrics = jax.jit(jax.vmap(jaxppo.train, in_axes=(None, 0)))(config, keys)
    final = stats.final_returns(metrics.episode_return)
    assert not np.isnan(final).any(), final
    return stats.iqm(final), final


def test_cartpole_reaches_475_within_500k_steps():
    config = jaxppo.preset("CartPole-v1")
    assert config.num_updates * config.batch_size <= 500_000
    score, final = _final_iqm(config)
    assert score >= 475.0, final


def test_pendulum_reaches_minus_300_within_1m_steps():
    config = jaxppo.preset("Pendulum-v1")
    assert config.num_updates * config.batch_size <= 1_000_000
    score, final = _final_iqm(config)
    assert score >= -300.0, final


def test_cartpole_with_bfloat16_matmuls_reaches_475_within_500k_steps():
    config = jaxppo.preset("CartPole-v1").replace(matmul_dtype="bfloat16")
    score, final = _final_iqm(config)
    assert score >= 475.0, final
