"""The diff in parts gives what the whole diff gives, and holds only a part of each side at a time."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.drift_parts import diff_files
from airflow_reconcile.core.errors import ReconcileError


def _files(tmp_path: Path, desired: pd.DataFrame, actual: pd.DataFrame) -> tuple[Path, Path]:
    paths = tmp_path / "desired.parquet", tmp_path / "actual.parquet"
    desired.to_parquet(paths[0], index=False)
    actual.to_parquet(paths[1], index=False)
    return paths


def _both(tmp_path: Path, desired: pd.DataFrame, actual: pd.DataFrame, partition_rows: int, **options):
    """(whole report, whole rows), (parts report, parts rows, progress lines): from the same files."""
    d_path, a_path = _files(tmp_path, desired, actual)
    whole = detect_drift(pd.read_parquet(d_path), pd.read_parquet(a_path), **options)
    lines: list[str] = []
    report, frames = diff_files(d_path, a_path, list, partition_rows=partition_rows, progress=lines.append, **options)
    rows = pd.concat(frames, ignore_index=True)
    return whole, (report, rows, lines)


def _same(whole_rows: pd.DataFrame, part_rows: pd.DataFrame, key: list[str]) -> None:
    order = [*key, "drift_kind", "side", "changed_columns"]

    def canonical(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.sort_values(order, na_position="last", kind="stable").reset_index(drop=True)

    assert list(part_rows.columns) == list(whole_rows.columns)
    pd.testing.assert_frame_equal(canonical(part_rows), canonical(whole_rows))


def _counts(report) -> dict:
    return {k: v for k, v in report.to_dict().items() if k != "sample"}


def _parts_seen(lines: list[str]) -> list[tuple[int, int]]:
    found = [re.search(r"\(([\d,]+) desired, ([\d,]+) actual rows\)", line) for line in lines]
    return [(int(m[1].replace(",", "")), int(m[2].replace(",", ""))) for m in found if m]


def _integer_frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    desired = pd.DataFrame(
        {"id": rng.permutation(rows * 3)[:rows].astype("int64"),
         "owner": pd.Series(rng.choice(["ann", "bob", "cy", None], rows), dtype="string"),
         "size": rng.normal(10, 2, rows).round(2)}
    )  # fmt: skip
    actual = desired.sample(frac=0.9, random_state=seed).reset_index(drop=True)
    flip = rng.random(len(actual)) < 0.2
    actual.loc[flip, "owner"] = "zed"
    actual.loc[rng.random(len(actual)) < 0.1, "size"] += 0.005  # inside the tolerance
    actual.loc[rng.random(len(actual)) < 0.1, "size"] += 1.0
    extra = pd.DataFrame({"id": np.arange(rows * 3, rows * 3 + rows // 10), "owner": "new", "size": 1.0})
    actual = pd.concat([actual, extra, actual.head(3)], ignore_index=True)  # three keys twice on a side
    return desired, actual


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_integer_keys_in_parts_give_the_whole_diff(tmp_path: Path, seed: int) -> None:
    desired, actual = _integer_frames(600, seed)
    options = {"key": ["id"], "tolerances": {"size": 0.01}}
    (w_report, w_rows), (p_report, p_rows, lines) = _both(tmp_path, desired, actual, 50, **options)
    assert _counts(p_report) == _counts(w_report)
    assert w_report.changed
    assert w_report.missing
    assert w_report.unexpected
    assert sum(w_report.duplicate_keys.values())
    _same(w_rows, p_rows, ["id"])
    parts = _parts_seen(lines)
    assert len(parts) == -(-len(actual) // 50)  # the larger side, 50 rows a part
    # Never a whole side at once: the largest part holds a fraction of the snapshots.
    assert max(d for d, _ in parts) < len(desired) / 4
    assert max(a for _, a in parts) < len(actual) / 4
    assert sum(d for d, _ in parts) == len(desired)
    assert sum(a for _, a in parts) == len(actual)


def test_text_keys_with_normalise_steps_blanks_and_an_integer_side(tmp_path: Path) -> None:
    names = [f"Svc-{i}" for i in range(300)]
    desired = pd.DataFrame({"name": names + ["  ", None], "team": ["a"] * 300 + ["x", "y"]})
    actual = pd.DataFrame({"name": [f"  svc-{i} " for i in range(0, 320, 2)], "team": ["a", "b"] * 80})
    options = {"key": ["name"], "normalize_steps": {"name": ["trim", "casefold"]}}
    (w_report, w_rows), (p_report, p_rows, _) = _both(tmp_path, desired, actual, 40, **options)
    assert _counts(p_report) == _counts(w_report)
    assert w_report.null_keys["desired"] == 2
    assert w_report.changed
    assert w_report.unexpected
    _same(w_rows, p_rows, ["name"])

    ints = pd.DataFrame({"id": np.arange(200, dtype="int64"), "v": "x"})
    texts = pd.DataFrame({"id": [str(i) for i in range(100, 300)], "v": "x"})
    (w_report, w_rows), (p_report, p_rows, _) = _both(tmp_path, ints, texts, 30, key=["id"])
    assert _counts(p_report) == _counts(w_report)
    assert w_report.unchanged == 100
    _same(w_rows, p_rows, ["id"])


@pytest.mark.parametrize("with_a_time", [False, True])
def test_temporal_keys_are_matched_as_instants_and_written_in_one_form(tmp_path: Path, with_a_time: bool) -> None:
    days = pd.date_range("2024-01-01", periods=400, freq="D", tz="UTC")
    desired = pd.DataFrame({"day": days, "value": np.arange(400)})
    if with_a_time:  # one value that is not a midnight: every key is then written as an instant
        desired.loc[399, "day"] = days[399] + pd.Timedelta(hours=5)
    actual = pd.DataFrame({"day": days[50:].strftime("%Y-%m-%d"), "value": np.arange(50, 400) % 7})
    (w_report, w_rows), (p_report, p_rows, _) = _both(tmp_path, desired, actual, 60, key=["day"])
    assert _counts(p_report) == _counts(w_report)
    assert w_report.missing >= 50
    _same(w_rows, p_rows, ["day"])
    lengths = set(p_rows["day"].dropna().str.len())
    assert lengths == ({27} if with_a_time else {10})


def test_uuid_keys_match_their_text_in_any_case_or_braces(tmp_path: Path) -> None:
    ids = [uuid.UUID(int=i * 7919) for i in range(250)]
    desired = pd.DataFrame({"uid": ids, "who": "ann"})
    actual = pd.DataFrame({"uid": ["{" + str(u).upper() + "}" for u in ids[25:]], "who": ["ann", "bob"] * 112 + ["x"]})
    (w_report, w_rows), (p_report, p_rows, _) = _both(tmp_path, desired, actual, 30, key=["uid"])
    assert _counts(p_report) == _counts(w_report)
    assert w_report.missing == 25
    assert w_report.changed
    _same(w_rows, p_rows, ["uid"])


def test_compound_keys_renamed_columns_and_context(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    desired = pd.DataFrame(
        {"team": rng.choice(["a", "b", "c"], 500), "n": rng.integers(0, 200, 500), "lead": "x", "note": "d"}
    ).drop_duplicates(["team", "n"])
    actual = desired.rename(columns={"lead": "owner_name"}).sample(frac=1, random_state=1).head(len(desired) - 20)
    actual.loc[actual.index[:30], "owner_name"] = "y"
    options = {"key": ["team", "n"], "column_map": {"lead": "owner_name"}, "context": ["note"], "exclude": ["note"]}
    (w_report, w_rows), (p_report, p_rows, _) = _both(tmp_path, desired, actual, 50, **options)
    assert _counts(p_report) == _counts(w_report)
    assert w_report.changed == 30
    assert w_report.missing == 20
    _same(w_rows, p_rows, ["team", "n"])


def test_no_drift_in_parts_still_writes_a_frame_with_the_columns(tmp_path: Path) -> None:
    same = pd.DataFrame({"id": np.arange(300, dtype="int64"), "v": "x"})
    (w_report, w_rows), (p_report, p_rows, _) = _both(tmp_path, same, same.copy(), 50, key=["id"])
    assert p_report.unchanged == 300
    assert p_report.total == 0
    assert len(p_rows) == 0
    assert list(p_rows.columns) == list(w_rows.columns)


def test_a_missing_column_is_the_same_error_before_any_part_is_written(tmp_path: Path) -> None:
    desired = pd.DataFrame({"id": np.arange(300), "owner": "a"})
    actual = pd.DataFrame({"id": np.arange(300), "lead": "a"})
    d_path, a_path = _files(tmp_path, desired, actual)
    with pytest.raises(ReconcileError) as whole:
        detect_drift(desired, actual, key=["id"], compare=["owner"])
    with pytest.raises(ReconcileError) as parts:
        diff_files(d_path, a_path, list, key=["id"], compare=["owner"], partition_rows=50)
    assert str(parts.value) == str(whole.value) == "actual snapshot has no column(s) owner; it has id, lead"


def test_a_part_that_cannot_be_diffed_leaves_no_drift_report_behind(tmp_path: Path) -> None:
    """A value that does not read as a number, in one of the later parts: the error names the column and
    the value, and the report written part by part so far is abandoned, not left half-written."""
    from airflow_reconcile.core.drift_parts import _Hasher
    from airflow_reconcile.core.workspace import Workspace

    desired = pd.DataFrame({"id": np.arange(300, dtype="int64"), "size": np.arange(300, dtype="float64")})
    actual = desired.assign(size=(desired["size"] + 1).astype(str))  # every row drifts: every part is written
    last_part = _Hasher(["id"], {"id": "int"}, {}).parts(desired[["id"]], "desired", 15) == 14
    actual.loc[np.flatnonzero(last_part)[0], "size"] = "twelve"
    d_path, a_path = _files(tmp_path, desired, actual)
    workspace = Workspace(root=str(tmp_path / "ws"), spec_name="s", run_id="r")
    written: list[int] = []

    def write(parts):
        return workspace.write_frames("drift", (written.append(len(p)) or p for p in parts))

    with pytest.raises(
        ReconcileError, match="column 'size' cannot be compared as numbers: the actual side has 'twelve'"
    ):
        diff_files(d_path, a_path, write, key=["id"], partition_rows=20)
    assert len(written) == 14  # the 14 parts before the bad one were written
    assert not (tmp_path / "ws").exists() or not any(p.is_file() for p in (tmp_path / "ws").rglob("*"))


def test_more_parts_than_open_files_allow_are_fewer_larger_parts_and_the_log_says_so(tmp_path: Path) -> None:
    from airflow_reconcile.core.drift_parts import MAX_PARTS

    rows = MAX_PARTS * 2 + 10
    frame = pd.DataFrame({"id": np.arange(rows, dtype="int64"), "v": "x"})
    d_path, a_path = _files(tmp_path, frame, frame.assign(v="y"))
    lines: list[str] = []
    report, _ = diff_files(d_path, a_path, lambda parts: sum(len(p) for p in parts), key=["id"], partition_rows=1,
                           progress=lines.append)  # fmt: skip
    assert report.changed == rows
    assert (
        f"would make more than {MAX_PARTS} parts of {rows:,} rows: diffing in {MAX_PARTS} parts of about 3 rows"
        in lines[0]
    )
    assert len(_parts_seen(lines)) == MAX_PARTS
