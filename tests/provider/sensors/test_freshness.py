from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_reconcile.core.spec import parse_spec
from airflow_reconcile.core.vocabulary import TaskId
from airflow_reconcile.provider.sensors.freshness import SourceFreshnessSensor
from tests.conftest import SPEC


def sensor_for(tmp_path, monkeypatch, age: timedelta, on_stale: str = "review", freshness: bool = True):
    monkeypatch.setenv("RECONCILE_DATA_DIR", str(tmp_path))
    stamp = (datetime.now(UTC) - age).isoformat()
    (tmp_path / "service_catalog.csv").write_text(f"service,team,assignee,updated_at\nsvc-1,t,a,{stamp}\n")
    text = SPEC.read_text().replace("on_stale: review", f"on_stale: {on_stale}")
    if not freshness:
        start = text.index("    freshness:")
        text = text[:start] + text[text.index("  actual:") :]
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(text)
    sensor = SourceFreshnessSensor(task_id=TaskId.CHECK_FRESHNESS, spec_path=str(spec_path))
    sensor._spec = parse_spec(text, origin=str(spec_path))
    return sensor


def test_fresh_source(tmp_path, monkeypatch):
    result = sensor_for(tmp_path, monkeypatch, timedelta(hours=1)).poke({})
    assert result.is_done
    assert result.xcom_value["stale"] is False
    assert result.xcom_value["max_age"] == "7d"


def test_stale_source_goes_on_flagged_for_review(tmp_path, monkeypatch):
    result = sensor_for(tmp_path, monkeypatch, timedelta(days=8)).poke({})
    assert result.is_done
    assert result.xcom_value["stale"] is True
    assert result.xcom_value["age_seconds"] > 7 * 86400


def test_stale_source_with_wait_keeps_poking(tmp_path, monkeypatch):
    result = sensor_for(tmp_path, monkeypatch, timedelta(days=8), on_stale="wait").poke({})
    assert not result.is_done


def test_no_freshness_configured_is_not_checked(tmp_path, monkeypatch):
    result = sensor_for(tmp_path, monkeypatch, timedelta(days=30), freshness=False).poke({})
    assert result.is_done
    assert result.xcom_value == {"side": "desired", "stale": False, "checked": False}
