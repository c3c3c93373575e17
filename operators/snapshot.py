"""Read one input's snapshot into the run workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_reconcile.provider.audited import AuditDraft, ReconcileBaseOperator
from airflow_reconcile.provider.hooks import source_context

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_reconcile.core.spec import Spec


class ReadSnapshotOperator(ReconcileBaseOperator):
    """Read one of the spec's inputs and write it as Parquet: ``desired`` (source of record) or ``actual``
    (target) for a side given inline, else an entry of ``inputs``.

    :param input_name: the input (``desired`` / ``actual`` for a side given inline)
    :param side: the 0.2 name of ``input_name`` (``desired`` or ``actual``)
    """

    ui_color = "#e8f4fd"

    def __init__(self, *, input_name: str | None = None, side: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (input_name or side):
            raise ValueError("ReadSnapshotOperator needs input_name (the spec's input to read)")
        self.side = str(input_name or side)  # the input's name: the workspace file, the manifest's "side"

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> dict[str, Any]:
        import dataclasses

        from airflow_reconcile.core.retry import RetryPolicy
        from airflow_reconcile.core.sources import get_source
        from airflow_reconcile.core.sources.base import read_parts
        from airflow_reconcile.core.steps import keep_input, pushed_keys, read_narrowing
        from airflow_reconcile.provider.lineage import source_location
        from airflow_reconcile.provider.metrics import emit

        source_spec = spec.input_specs()[self.side]
        retry = RetryPolicy.of(spec)
        scope = self.run_scope(context, spec, audit)
        ctx = source_context(self.spec_path, source_spec, self.log, retry)
        source = get_source(source_spec.kind)
        column, pushed = read_narrowing(spec, self.side, scope)
        if pushed:  # the source itself reads only the scope's keys
            assert scope is not None
            assert column is not None
            ctx = dataclasses.replace(ctx, scope=(column, pushed_keys(spec, self.side, scope, self.scope_population)))
        # A file is read limits.partition_rows rows at a time, each chunk written as it comes.
        snapshot = read_parts(source, source_spec, ctx, spec.limits.partition_rows)
        # Where it was read from (no credentials): the audit record's input and the lineage input.
        audit.inputs.append(source_location(source_spec.kind, source_spec.options, ctx.connection, snapshot.source))
        frames, scope_read = keep_input(spec, self.side, scope, snapshot.frames, pushed)
        written = self.workspace(spec, context).write_frames(self.side, frames, lambda: snapshot.schema)
        if scope is not None and scope_read is not None:
            audit.details["scope_read"] = scope_read.to_dict()
            self.log.info("scoped run (%d keys): %s; %s", len(scope.keys), scope_read.narrowed, scope_read.to_dict())
        audit.details["retries"] = dict(retry.retried)
        manifest = dataclasses.replace(
            written, meta={"side": self.side, "policy_version": spec.policy_version, **snapshot.meta()}
        )  # the newest value is known once every chunk is read
        self.log.info("%s snapshot: %d rows from %s -> %s", self.side, manifest.rows, snapshot.source, manifest.uri)
        emit("gauge", spec.name, f"rows_read.{self.side}", manifest.rows)
        audit.outputs.append(manifest.to_dict())
        self.set_outlet_extra(
            context,
            {"side": self.side, "uri": manifest.uri, "rows": manifest.rows,
             "content_hash": manifest.content_hash, "policy_version": spec.policy_version},
        )  # fmt: skip
        return manifest.to_dict()
