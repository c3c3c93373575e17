"""The quality gate as a task: fails closed, before anything downstream can act."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_reconcile.provider.audited import AuditDraft, ReconcileBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_reconcile.core.spec import Spec


class ValidateSnapshotOperator(ReconcileBaseOperator):
    """Run the Great Expectations gate on a snapshot written by ``snapshot_task_id``.

    :param side: what the snapshot is: an input (``desired`` / ``actual`` for a side given inline), or a
        derived side
    :param snapshot_task_id: the task whose XCom holds the snapshot manifest
    """

    ui_color = "#fdf3e8"

    def __init__(self, *, side: str, snapshot_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.side = side
        self.snapshot_task_id = snapshot_task_id

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> dict[str, Any]:
        from airflow_reconcile.core.quality import run_quality_gate_on_file
        from airflow_reconcile.core.spec.columns import SCOPED_BOUNDS, gate, gate_key, gate_key_steps
        from airflow_reconcile.provider.compat import AirflowFailException

        manifest = self.pull(context, self.snapshot_task_id)
        audit.inputs.append(manifest)
        scoped = self.run_scope(context, spec, audit) is not None
        checks = gate(spec, self.side, scoped)
        if scoped:
            audit.details["row_count_bounds"] = SCOPED_BOUNDS
            self.log.info("scoped run: the row-count bounds are %s", SCOPED_BOUNDS)
        with self.verified_file(manifest) as path:  # larger than limits.partition_rows: checked in chunks
            result = run_quality_gate_on_file(
                path, gate_key(spec, self.side), checks, self.side, spec.limits.partition_rows,
                self.log.info, gate_key_steps(spec, self.side),
            )  # fmt: skip
        self.log.info("quality gate for the %s snapshot (%d rows):\n%s", self.side, result.rows, result.table())
        audit.details["quality"] = result.to_dict()
        if result.warnings:
            self.log.warning(
                "key problems of %s let through to review (key_problems: review): %s",
                self.side, "; ".join(f"{r.expectation}({r.column}) {r.unexpected_count} rows" for r in result.warnings),
            )  # fmt: skip
        if not result.success:
            failed = "; ".join(f"{r.expectation}({r.column or 'table'})" for r in result.failures)
            # Bad data is final: retrying the gate on the same snapshot cannot pass.
            raise AirflowFailException(
                f"quality gate failed for the {self.side} snapshot ({manifest['uri']}): {failed}. "
                "No action was taken; fix the source and re-run."
            )
        return {"side": self.side, "success": True, "rows": result.rows, "checks": len(result.results)}
