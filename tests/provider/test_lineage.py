"""OpenLineage datasets and facets from a task's audit record, and the trace id they share."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from openlineage.client.serde import Serde

from airflow_reconcile.provider.lineage import manifest_dataset, operator_lineage, source_location, trace_id

WORKSPACE = "file:///srv/reconcile/ticket_ownership/manual__2026-11-26T10:00:00+00:00"


def manifest(name, rows, side=None, columns=None):
    meta = {"side": side} if side else {}
    return {"uri": f"{WORKSPACE}/{name}.parquet", "rows": rows, "content_hash": f"hash-{name}",
            "columns": columns or {"service": "string"}, "meta": meta}  # fmt: skip


def record(**overrides):
    base = {"dag_id": "reconcile_x", "task_id": "t", "spec": "ticket_ownership", "policy_version": "pv1",
            "outcome": "success", "inputs": [], "outputs": [], "details": {}, "record_hash": "abc", "trace_id": "tid"}  # fmt: skip
    return {**base, **overrides}


def as_json(lineage):
    """What the file transport writes: the facets as OpenLineage JSON."""

    def one(value):
        return json.loads(Serde.to_json(value))

    return {"inputs": [one(d) for d in lineage.inputs], "outputs": [one(d) for d in lineage.outputs],
            "run": {k: one(v) for k, v in lineage.run_facets.items()}}  # fmt: skip


def test_workspace_files_are_reported_under_their_stable_asset_names_with_the_run_file_as_version():
    assert manifest_dataset(f"{WORKSPACE}/desired.parquet") == (
        "file",
        "/srv/reconcile/ticket_ownership/snapshot_desired",
    )
    assert manifest_dataset(f"{WORKSPACE}/drift.parquet") == ("file", "/srv/reconcile/ticket_ownership/drift_report")
    assert manifest_dataset(f"{WORKSPACE}/plan.parquet") == ("file", "/srv/reconcile/ticket_ownership/plan")
    assert manifest_dataset("s3://bucket/root/spec/run/actual.parquet") == ("s3://bucket", "/root/spec/snapshot_actual")

    lineage = operator_lineage(record(inputs=[manifest("desired", 3, "desired")], outputs=[manifest("drift", 2)]))
    data = as_json(lineage)
    [source], [out] = data["inputs"], data["outputs"]
    assert source["inputFacets"]["inputStatistics"]["rowCount"] == 3
    assert source["facets"]["version"]["datasetVersion"] == "hash-desired"
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert [(f["name"], f["type"]) for f in out["facets"]["schema"]["fields"]] == [("service", "string")]


def test_the_quality_gate_reports_its_assertions_on_the_snapshot_it_checked():
    quality = {"side": "desired", "rows": 3, "success": False, "results": [
        {"expectation": "expect_column_values_to_not_be_null", "column": "assignee", "success": False,
         "unexpected_count": 2, "blocking": True},
        {"expectation": "expect_table_row_count_to_be_between", "column": None, "success": True, "blocking": True},
    ]}  # fmt: skip
    data = as_json(operator_lineage(record(inputs=[manifest("desired", 3, "desired")], details={"quality": quality})))
    facets = data["inputs"][0]["inputFacets"]
    assertions = [(a["assertion"], a["success"], a.get("column"), a.get("actual"))
                  for a in facets["dataQualityAssertions"]["assertions"]]  # fmt: skip
    assert assertions == [
        ("expect_column_values_to_not_be_null", False, "assignee", "2"),
        ("expect_table_row_count_to_be_between", True, None, None),
    ]
    assert facets["dataQualityMetrics"]["rowCount"] == 3
    # The other side's snapshot gets no assertions it was not checked by.
    other = as_json(operator_lineage(record(inputs=[manifest("actual", 3, "actual")], details={"quality": quality})))
    assert "dataQualityAssertions" not in other["inputs"][0]["inputFacets"]


def test_the_run_facet_carries_counts_and_links_the_audit_record_never_payloads():
    details = {"drift": {"changed": 4, "missing": 1}, "outcomes": {"applied": 4},
               "operations": [{"params": {"assignee": "ann"}}], "trigger": {"user": "admin"}}  # fmt: skip
    facet = as_json(operator_lineage(record(details=details)))["run"]["reconcile"]
    assert facet["auditRecord"] == "abc"
    assert facet["traceId"] == "tid"
    assert facet["details"] == {"drift": {"changed": 4, "missing": 1}, "outcomes": {"applied": 4}}
    assert facet["_schemaURL"].endswith("ReconcileRunFacet.json#/$defs/ReconcileRunFacet")


def test_sources_are_named_without_credentials():
    sql = source_location("sql", {"query": "select 1"}, {"url": "postgresql+psycopg://bot:s3cret@db.example:5432/cmdb"},
                          "sql")  # fmt: skip
    assert sql["namespace"] == "postgres://db.example:5432/cmdb"
    assert sql["name"].startswith("query:")
    http = source_location("http", {}, {}, "https://user:pw@api.example/v1/services?token=t0k")
    assert (http["namespace"], http["name"]) == ("https://api.example", "/v1/services")
    jira = source_location("jira", {"jql": "project = OPS"}, {"server": "https://jira.example:8443/"}, "jira")
    assert (jira["namespace"], jira["name"]) == ("https://jira.example:8443", "project = OPS")
    local = source_location("file", {}, None, "file:///data/catalog.csv")
    assert (local["namespace"], local["name"]) == ("file", "/data/catalog.csv")
    assert "s3cret" not in json.dumps([sql, http, jira, local])
    assert "pw" not in json.dumps(http)
    assert "t0k" not in json.dumps(http)


def test_a_record_that_cannot_be_described_gives_an_empty_lineage_not_an_error():
    broken = record(outputs=[{"uri": f"{WORKSPACE}/x.parquet", "rows": "many", "content_hash": "h"}])
    lineage = operator_lineage(broken)
    assert (lineage.inputs, lineage.outputs, lineage.run_facets) == ([], [], {})
    assert operator_lineage(None).inputs == []


def test_the_trace_id_is_the_run_id_openlineage_gives_the_try():
    from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter

    when = datetime(2026, 11, 26, 10, tzinfo=UTC)
    expected = OpenLineageAdapter.build_task_instance_run_id(
        dag_id="d", task_id="t", try_number=2, logical_date=when, map_index=-1
    )
    assert trace_id("d", "t", 2, -1, when) == expected
    assert trace_id("d", "t", 3, -1, when) != expected  # every try its own
    assert trace_id("d", "t", 2, -1, None) is None


def test_a_workspace_file_is_the_dataset_openlineage_makes_of_its_asset():
    # The assets' file:// URIs convert through the common.io provider's converter; a run's files must
    # name the same datasets, or a lineage graph would show the asset and the file as two nodes.
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset

    from airflow_reconcile.core.locations import workspace_root
    from airflow_reconcile.core.workspace import Workspace
    from airflow_reconcile.provider.dag_factory import drift_report_asset, plan_asset, snapshot_asset

    run = Workspace(root=workspace_root(), spec_name="ticket_ownership", run_id="manual__2026-11-26T10:00:00+00:00")
    for asset, name in ((snapshot_asset("ticket_ownership", "desired"), "desired"),
                        (snapshot_asset("ticket_ownership", "actual"), "actual"),
                        (drift_report_asset("ticket_ownership"), "drift"), (plan_asset("ticket_ownership"), "plan")):  # fmt: skip
        converted = translate_airflow_asset(asset, None)
        assert converted is not None, asset.uri
        assert (converted.namespace, converted.name) == manifest_dataset((run.directory / f"{name}.parquet").as_uri())
