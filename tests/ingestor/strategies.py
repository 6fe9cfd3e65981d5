"""Hypothesis strategies shared by the ingestor tests."""

from __future__ import annotations

from hypothesis import strategies as st

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["0.1", "-3", "1e3", "nan", "", "12345678901234567890", " 7 "])
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=12,
)
