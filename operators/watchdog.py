"""The watchdog task: alerts for reconciliations that went quiet, queues that grow, sources that stay stale."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_reconcile.core.vocabulary import Mode
from airflow_reconcile.provider.audited import AuditDraft, AuditedTaskMixin
from airflow_reconcile.provider.hooks import DEFAULT_AUDIT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_reconcile.core.spec import Spec
    from airflow_reconcile.core.watchdog import Alert


class ReconcileWatchdogOperator(AuditedTaskMixin, BaseOperator):
    """Check every spec in ``specs_dir`` (see ``airflow_reconcile.core.watchdog``) and alert.

    Alerts go to the task log, the audit record (the plugin's page shows them as banners) and, for
    a spec whose mode is ``apply`` (or that sets ``targets.slack.post_in_shadow``), to its Slack
    digest channel — once per spec, kind and day, so a silence is not repeated every half hour.
    """

    checkpoints = True  # a signed audit checkpoint after each try (it writes to targets / runs periodically)

    template_fields: Sequence[str] = ("specs_dir",)
    ui_color = "#ffe8e8"

    def __init__(self, *, specs_dir: str, audit_conn_id: str = DEFAULT_AUDIT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs_dir = specs_dir
        self.audit_conn_id = audit_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        return self.audited(context, lambda _spec, audit: self._watch(audit))

    def _watch(self, audit: AuditDraft) -> dict[str, Any]:
        from airflow_reconcile.core.spec import load_specs
        from airflow_reconcile.core.watchdog import check
        from airflow_reconcile.provider.hooks import AuditStoreHook

        store = AuditStoreHook(self.audit_conn_id).store
        now = datetime.now(UTC)
        specs, alerts = [], []
        # A spec that does not load: its own DAG shows the error; the others are still watched.
        for spec in load_specs(self.specs_dir, lambda error: self.log.warning("not watched: %s", error)):
            specs.append(spec)
            found = check(spec, store, now)
            alerts.extend(found)
            for alert in found:
                self.log.warning("ALERT %s %s: %s", alert.dag_id, alert.kind, alert.message)
            if found and (spec.mode == Mode.APPLY or spec.targets.slack.post_in_shadow):
                self._post(spec, found, now)
        audit.spec = ",".join(s.name for s in specs)
        audit.policy_version = ",".join(s.policy_version for s in specs)
        audit.details["alerts"] = [a.to_dict() for a in alerts]
        self.log.info("watchdog: %d spec(s), %d alert(s)", len(specs), len(alerts))
        return {"specs": [s.name for s in specs], "alerts": [a.to_dict() for a in alerts]}

    def _post(self, spec: Spec, alerts: list[Alert], now: datetime) -> None:
        from airflow_reconcile.core.actions.slack import SlackExecutor, message_id
        from airflow_reconcile.core.markup import escape_mrkdwn
        from airflow_reconcile.core.retry import RetryPolicy
        from airflow_reconcile.provider.hooks import slack_client

        retry = RetryPolicy.of(spec)
        slack = SlackExecutor(slack_client(spec.targets.slack.connection_id), "", retry)
        for alert in alerts:
            op_id = message_id("watchdog", spec.name, alert.kind, f"{now:%Y-%m-%d}")
            text = f":rotating_light: *{spec.name}* watchdog: {escape_mrkdwn(alert.message)}"
            retry.call(partial(slack.post_once, spec.targets.slack.digest_channel, text, op_id, mrkdwn=True),
                       f"Slack watchdog alert {alert.kind}")  # fmt: skip
