from __future__ import annotations

import pandas as pd
import pytest

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.errors import ReconcileError


def frame(**cols):
    return pd.DataFrame(cols, dtype="string")


def test_classes_and_per_column_counts():
    desired = frame(svc=["a", "b", "c", "d"], owner=["x", "y", "z", "q"], team=["t1", "t2", "t3", "t4"])
    actual = frame(svc=["a", "b", "d", "e"], owner=["x", "Y", None, "w"], team=["t1", "t9", "t4", "t5"])
    report, rows = detect_drift(desired, actual, ["svc"], ["owner", "team"])
    assert (report.missing, report.unexpected, report.changed, report.unchanged) == (1, 1, 2, 1)
    assert report.columns == {"owner": 2, "team": 1}
    changed = rows[rows.drift_kind == "changed"].set_index("svc")
    assert changed.loc["b", "changed_columns"] == "owner,team"
    assert changed.loc["d", "changed_columns"] == "owner"
    assert changed.loc["d", "desired.owner"] == "q"
    assert pd.isna(changed.loc["d", "actual.owner"])
    assert rows.loc[rows.drift_kind == "missing", "svc"].tolist() == ["c"]
    assert rows.loc[rows.drift_kind == "unexpected", "svc"].tolist() == ["e"]


def test_normalisation_hides_cosmetic_differences_only():
    desired = frame(svc=["a", "b", "c"], owner=["alice", "bob", "carol"])
    actual = frame(svc=["a", "b", "c"], owner=["  ALICE ", "N/A", "dave"])
    report, _ = detect_drift(desired, actual, ["svc"], ["owner"], normalize_steps={"owner": ["trim", "casefold"]})
    assert report.changed == 2  # "N/A" vs bob and dave vs carol are real differences
    report, _ = detect_drift(
        frame(svc=["a"], owner=[""]), frame(svc=["a"], owner=["N/A"]), ["svc"], ["owner"],
        normalize_steps={"owner": ["null_equivalents"]},
    )  # fmt: skip
    assert (report.changed, report.unchanged) == (0, 1)


def test_duplicate_and_null_keys_are_reported_not_joined():
    desired = frame(svc=["a", "a", None, "b"], owner=["x", "y", "z", "q"])
    actual = frame(svc=["a", "b", "b"], owner=["x", "q", "q"])
    report, rows = detect_drift(desired, actual, ["svc"], ["owner"])
    # "a" repeats on the desired side, "b" on the actual side: both keys are held out on both sides,
    # so the clean partner of a repeated key is neither "missing" nor "unexpected".
    assert report.duplicate_keys == {"desired": 3, "actual": 3}
    assert report.null_keys == {"desired": 1, "actual": 0}
    assert (report.missing, report.unexpected, report.changed, report.unchanged) == (0, 0, 0, 0)
    assert len(rows) == 3 + 3 + 1
    assert set(rows.loc[rows.drift_kind == "duplicate_key", "svc"]) == {"a", "b"}


def test_composite_keys():
    desired = frame(team=["t1", "t1", "t2"], svc=["a", "b", "a"], owner=["x", "y", "z"])
    actual = frame(team=["t1", "t2", "t2"], svc=["a", "a", "b"], owner=["x", "zz", "w"])
    report, rows = detect_drift(desired, actual, ["team", "svc"], ["owner"])
    assert (report.missing, report.unexpected, report.changed, report.unchanged) == (1, 1, 1, 1)
    assert rows.loc[rows.drift_kind == "changed", ["team", "svc"]].values.tolist() == [["t2", "a"]]


def test_empty_side_is_valid_input():
    desired = frame(svc=["a", "b"], owner=["x", "y"])
    actual = frame(svc=[], owner=[])
    report, rows = detect_drift(desired, actual, ["svc"], ["owner"])
    assert report.missing == 2
    assert report.actual_rows == 0
    assert len(rows) == 2


