"""OpenLineage for reconciliation tasks, and the trace id shared by a try's audit record and its events.

Every operator returns its lineage from ``get_openlineage_facets_on_complete`` (and ``_on_failure``),
built from what the task put in its audit record:

- inputs and outputs: a snapshot's source (a file, a database, a Jira instance, an HTTP API) and the
  snapshots, drift reports, plans and outcomes in the run workspace. A workspace file is reported under
  its stable name (``<root>/<spec>/snapshot_desired``, the asset's location), not its per-run path, so
  a lineage graph has one node per dataset; the run's file is its version (the content hash);
- facets: row counts (input/output statistics), the schema, the quality gate's assertions and metrics,
  and a ``reconcile`` run facet with the spec, policy version, drift counts, plan summary, outcomes and
  the audit record's hash.

The OpenLineage run id of a task try is deterministic (the provider derives it from the DAG, task,
try, map index and the run's logical date): ``trace_id`` computes the same id, and every audit record
carries it, so an event and its audit record find each other both ways.

Lineage is a side channel: nothing here ever fails a task (errors are logged and the event goes
without our facets). Without ``apache-airflow-providers-openlineage`` nothing is emitted.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import attr

log = logging.getLogger(__name__)

PRODUCER = "https://github.com/airflow-reconcile/airflow-reconcile"
RUN_FACET_SCHEMA = PRODUCER + "/blob/main/docs/lineage/ReconcileRunFacet.json#/$defs/ReconcileRunFacet"
# Workspace files by the asset they are a version of (the rest keep their own name).
STABLE_NAMES = {"desired": "snapshot_desired", "actual": "snapshot_actual", "drift": "drift_report"}
# Audit details that belong in the run facet (counts and summaries, never rows or payloads).
RUN_DETAILS = ("drift", "plan", "outcomes", "guard", "freshness", "mode", "scope", "scope_read", "scope_unmatched")


def trace_id(dag_id: str, task_id: str, try_number: int, map_index: int, when: datetime | None) -> str | None:
    """The OpenLineage run id of this task try (the provider's own derivation); ``when`` is the DAG
    run's logical date, or its ``run_after`` when it has none. A uuid5 of the same parts without the provider."""
    if when is None:
        return None
    try:
        from airflow.providers.openlineage.plugins.adapter import OpenLineageAdapter
    except ImportError:
        name = f"{dag_id}.{task_id}.{try_number}.{map_index}.{when.isoformat()}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    return str(
        OpenLineageAdapter.build_task_instance_run_id(
            dag_id=dag_id, task_id=task_id, try_number=try_number, logical_date=when, map_index=map_index
        )
    )


