"""Is the source of record fresh enough to drive automatic corrections?"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_reconcile.provider.audited import AuditDraft, AuditedTaskMixin
from airflow_reconcile.provider.hooks import DEFAULT_AUDIT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_reconcile.core.spec import Spec


class SourceFreshnessSensor(AuditedTaskMixin, BaseSensorOperator):
    """Check a source against its ``freshness.max_age``.

    With ``on_stale: review`` (default) the sensor succeeds at once and reports ``stale: true`` in
    XCom, so the rules task downgrades automatic decisions to review: stale context never drives
    an automatic write. With ``on_stale: wait`` it keeps poking until the source is fresh or the
    sensor times out.

    :param spec_path: path of the reconciliation spec (templated)
    :param side: whose inputs to check (default ``desired``, the source of record: the input it is, or every
        input its derive reads that declares ``freshness``; stale when any is)
    """

    template_fields: Sequence[str] = ("spec_path",)
    spec_path: str  # one spec per task (the mixin's None is for tasks that serve several)
    ui_color = "#fffbe8"

    def __init__(
        self,
        *,
        spec_path: str,
        side: Literal["desired", "actual"] = "desired",
        audit_conn_id: str = DEFAULT_AUDIT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.side = side
        self.audit_conn_id = audit_conn_id

    def execute(self, context: Context) -> Any:
        return self.audited(context, lambda spec, audit: self._sense(context, spec, audit))

    def _sense(self, context: Context, spec: Spec, audit: AuditDraft) -> Any:
        self._spec = spec
        # The first task: a run scope (run parameter keys) that cannot be used stops the run here, before
        # anything is read.
        self.run_scope(context, spec, audit)
        result = super().execute(context)
        audit.details["freshness"] = result
        return result

    def poke(self, context: Context) -> PokeReturnValue:
        inputs = self._spec.input_specs()
        checked = {name: f for name in self._spec.side_inputs(self.side) if (f := inputs[name].freshness) is not None}
        if not checked:
            return PokeReturnValue(True, {"side": self.side, "stale": False, "checked": False})
        infos = [self._check(name) for name in checked]
        stale = any(info["stale"] for info in infos)
        if any(info["stale"] and checked[info["input"]].on_stale == "wait" for info in infos):
            return PokeReturnValue(False)
        # One input (a side given inline, or one input): its fields, as before; several: each under inputs.
        info = dict(infos[0]) if len(infos) == 1 else {"side": self.side, "checked": True, "inputs": infos}
        info["stale"] = stale
        return PokeReturnValue(True, info)

    def _check(self, name: str) -> dict[str, Any]:
        from airflow_reconcile.core.errors import FreshnessUnreadable
        from airflow_reconcile.core.retry import RetryPolicy
        from airflow_reconcile.core.sources import get_source
        from airflow_reconcile.provider.hooks import source_context

        source = self._spec.input_specs()[name]
        assert source.freshness is not None
        label = self.side if name == self.side else f"{self.side} input {name}"
        reading = source_context(self.spec_path, source, self.log, RetryPolicy.of(self._spec))
        unreadable = None
        try:
            newest = get_source(source.kind).newest(source, reading)
        except FreshnessUnreadable as exc:  # its age is unknown: fail closed, and say why it is unknown
            newest, unreadable = None, str(exc)
            self.log.warning("freshness of the %s source is UNREADABLE (treated as stale): %s", label, exc)
        now = datetime.now(UTC)
        if newest is None and unreadable is None:
            self.log.warning("%s source cannot tell how fresh it is; treating it as stale", label)
        age = (now - newest).total_seconds() if newest else None
        info = {
            "side": self.side,
            "input": name,
            "stale": source.freshness.is_stale(newest, now),
            "checked": True,
            "newest": newest.isoformat() if newest else None,
            "age_seconds": age,
            "max_age": source.freshness.max_age,
            **({"unreadable": unreadable} if unreadable else {}),
        }
        self.log.info("freshness of the %s source: %s", label, info)
        return info
