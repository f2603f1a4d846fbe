"""Aggregates across seeds (jaxppo.stats)."""

import numpy as np
import pytest

from jaxppo import stats


def test_iqm_known_values():
    # 8 values: drop int(8 / 4) = 2 from each end, mean of 3, 4, 5, 6 = 4.5.
    assert stats.iqm([8, 1, 2, 7, 3, 4, 5, 6]) == 4.5
    # 5 values: drop 1 from each end, mean of 2, 3, 100 = 35.
    assert stats.iqm([1, 2, 3, 100, 1000]) == 35.0
    assert stats.iqm([7.0]) == 7.0


def test_iqm_refuses_empty_and_nan():
    with pytest.raises(ValueError, match="non-empty"):
        stats.iqm([])
    with pytest.raises(ValueError, match="without NaN"):
        stats.iqm([1.0, np.nan])


def test_final_returns_skip_updates_without_episodes():
    returns = np.array([[1.0, np.nan, 3.0, 5.0], [np.nan, np.nan, np.nan, np.nan]])
    final = stats.final_returns(returns, window=3)
    np.testing.assert_allclose(final[0], 4.0)  # mean of 3 and 5; the NaN update is skipped
    assert np.isnan(final[1])
