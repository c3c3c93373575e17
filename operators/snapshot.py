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
        from airflow_reconcile.core.scope import input_column, pushdown
        from airflow_reconcile.core.sources import get_source
        from airflow_reconcile.core.sources.base import read_parts
        from airflow_reconcile.core.spec.columns import gate_key_steps
        from airflow_reconcile.provider.lineage import source_location
        from airflow_reconcile.provider.metrics import emit

        source_spec = spec.input_specs()[self.side]
        retry = RetryPolicy.of(spec)
        scope = self.run_scope(context, spec, audit)
        column = input_column(spec, self.side) if scope is not None else None
        ctx = source_context(self.spec_path, source_spec, self.log, retry)
        source = get_source(source_spec.kind)
        pushed = scope is not None and column is not None and pushdown(spec, self.side, column)
        if pushed:
            assert scope is not None
            assert column is not None
            ctx = dataclasses.replace(ctx, scope=(column, tuple(scope.values())))
        # A file is read limits.partition_rows rows at a time, each chunk written as it comes.
        snapshot = read_parts(source, source_spec, ctx, spec.limits.partition_rows)
        # Where it was read from (no credentials): the audit record's input and the lineage input.
        audit.inputs.append(source_location(source_spec.kind, source_spec.options, ctx.connection, snapshot.source))
        frames = snapshot.frames
        counts = {"rows_returned": 0, "rows_in_scope": 0}
        if scope is not None and column is not None:
            steps = gate_key_steps(spec, self.side).get(column, [])

            def in_scope(chunks: Any) -> Any:  # the rows the source returned, then those of the scope's keys
                for chunk in chunks:
                    counts["rows_returned"] += len(chunk)
                    kept = scope.keep(chunk, column, steps)
                    counts["rows_in_scope"] += len(kept)
                    yield kept

            frames = in_scope(frames)
        written = self.workspace(spec, context).write_frames(self.side, frames, lambda: snapshot.schema)
        if scope is not None:
            narrowed = (f"in the {source_spec.kind} read, by {column}" if pushed
                        else f"after reading, by {column}" if column
                        else f"not narrowed: read whole (inputs.{self.side} has no scope_column)")  # fmt: skip
            audit.details["scope_read"] = {**counts, "narrowed": narrowed} if column else {
                "rows_returned": written.rows, "rows_in_scope": written.rows, "narrowed": narrowed}  # fmt: skip
            self.log.info("scoped run (%d keys): %s; %s", len(scope.keys), narrowed, audit.details["scope_read"])
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
