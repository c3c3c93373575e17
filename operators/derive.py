"""Compute a derived side from the run's checked input snapshots (DuckDB, in process, sandboxed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_reconcile.provider.audited import AuditDraft, ReconcileBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_reconcile.core.spec import Spec


class DeriveSideOperator(ReconcileBaseOperator):
    """Run ``sources.<side>.derive.sql`` over the snapshots of its inputs and write the result as the side's
    snapshot (a manifest with its hash and rows; the inputs' manifests are the audit record's inputs and the
    lineage inputs). Its own quality gate runs after it, as an input's does.

    :param side: ``desired`` or ``actual``
    :param input_task_ids: for each input the SQL reads, the task whose XCom holds its manifest
    """

    ui_color = "#e8fdf0"

    def __init__(self, *, side: str, input_task_ids: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.side = side
        self.input_task_ids = dict(input_task_ids)

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> dict[str, Any]:
        import dataclasses
        from contextlib import ExitStack

        from airflow_reconcile.core.derive import DeriveError
        from airflow_reconcile.core.steps import derive_side
        from airflow_reconcile.provider.compat import AirflowFailException

        manifests = {name: self.pull(context, task_id) for name, task_id in self.input_task_ids.items()}
        audit.inputs.extend(manifests.values())
        scope = self.run_scope(context, spec, audit)
        with ExitStack() as stack:
            # Each input's checked snapshot file, read in place by DuckDB (only the columns the SQL needs).
            tables = {name: stack.enter_context(self.verified_file(m)) for name, m in manifests.items()}
            try:  # in a scoped run the side holds the scope's keys only, whatever its inputs held
                frame, scope_read = derive_side(spec, self.spec_path, self.side, tables, scope, self.log.info)
            except DeriveError as exc:
                # The same SQL on the same snapshots fails the same way: no retry.
                raise AirflowFailException(str(exc)) from None
        if scope_read is not None:
            audit.details["scope_read"] = scope_read.to_dict()
        written = self.workspace(spec, context).write_frames(self.side, iter([frame]))
        manifest = dataclasses.replace(written, meta={
            "side": self.side, "policy_version": spec.policy_version,
            "derived_from": {name: m["content_hash"] for name, m in manifests.items()},
        })  # fmt: skip
        self.log.info(
            "%s derived: %d rows from %s -> %s", self.side, manifest.rows,
            ", ".join(f"{n} ({m['rows']} rows)" for n, m in manifests.items()), manifest.uri,
        )  # fmt: skip
        audit.outputs.append(manifest.to_dict())
        self.set_outlet_extra(
            context,
            {"side": self.side, "uri": manifest.uri, "rows": manifest.rows, "content_hash": manifest.content_hash,
             "policy_version": spec.policy_version, "derived_from": sorted(manifests)},
        )  # fmt: skip
        return manifest.to_dict()