def run_date(dag_run: Any) -> datetime | None:
    """The date the provider derives run ids from: the logical date, else ``run_after``."""
    if dag_run is None:
        return None
    return getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) by OpenLineage's naming: ``file`` + path for local files, ``scheme://authority``
    + path otherwise (``s3://bucket`` + ``/key``). Credentials and query strings never appear."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return "file", parts.path
    host = parts.hostname or ""
    authority = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{authority}", parts.path or "/"


def manifest_dataset(uri: str, snapshot: str | None = None) -> tuple[str, str]:
    """A workspace file (``<root>/<spec>/<run_id>/<name>.parquet``) under its stable name: the snapshot of an
    input or a derived side (``snapshot``, the manifest's ``meta.side``) as ``snapshot_<name>``, as its asset."""
    namespace, name = dataset_name(uri)
    path = PurePosixPath(name)
    if path.suffix != ".parquet" or len(path.parts) < 3:
        return namespace, name
    stable = f"snapshot_{snapshot}" if snapshot else STABLE_NAMES.get(path.stem, path.stem)
    return namespace, str(path.parent.parent / stable)


def source_location(
    kind: str, options: Mapping[str, Any], connection: Mapping[str, Any] | None, source: str
) -> dict[str, Any]:
    """Where a snapshot was read from, for the audit record's inputs and the lineage input (no secrets).

    ``source`` is what the source reported (a file's resolved URI, an HTTP source's URL).
    """
    connection = connection or {}
    if kind in ("file", "http"):
        namespace, name = dataset_name(source)
    elif kind == "sql":  # a query, named by its hash (its text is in the spec)
        query = hashlib.sha256(str(options.get("query") or "").encode()).hexdigest()[:12]
        namespace, name = _database(str(connection.get("url") or "")), f"query:{query}"
    elif kind == "jira":  # the server's URL (scheme, host, port) and the JQL
        server = str(connection.get("server") or "")
        namespace, name = dataset_name(server)[0] if "://" in server else "jira", str(options.get("jql") or "")
    else:
        namespace, name = kind, source
    return {"source": kind, "namespace": namespace, "name": name}


def _database(url: str) -> str:
    """``postgres://host:port/db`` for a SQLAlchemy URL, without user or password."""
    if not url:
        return "sql"
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"sqlite://{parsed.database or ':memory:'}"
    backend = "postgres" if backend == "postgresql" else backend
    port = f":{parsed.port}" if parsed.port else ""
    return f"{backend}://{parsed.host or 'localhost'}{port}/{parsed.database or ''}"


def operator_lineage(record: Mapping[str, Any] | None) -> Any:
    """The ``OperatorLineage`` of one task try from its audit record (``AuditRecord.to_dict`` plus
    ``record_hash``); an empty one when there is none or it cannot be built."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    if not record:
        return OperatorLineage()
    try:
        return _lineage(record)
    except Exception:  # noqa: BLE001 - a side channel never fails the task
        log.warning("lineage for %s could not be built; the event goes without it", record.get("task_id"),
                    exc_info=True)  # fmt: skip
        return OperatorLineage()


def _lineage(record: Mapping[str, Any]) -> Any:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.base import InputDataset, OutputDataset
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )
    from openlineage.client.generated.data_quality_metrics_input_dataset import DataQualityMetricsInputDatasetFacet
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.input_statistics_input_dataset import InputStatisticsInputDatasetFacet
    from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet
    from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields

    def facets(manifest: Mapping[str, Any]) -> dict[str, Any]:
        columns = manifest.get("columns") or {}
        found: dict[str, Any] = {"version": DatasetVersionDatasetFacet(datasetVersion=str(manifest["content_hash"]))}
        if columns:
            found["schema"] = SchemaDatasetFacet(
                fields=[SchemaDatasetFacetFields(name=str(c), type=str(t)) for c, t in columns.items()]
            )
        return found

    details = record.get("details") or {}
    inputs = []
    for item in record.get("inputs") or []:
        if "source" in item:  # where a snapshot was read from
            inputs.append(InputDataset(namespace=item["namespace"], name=item["name"]))
            continue
        if "uri" not in item:
            continue
        namespace, name = manifest_dataset(str(item["uri"]), (item.get("meta") or {}).get("side"))
        rows = int(item.get("rows", 0))
        input_facets: dict[str, Any] = {"inputStatistics": InputStatisticsInputDatasetFacet(rowCount=rows)}
        quality = details.get("quality")
        if quality and item.get("meta", {}).get("side") == quality.get("side"):
            input_facets["dataQualityAssertions"] = DataQualityAssertionsDatasetFacet(
                assertions=[
                    Assertion(
                        assertion=r["expectation"],
                        success=bool(r["success"]),
                        column=r.get("column"),
                        severity="error" if r.get("blocking", True) else "warn",
                        actual=None if r.get("unexpected_count") is None else str(r["unexpected_count"]),
                    )
                    for r in quality.get("results", [])
                ]  # fmt: skip
            )
            input_facets["dataQualityMetrics"] = DataQualityMetricsInputDatasetFacet(columnMetrics={}, rowCount=rows)
        inputs.append(InputDataset(namespace=namespace, name=name, facets=facets(item), inputFacets=input_facets))
    outputs = []
    for item in record.get("outputs") or []:
        if "uri" not in item:
            continue
        namespace, name = manifest_dataset(str(item["uri"]), (item.get("meta") or {}).get("side"))
        stats = OutputStatisticsOutputDatasetFacet(rowCount=int(item.get("rows", 0)))
        outputs.append(
            OutputDataset(namespace=namespace, name=name, facets=facets(item), outputFacets={"outputStatistics": stats})
        )
    run = ReconcileRunFacet(
        spec=str(record.get("spec") or ""),
        policyVersion=str(record.get("policy_version") or ""),
        outcome=str(record.get("outcome") or ""),
        auditRecord=record.get("record_hash"),
        traceId=record.get("trace_id"),
        details={k: details[k] for k in RUN_DETAILS if k in details},
    )
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets={"reconcile": run})


def _run_facet_base() -> Any:
    try:
        from openlineage.client.generated.base import RunFacet
    except ImportError:  # without the OpenLineage client, a plain base (the facet is never emitted)
        return object
    return RunFacet


@attr.define
class ReconcileRunFacet(_run_facet_base()):  # type: ignore[misc]
    """What a reconciliation task decided, next to the OpenLineage run (schema: docs/lineage)."""

    spec: str
    policyVersion: str  # noqa: N815 - OpenLineage facets are camelCase
    outcome: str
    auditRecord: str | None = None  # noqa: N815 - the hash of this try's audit record
    traceId: str | None = None  # noqa: N815 - the OpenLineage run id, as the audit record holds it
    details: dict[str, Any] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return RUN_FACET_SCHEMA