def test_missing_key_column_is_named():
    with pytest.raises(ReconcileError, match="actual snapshot has no column"):
        detect_drift(frame(svc=["a"], owner=["x"]), frame(service=["a"], owner=["x"]), ["svc"], ["owner"])


def test_report_to_dict_round_trips_counts():
    report, _ = detect_drift(frame(svc=["a"], owner=["x"]), frame(svc=["a"], owner=["y"]), ["svc"], ["owner"])
    data = report.to_dict()
    assert data["changed"] == 1
    assert data["columns"] == {"owner": 1}
    assert data["sample"][0]["svc"] == "a"


def test_seeded_scenario_drift_matches_planted_cases(scenario):
    desired = pd.DataFrame(scenario.catalog, dtype="string")
    actual = pd.DataFrame(
        [{"service": i["service"], "assignee": i["assignee"], "key": i["key"]} for i in scenario.issues],
        dtype="string",
    )
    report, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["key", "team"])
    planted_changed = scenario.cases["wrong_owner"] + scenario.cases["unassigned"] + scenario.cases["stale_owner"]
    assert sorted(rows.loc[rows.drift_kind == "changed", "service"]) == sorted(planted_changed)
    assert sorted(rows.loc[rows.drift_kind == "missing", "service"]) == scenario.cases["missing_ticket"]
    assert sorted(rows.loc[rows.drift_kind == "unexpected", "service"]) == scenario.cases["orphaned"]
    assert report.unchanged == len(scenario.catalog) - len(planted_changed) - len(scenario.cases["missing_ticket"])


def test_numeric_tolerances_absolute_and_relative():
    desired = pd.DataFrame({"k": ["a", "b", "c"], "amount": [100.0, 100.0, 100.0]})
    actual = pd.DataFrame({"k": ["a", "b", "c"], "amount": [100.004, 100.5, 103.0]})
    report, _ = detect_drift(desired, actual, ["k"], ["amount"], tolerances={"amount": "0.01"})
    assert report.changed == 2
    report, _ = detect_drift(desired, actual, ["k"], ["amount"], tolerances={"amount": "1%"})
    assert report.changed == 1  # only the 3% difference


def test_text_and_numbers_coerce_but_text_stays_text():
    desired = pd.DataFrame({"k": ["a", "b"], "n": ["42", "007"]}, dtype="string")
    actual = pd.DataFrame({"k": ["a", "b"], "n": [42, 7]})
    report, _ = detect_drift(desired, actual, ["k"], ["n"])
    assert report.changed == 0  # a numeric column on one side: "42" equals 42, "007" equals 7
    text = pd.DataFrame({"k": ["a", "b"], "n": ["42", "7"]}, dtype="string")
    report, _ = detect_drift(desired, text, ["k"], ["n"])
    assert report.changed == 1  # text on both sides: "007" is not "7"


def test_uncomparable_types_name_the_column_and_values():
    desired = pd.DataFrame({"k": ["a"], "n": ["lots"]}, dtype="string")
    actual = pd.DataFrame({"k": ["a"], "n": [3]})
    with pytest.raises(ReconcileError, match=r"column 'n' cannot be compared as numbers: the desired side has 'lots'"):
        detect_drift(desired, actual, ["k"], ["n"])


def test_timestamps_across_time_zones_precision_and_duration_tolerance():
    desired = pd.DataFrame({"k": ["a", "b", "c"], "at": ["2026-01-01T10:00:00Z"] * 3}, dtype="string")
    actual = pd.DataFrame(
        {"k": ["a", "b", "c"], "at": ["2026-01-01T12:00:00.000+02:00", "2026-01-01T10:00:40Z", "2026-01-01T11:00:00Z"]},
        dtype="string",
    )
    report, rows = detect_drift(desired, actual, ["k"], ["at"], normalize_steps={"at": ["timestamp"]})
    assert report.changed == 2  # same instant in another zone is equal
    report, rows = detect_drift(desired, actual, ["k"], ["at"], tolerances={"at": "1m"})
    assert rows.loc[rows.drift_kind == "changed", "k"].tolist() == ["c"]
    tz_aware = pd.DataFrame({"k": ["a"], "at": pd.to_datetime(["2026-01-01T10:00:00Z"], utc=True)})
    report, _ = detect_drift(tz_aware, actual.iloc[:1], ["k"], ["at"])
    assert report.changed == 0  # a datetime column on one side parses the other


