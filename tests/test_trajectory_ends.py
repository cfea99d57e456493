"""The report's first/last row of a metric is what a stable sort by (segment, step) gives."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from forensics.report.build import _first_and_last


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-5, 5)), min_size=1, max_size=40))
def test_same_rows_as_a_stable_sort(rows):
    frame = pd.DataFrame(rows, columns=["segment", "step"])
    frame["position"] = np.arange(len(frame))
    ordered = frame.sort_values(["segment", "step"], kind="stable")
    first, last = _first_and_last(frame["segment"].to_numpy(), frame["step"].to_numpy())
    assert (first, last) == (ordered["position"].iloc[0], ordered["position"].iloc[-1])
