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
    :param side: which source to check (default ``desired``, the source of record)
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
        result = super().execute(context)
        audit.details["freshness"] = result
        return result

    def poke(self, context: Context) -> PokeReturnValue:
        from airflow_reconcile.core.retry import RetryPolicy
        from airflow_reconcile.core.sources import get_source
        from airflow_reconcile.provider.hooks import source_context

        source = getattr(self._spec.sources, self.side)
        if source.freshness is None:
            return PokeReturnValue(True, {"side": self.side, "stale": False, "checked": False})
        from airflow_reconcile.core.errors import FreshnessUnreadable

        reading = source_context(self.spec_path, source, self.log, RetryPolicy.of(self._spec))
        unreadable = None
        try:
            newest = get_source(source.kind).newest(source, reading)
        except FreshnessUnreadable as exc:  # its age is unknown: fail closed, and say why it is unknown
            newest, unreadable = None, str(exc)
            self.log.warning("freshness of the %s source is UNREADABLE (treated as stale): %s", self.side, exc)
        now = datetime.now(UTC)
        if newest is None and unreadable is None:
            self.log.warning("%s source cannot tell how fresh it is; treating it as stale", self.side)
        age = (now - newest).total_seconds() if newest else None
        stale = source.freshness.is_stale(newest, now)
        info = {
            "side": self.side,
            "stale": stale,
            "checked": True,
            "newest": newest.isoformat() if newest else None,
            "age_seconds": age,
            "max_age": source.freshness.max_age,
            **({"unreadable": unreadable} if unreadable else {}),
        }
        self.log.info("freshness of the %s source: %s", self.side, info)
        if stale and source.freshness.on_stale == "wait":
            return PokeReturnValue(False)
        return PokeReturnValue(True, info)