def test_compare_defaults_to_common_columns_and_exclude_keeps_context():
    desired = pd.DataFrame({"k": ["a"], "x": ["1"], "y": ["2"], "only_desired": ["z"]}, dtype="string")
    actual = pd.DataFrame({"k": ["a"], "x": ["1"], "y": ["3"], "note": ["n"]}, dtype="string")
    report, rows = detect_drift(desired, actual, ["k"])
    assert report.columns == {"x": 0, "y": 1}
    report, rows = detect_drift(desired, actual, ["k"], exclude=["y"])
    assert report.columns == {"x": 0}
    assert report.unchanged == 1
    report, rows = detect_drift(desired, actual, ["k"], ["x"], exclude=["y"])
    assert report.changed == 0


def test_excluded_columns_appear_as_context_in_the_report():
    desired = pd.DataFrame({"k": ["a"], "x": ["1"], "y": ["2"]}, dtype="string")
    actual = pd.DataFrame({"k": ["a"], "x": ["9"], "y": ["3"]}, dtype="string")
    _, rows = detect_drift(desired, actual, ["k"], exclude=["y"])
    assert rows.loc[0, "changed_columns"] == "x"
    assert (rows.loc[0, "desired.y"], rows.loc[0, "actual.y"]) == ("2", "3")


def test_column_map_for_differently_named_fields():
    desired = pd.DataFrame({"service": ["a", "b"], "owner": ["x", "y"]}, dtype="string")
    actual = pd.DataFrame({"svc_name": ["a", "b"], "assignee": ["x", "q"]}, dtype="string")
    report, rows = detect_drift(
        desired, actual, ["service"], ["owner"], column_map={"service": "svc_name", "owner": "assignee"}
    )
    assert report.changed == 1
    assert rows.loc[0, "actual.owner"] == "q"


def test_tolerance_parsing():
    from airflow_reconcile.core.values import Tolerance

    assert Tolerance.parse("0.5") == Tolerance(absolute=0.5)
    assert Tolerance.parse("2%") == Tolerance(relative=0.02)
    assert Tolerance.parse("5m") == Tolerance(seconds=300)
    with pytest.raises(ValueError, match="is not a tolerance"):
        Tolerance.parse("five")


def test_keys_of_any_type_join_as_text():
    desired = pd.DataFrame({"id": [1, 2, 3], "v": ["a", "b", "c"]})
    actual = pd.DataFrame({"id": ["1", "2", "4"], "v": ["a", "x", "d"]}, dtype="string")
    report, _ = detect_drift(desired, actual, ["id"], ["v"])
    assert (report.missing, report.unexpected, report.changed, report.unchanged) == (1, 1, 1, 1)


def test_blank_keys_are_null_keys():
    desired = frame(svc=["a", " "], owner=["x", "y"])
    actual = frame(svc=["a", ""], owner=["x", "z"])
    report, _ = detect_drift(desired, actual, ["svc"], ["owner"])
    assert report.null_keys == {"desired": 1, "actual": 1}
    assert report.unexpected == 0


def test_uuid_keys_match_whatever_case_or_braces_the_text_side_uses():
    import uuid

    ids = [uuid.UUID(int=i * 7919) for i in range(1, 4)]
    desired = pd.DataFrame({"id": ids, "owner": ["a", "b", "c"]})
    actual = pd.DataFrame({"id": [str(ids[0]).upper(), "{" + str(ids[1]) + "}", str(uuid.UUID(int=99))],
                           "owner": ["a", "x", "z"]})  # fmt: skip
    report, rows = detect_drift(desired, actual, ["id"], ["owner"])
    assert (report.changed, report.missing, report.unexpected, report.unchanged) == (1, 1, 1, 1)
    assert rows.loc[rows["drift_kind"] == "changed", "id"].tolist() == [str(ids[1])]
    bad = actual.assign(id=["not-a-uuid", *actual["id"][1:]])
    with pytest.raises(ReconcileError, match="key column 'id' holds UUIDs, but the actual side has 'not-a-uuid'"):
        detect_drift(desired, bad, ["id"], ["owner"])


