"""Naive times (no offset) are never taken as UTC in silence: a source names its time zone, or the diff stops,
the condition goes to review and the freshness check says "unreadable"."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.errors import FreshnessUnreadable, ReconcileError, SpecError
from airflow_reconcile.core.sources.base import newest_value
from airflow_reconcile.core.spec import parse_spec
from tests.conftest import REPO, SPEC

REPO_PLAN = REPO / "tests" / "data" / "plan"


def sides(desired_time, actual_time):
    desired = pd.DataFrame({"id": ["a"], "seen": [desired_time]})
    actual = pd.DataFrame({"id": ["a"], "seen": [actual_time]})
    return desired, actual


def test_a_naive_time_stops_the_diff_until_its_side_names_a_zone():
    desired, actual = sides("2026-03-01 10:00", "2026-03-01T09:00:00Z")
    with pytest.raises(ReconcileError, match=r"column 'seen' on the desired side has times without a time zone "
                                             r"\(e.g. '2026-03-01 10:00'\).*sources.desired.timezone"):  # fmt: skip
        detect_drift(desired, actual, ["id"], ["seen"], normalize_steps={"seen": ["timestamp"]})
    berlin = {"desired": "Europe/Berlin", "actual": None}
    report, _ = detect_drift(
        desired, actual, ["id"], ["seen"], normalize_steps={"seen": ["timestamp"]}, timezones=berlin
    )
    assert report.changed == 0  # 10:00 in Berlin (winter) is 09:00 UTC
    report, _ = detect_drift(desired, actual, ["id"], ["seen"], normalize_steps={"seen": ["timestamp"]},
                             timezones={"desired": "UTC"})  # fmt: skip
    assert report.changed == 1


def test_naive_datetime_columns_need_a_zone_too_and_dates_do_not():
    naive = pd.DataFrame({"id": ["a"], "seen": pd.to_datetime(["2026-03-01 10:00"])})
    aware = pd.DataFrame({"id": ["a"], "seen": pd.to_datetime(["2026-03-01 09:00"]).tz_localize("UTC")})
    with pytest.raises(ReconcileError, match="without a time zone"):
        detect_drift(naive, naive, ["id"], ["seen"])  # the same on both sides: still two systems' clocks
    assert detect_drift(naive, aware, ["id"], ["seen"], timezones={"desired": "Europe/Berlin"})[0].changed == 0
    days = pd.DataFrame({"id": ["a"], "seen": pd.to_datetime(["2026-03-01"])})
    assert detect_drift(days, days, ["id"], ["seen"])[0].changed == 0  # a date has no zone to give


def test_the_spec_takes_a_time_zone_per_source_and_checks_it():
    text = SPEC.read_text().replace(
        "    key: [service]\n    columns:", "    key: [service]\n    timezone: Europe/Berlin\n    columns:"
    )
    assert parse_spec(text).sources.desired.timezone == "Europe/Berlin"
    with pytest.raises(SpecError, match="'Mars/Olympus' is not a time zone"):
        parse_spec(text.replace("Europe/Berlin", "Mars/Olympus"))


def test_older_than_on_a_naive_time_without_a_zone_goes_to_review():
    from airflow_reconcile.core.rules import _condition_mask
    from airflow_reconcile.core.spec import Condition

    drift = pd.DataFrame({"actual.seen": ["2026-01-01 10:00", "2026-01-01T10:00:00Z"]}, dtype="string")
    condition = Condition.model_validate({"field": "actual.seen", "op": "older_than", "value": "7d"})
    now = datetime(2026, 3, 1, tzinfo=UTC)
    verdict = _condition_mask(drift, condition, now)
    assert verdict.mask.tolist() == [False, True]
    assert (
        verdict.why_not[0]
        == "actual.seen '2026-01-01 10:00' has no time zone; set sources.actual.timezone to the zone it was written in"
    )
    zoned = _condition_mask(drift, condition, now, {"actual": "Europe/Berlin"})
    assert (zoned.mask.tolist(), zoned.unknown.tolist()) == ([True, True], [False, False])


def test_a_freshness_column_that_cannot_be_read_is_unreadable_not_stale():
    frame = pd.DataFrame({"updated_at": ["25/11/2026", "26/11/2026"]})
    with pytest.raises(FreshnessUnreadable, match=r"is unreadable: 2 of 2 value\(s\) do not read as ISO 8601 times"):
        newest_value(frame, "updated_at", "catalog.csv")
    with pytest.raises(FreshnessUnreadable, match="without a time zone"):
        newest_value(pd.DataFrame({"updated_at": ["2026-11-25 10:00"]}), "updated_at", "catalog.csv")
    newest = newest_value(pd.DataFrame({"updated_at": ["2026-11-25 10:00"]}), "updated_at", "x", "Europe/Berlin")
    assert newest == datetime(2026, 11, 25, 9, tzinfo=UTC)


def test_reconcile_plan_says_unreadable(tmp_path):
    from airflow_reconcile.core.pipeline import plan_locally, plan_table
    from airflow_reconcile.core.spec import load_spec

    spec = load_spec(REPO_PLAN / "ownership.yaml")
    catalog = pd.read_csv(REPO_PLAN / "service_catalog.csv", dtype=str).assign(updated_at="25/11/2026")
    catalog.to_csv(tmp_path / "catalog.csv", index=False)
    result = plan_locally(spec, str(REPO_PLAN / "ownership.yaml"), str(tmp_path / "catalog.csv"),
                          str(REPO_PLAN / "jira_export.csv"))  # fmt: skip
    assert result.stale
    assert "source of record is UNREADABLE (" in plan_table(result)
    assert set(result.plan[result.plan.rule.str.startswith("assign")].autonomy) == {"review"}
