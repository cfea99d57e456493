"""forensics.rolling.rolling_median gives exactly what pandas' rolling median gives."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forensics.rolling import rolling_median

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.just(np.inf),
                   st.sampled_from([0.0, 1.0, -1.0, 2.5, np.nan]))  # repeats make ties


def _pandas(values, window, min_periods, center):
    return pd.Series(values, dtype="float64").rolling(window, min_periods=min_periods, center=center).median().to_numpy()


@settings(max_examples=400, deadline=None)
@given(values=st.lists(floats, max_size=60), window=st.integers(1, 70), min_periods=st.integers(0, 70),
       center=st.booleans())
def test_same_as_pandas_bit_for_bit(values, window, min_periods, center):
    min_periods = min(min_periods, window)  # pandas refuses min_periods > window
    expected = _pandas(values, window, min_periods, center)
    got = rolling_median(np.array(values, dtype=np.float64), window, min_periods, center)
    assert got.shape == expected.shape
    assert np.array_equal(got.view(np.int64) * 0 + np.isnan(got), np.isnan(expected))
    finite = ~np.isnan(expected)
    assert np.array_equal(got[finite].view(np.int64), expected[finite].view(np.int64))


@pytest.mark.parametrize("window,min_periods,center", [(51, 25, True), (200, 10, False), (5001, 2501, True)])
def test_long_noisy_series_with_gaps(window, min_periods, center):
    rng = np.random.default_rng(7)
    values = np.cumsum(rng.standard_normal(200_000))
    values[rng.integers(0, len(values), 3_000)] = np.nan
    values[1000:1400] = np.inf
    expected = _pandas(values, window, min_periods, center)
    assert np.array_equal(rolling_median(values, window, min_periods, center), expected, equal_nan=True)


def test_default_min_periods_is_the_window():
    values = np.arange(6, dtype=np.float64)
    assert np.array_equal(rolling_median(values, 3), _pandas(values, 3, None, False), equal_nan=True)