def test_date_and_timestamp_keys_compare_as_instants():
    import datetime as dt

    desired = pd.DataFrame({"day": [dt.date(2026, 1, 1), dt.date(2026, 1, 2)], "v": ["1", "2"]})
    actual = pd.DataFrame({"day": pd.to_datetime(["2026-01-02", "2026-01-03"]), "v": ["2", "3"]})
    report, rows = detect_drift(desired, actual, ["day"], ["v"])
    assert (report.unchanged, report.missing, report.unexpected) == (1, 1, 1)
    assert sorted(rows["day"]) == ["2026-01-01", "2026-01-03"]
    # Instants across time zones: 10:00+02:00 is 08:00Z.
    zoned = pd.DataFrame({"at": ["2026-01-01T10:00:00+02:00"], "v": ["1"]})
    utc = pd.DataFrame({"at": pd.to_datetime(["2026-01-01 08:00"]).tz_localize("UTC"), "v": ["1"]})
    report, _ = detect_drift(zoned, utc, ["at"], ["v"])
    assert report.unchanged == 1


def test_mixed_case_keys_are_distinct_unless_the_key_is_normalised():
    desired = pd.DataFrame({"svc": ["Billing", "billing ", "Search"], "owner": ["a", "b", "c"]})
    actual = pd.DataFrame({"svc": ["BILLING", "search"], "owner": ["a", "c"]})
    report, _ = detect_drift(desired, actual, ["svc"], ["owner"])
    assert (report.missing, report.unexpected, report.unchanged) == (3, 2, 0)
    # casefold + trim on the key: "Billing" and "billing " become the same key -> held out as duplicates.
    report, _ = detect_drift(desired, actual, ["svc"], ["owner"], normalize_steps={"svc": ["trim", "casefold"]})
    assert report.duplicate_keys == {"desired": 2, "actual": 1}
    assert report.unchanged == 1  # search


def test_an_integer_value_reads_the_same_whatever_other_drift_the_run_has() -> None:
    desired = pd.DataFrame({"id": [1, 2], "size": [5, 6]})
    alone = detect_drift(desired, pd.DataFrame({"id": [2], "size": [6]}), key=["id"])[1]
    with_unexpected = detect_drift(desired, pd.DataFrame({"id": [2, 3], "size": [6, 7]}), key=["id"])[1]
    # Before: the unexpected row has no desired.size, the concatenation made the column floats: "5.0".
    assert alone["desired.size"].tolist() == ["5"]
    assert with_unexpected.set_index("drift_kind")["desired.size"].dropna().tolist() == ["5"]
    assert list(alone.columns) == list(with_unexpected.columns)  # the same columns, whatever the rows


def test_keys_that_differ_only_by_case_or_spaces_get_a_hint():
    desired = pd.DataFrame({"service": ["Billing", "mail ", "search"], "owner": ["a", "b", "c"]})
    actual = pd.DataFrame({"service": ["billing", "Mail", "search"], "owner": ["a", "b", "c"]})
    report, _ = detect_drift(desired, actual, ["service"], ["owner"])
    assert (report.missing, report.unexpected, report.near_keys) == (2, 2, 2)
    assert report.near_key_examples[0] == {"desired": "Billing", "actual": "billing"}
    assert "drift.normalize: {key: [trim, casefold]}" in report.near_key_hint
    normalised, _ = detect_drift(
        desired, actual, ["service"], ["owner"], normalize_steps={"service": ["trim", "casefold"]}
    )
    assert (normalised.missing, normalised.near_keys, normalised.near_key_hint) == (0, 0, None)
