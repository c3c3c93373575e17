"""Keyed diff of the two validated snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_reconcile.provider.audited import AuditDraft, ReconcileBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_reconcile.core.spec import Spec


class DetectDriftOperator(ReconcileBaseOperator):
    """Diff the snapshots from ``desired_task_id`` and ``actual_task_id``; write the drift report.

    :param mode: ``shadow`` or ``apply``, carried in the drift-report asset event (templated)
    """

    template_fields: Sequence[str] = (*ReconcileBaseOperator.template_fields, "mode")
    ui_color = "#f3e8fd"

    def __init__(
        self, *, desired_task_id: str, actual_task_id: str, mode: str = "{{ params.mode }}", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.desired_task_id = desired_task_id
        self.actual_task_id = actual_task_id
        self.mode = mode

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> dict[str, Any]:
        import dataclasses

        from airflow_reconcile.core.pipeline import spec_drift_files
        from airflow_reconcile.provider.metrics import emit_counts

        desired_m = self.pull(context, self.desired_task_id)
        actual_m = self.pull(context, self.actual_task_id)
        audit.inputs.extend([desired_m, actual_m])
        workspace = self.workspace(spec, context)
        scope = self.run_scope(context, spec, audit)
        with self.verified_file(desired_m) as desired, self.verified_file(actual_m) as actual:
            report, written = spec_drift_files(
                spec, desired, actual, lambda parts: workspace.write_frames("drift", parts), self.log.info
            )
            if scope is not None:  # keys on neither side: nothing is planned for them, and the run says so
                import pyarrow.parquet as pq

                def key_column(path: str, side: str) -> Any:
                    column = spec.side(side).key[0]
                    return pq.read_table(path, columns=[column]).column(column).to_pandas()

                unmatched = scope.unmatched(spec, key_column(desired, "desired"), key_column(actual, "actual"))
                audit.details["scope_unmatched"] = {"count": len(unmatched), "keys": unmatched[:50]}
                if unmatched:
                    self.log.warning(
                        "%d of the run's %d key(s) are on neither side (a typo, not created yet, or gone): %s",
                        len(unmatched), len(scope.keys), ", ".join(unmatched[:20]),
                    )  # fmt: skip
            if scope is None:  # a full run: the population later scoped runs' guards are taken against
                import pyarrow.parquet as pq

                from airflow_reconcile.core.scope import key_kind, population_of

                kinds = {side: key_kind(pq.read_schema(path).field(spec.side(side).key[0]).type)
                         for side, path in (("desired", desired), ("actual", actual))}  # fmt: skip
                audit.details["population"] = population_of(report.desired_rows, report.actual_rows, kinds)
        counts = {k: v for k, v in report.to_dict().items() if k != "sample"}
        # The counts are known once every part is written; they describe the file, they are not in it.
        manifest = dataclasses.replace(written, meta={"policy_version": spec.policy_version, **counts})
        self.log.info(
            "drift: %d missing, %d unexpected, %d changed, %d unchanged; duplicate keys %s, null keys %s; "
            "changed per column %s -> %s",
            report.missing, report.unexpected, report.changed, report.unchanged,
            dict(report.duplicate_keys), dict(report.null_keys), dict(report.columns), manifest.uri,
        )  # fmt: skip
        if report.near_key_hint:
            self.log.warning("hint: %s", report.near_key_hint)
        audit.outputs.append(manifest.to_dict())
        audit.details["drift"] = counts
        audit.details["mode"] = self.mode  # the digest reads the mode here, never from the asset event
        emit_counts(
            "gauge", spec.name, "drift", {k: counts[k] for k in ("changed", "missing", "unexpected", "unchanged")}
        )
        self.set_outlet_extra(
            context,
            {"spec": spec.name, "mode": self.mode, "run_id": context["run_id"],
             "uri": manifest.uri, "rows": manifest.rows, "content_hash": manifest.content_hash,
             "policy_version": spec.policy_version, "counts": counts,
             "snapshots": {"desired": desired_m["uri"], "actual": actual_m["uri"]}},
        )  # fmt: skip
        return manifest.to_dict()
