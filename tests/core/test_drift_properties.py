"""Property-based: the engine's counts equal a plain, obviously-correct reference on random frames."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_reconcile.core.drift import detect_drift

KEYS = st.sampled_from(["a", "b", "c", "d", "e", None])
pytestmark = pytest.mark.slow  # hypothesis against a reference implementation

VALUES = st.sampled_from(["x", "y", "z", None])


def reference(desired: list[dict], actual: list[dict], key: list[str], compare: list[str], tol: float | None = None):
    def k(row):
        values = tuple(row[c] for c in key)
        return None if any(v is None for v in values) else values

    counts = {side: Counter(k(r) for r in rows if k(r) is not None) for side, rows in (("d", desired), ("a", actual))}
    held = {x for side in counts.values() for x, n in side.items() if n > 1}
    out = {"null_keys": {}, "duplicate_keys": {}}
    clean = {}
    for side, name, rows in (("d", "desired", desired), ("a", "actual", actual)):
        out["null_keys"][name] = sum(1 for r in rows if k(r) is None)
        out["duplicate_keys"][name] = sum(1 for r in rows if k(r) is not None and k(r) in held)
        clean[side] = {k(r): r for r in rows if k(r) is not None and k(r) not in held}

    def differs(x, y):
        if x is None and y is None:
            return False
        if x is None or y is None:
            return True
        return abs(x - y) > tol if tol is not None else x != y

    common = clean["d"].keys() & clean["a"].keys()
    changed = {x for x in common if any(differs(clean["d"][x][c], clean["a"][x][c]) for c in compare)}
    out.update(
        missing=len(clean["d"].keys() - clean["a"].keys()),
        unexpected=len(clean["a"].keys() - clean["d"].keys()),
        changed=len(changed),
        unchanged=len(common) - len(changed),
    )
    return out


def rows_of(key: list[str], compare: list[str], keys=KEYS, values=VALUES):
    columns = {c: keys for c in key} | {c: values for c in compare}
    return st.lists(st.fixed_dictionaries(columns), max_size=12)


def frame(rows: list[dict], columns: list[str], dtype: str | None = "string") -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns, dtype=dtype)


def counts(report) -> dict:
    data = report.to_dict()
    return {k: data[k] for k in ("missing", "unexpected", "changed", "unchanged", "null_keys", "duplicate_keys")}


@settings(max_examples=150, deadline=None)
@given(data=st.data(), composite=st.booleans())
def test_counts_match_the_reference(data, composite):
    key = ["k1", "k2"] if composite else ["k1"]
    compare = ["v1", "v2"]
    desired = data.draw(rows_of(key, compare))
    actual = data.draw(rows_of(key, compare))
    report, rows = detect_drift(frame(desired, key + compare), frame(actual, key + compare), key, compare)
    assert counts(report) == reference(desired, actual, key, compare)
    drifting = report.missing + report.unexpected + report.changed
    assert len(rows) == drifting + sum(report.null_keys.values()) + sum(report.duplicate_keys.values())


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    tol=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_numeric_tolerance_matches_the_reference(data, tol):
    numbers = st.one_of(st.none(), st.integers(-5, 5).map(float))
    desired = data.draw(rows_of(["k1"], ["n"], values=numbers))
    actual = data.draw(rows_of(["k1"], ["n"], values=numbers))
    d = frame(desired, ["k1", "n"], dtype=None).astype({"k1": "string", "n": "Float64"})
    a = frame(actual, ["k1", "n"], dtype=None).astype({"k1": "string", "n": "Float64"})
    report, _ = detect_drift(d, a, ["k1"], ["n"], tolerances={"n": str(tol)})
    assert counts(report) == reference(desired, actual, ["k1"], ["n"], tol=tol)


INT_KEYS = st.integers(0, 6)
NUMBERS = st.one_of(st.none(), st.integers(-2, 2), st.sampled_from([0.5, 1.0, float("nan")]))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), sparse=st.booleans(), floats_on=st.sampled_from(["desired", "actual", "both"]))
def test_integer_keys_and_native_types_match_the_reference(data, sparse, floats_on):
    """Plain int64 keys (dense: direct addressing; sparse: hashing) and native values (Arrow path)."""
    scale = 10**12 if sparse else 1
    desired = data.draw(st.lists(st.fixed_dictionaries({"k1": INT_KEYS, "n": NUMBERS, "s": VALUES}), max_size=12))
    actual = data.draw(st.lists(st.fixed_dictionaries({"k1": INT_KEYS, "n": NUMBERS, "s": VALUES}), max_size=12))

    def native(rows: list[dict], floats: bool) -> pd.DataFrame:
        out = pd.DataFrame(rows, columns=["k1", "n", "s"])
        out["k1"] = out["k1"].astype("int64") * scale
        # Whole numbers stay integers on the side without floats: 1 == 1.0 must hold across sides.
        whole = all(v is None or (isinstance(v, int)) for v in out["n"])
        out["n"] = out["n"].astype("float64" if floats or not whole else "Int64")
        out["s"] = out["s"].astype(object)
        return out

    d = native(desired, floats_on in ("desired", "both"))
    a = native(actual, floats_on in ("actual", "both"))
    report, _ = detect_drift(d, a, ["k1"], ["n", "s"])

    def plain(rows):
        return [{**r, "n": None if r["n"] is None or r["n"] != r["n"] else r["n"]} for r in rows]

    assert counts(report) == reference(plain(desired), plain(actual), ["k1"], ["n", "s"])


def test_large_frames_compare_on_threads_and_log_progress(caplog):
    """Past 100,000 matched rows the columns are compared in parallel; counts stay exact."""
    import logging

    import numpy as np

    rng = np.random.default_rng(3)
    n = 150_000
    desired = pd.DataFrame({
        "id": np.arange(n), "team": pd.Series(rng.integers(0, 50, n)).map("team-{}".format).astype("string"),
        "x": rng.normal(size=n), "y": rng.integers(0, 9, n),
    })  # fmt: skip
    actual = desired.sample(frac=1, random_state=1).reset_index(drop=True)
    actual.loc[:999, "x"] += 1  # 1,000 changed values in x
    actual.loc[500:1499, "team"] = "moved"  # 1,000 in team, 500 rows overlap with x
    actual = actual.iloc[10:].reset_index(drop=True)  # 10 rows gone from the target
    with caplog.at_level(logging.INFO, logger="airflow_reconcile.core.drift"):
        report, rows = detect_drift(desired, actual, ["id"], ["team", "x", "y"])
    assert report.missing == 10
    assert report.columns == {"team": 1000, "x": 990, "y": 0}
    assert report.changed == 1490  # 990 + 1000 - 500 overlapping
    assert (rows["changed_columns"] == "team,x").sum() == 500
    assert any("compared 3/3 columns" in r.getMessage() for r in caplog.records)
