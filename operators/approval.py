"""Ask a person to approve the plan's ``approve`` actions, in Airflow's Required Actions (human in the loop)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.bases.notifier import BaseNotifier

from airflow_reconcile.core.vocabulary import DECISIONS, Decision, Mode, Status
from airflow_reconcile.provider.audited import AuditDraft, AuditedTaskMixin, run_mode
from airflow_reconcile.provider.hooks import DEFAULT_AUDIT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_reconcile.core.ledger import Ledger
    from airflow_reconcile.core.spec import Spec

REQUEST_KEY = "approval_request"


class _BestEffort(BaseNotifier):
    """A notifier whose failure is logged, not raised: Slack being down must not block an approval."""

    def __init__(self, inner: BaseNotifier) -> None:
        super().__init__()
        self.inner = inner

    def notify(self, context: Any) -> None:  # pragma: no cover - __call__ is what HITLOperator uses
        self.inner.notify(context)

    def __call__(self, *args: Any) -> None:
        try:
            self.inner(*args)
        except Exception as exc:  # noqa: BLE001 - the request stays open in the UI either way
            self.log.warning("could not notify about the approval request: %s", exc)


def _literal_slack_notifier() -> type:
    from airflow.providers.slack.notifications.slack import SlackNotifier

    class LiteralSlackNotifier(SlackNotifier):
        """Sends its text as is: a run id or data in it is never rendered as a template."""

        template_fields = ()

    return LiteralSlackNotifier


class RequestApprovalOperator(AuditedTaskMixin, ApprovalOperator):
    """Wait for a person to approve or reject the plan's ``approve`` actions.

    In apply mode, the operations at autonomy ``approve`` that no one has decided on yet are shown in
    Airflow's Required Actions with a summary of the plan, and the task waits (``awaiting_input``).
    **Approve** marks them approved in the ledger and lets ``apply_approved`` apply them; **Reject**
    records them as rejected and skips it; no answer within the timeout sends them to review. Shadow
    mode asks nothing (the task is skipped). With nothing to ask, the task ends at once and
    ``apply_approved`` applies any operation approved earlier but not applied yet.

    :param spec_path: path of the reconciliation spec (templated)
    :param plan_task_id: the task whose XCom holds the plan's manifest
    :param mode: ``shadow`` or ``apply`` (templated; the DAG passes ``{{ params.mode }}``)
    :param approval_timeout: how long to wait for an answer, e.g. ``4h`` (templated; default the spec's
        ``approval.timeout``, overridable per run in the trigger form)
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "spec_path", "mode", "approval_timeout")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        spec_path: str,
        plan_task_id: str,
        mode: str = "{{ params.mode }}",
        approval_timeout: str = "{{ params.approval_timeout }}",
        audit_conn_id: str = DEFAULT_AUDIT_CONN_ID,
        workspace_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Approve reconciliation actions")
        super().__init__(**kwargs)
        self.spec_path, self.plan_task_id, self.mode = spec_path, plan_task_id, mode
        self.approval_timeout = approval_timeout
        self.audit_conn_id, self.workspace_root = audit_conn_id, workspace_root

    def _ledger(self, spec: Spec, context: Context) -> Ledger:
        from airflow_reconcile.core.ledger import Ledger

        # The try's own audit store (the one its record goes to): one store per try.
        return Ledger(self._store, spec=spec.name, dag_id=self.dag_id, run_id=context["run_id"])

    def execute(self, context: Context) -> Any:
        return self.audited(context, lambda spec, audit: self._request(context, spec, audit))

    def _request(self, context: Context, spec: Spec, audit: AuditDraft) -> Any:
        from airflow_reconcile.core.approval import pending_approval, request_text
        from airflow_reconcile.core.spec import approval_timeout
        from airflow_reconcile.provider.compat import (
            AIRFLOW_VERSION,
            AirflowFailException,
            AirflowSkipException,
            approvals_cannot_wait,
        )

        if run_mode(self.mode) == Mode.SHADOW:
            raise AirflowSkipException("shadow mode: nothing is applied, so nothing needs approval")
        try:
            wait = timedelta(seconds=approval_timeout(str(self.approval_timeout or spec.approval.timeout)))
        except ValueError as exc:
            raise AirflowFailException(f"approval_timeout: {exc}") from None
        plan_m = self.pull(context, self.plan_task_id)
        audit.inputs.append({k: v for k, v in plan_m.items() if k != "summary"})
        request, statuses = pending_approval(self.read_frame(plan_m), self._ledger(spec, context))
        manifest = self.workspace(spec, context).write(REQUEST_KEY, request, policy_version=spec.policy_version)
        asked = request[request["ledger_status"] == Status.AWAITING_APPROVAL]
        audit.outputs.append(manifest.to_dict())
        audit.details.update(approval={"asked": len(asked), "statuses": statuses})
        self.log.info("approval: %d operation(s) to ask about; ledger statuses of all: %s", len(asked), statuses)
        if asked.empty:
            return {**manifest.to_dict(), "decision": "nothing to ask", "asked": 0}
        context["ti"].xcom_push(key=REQUEST_KEY, value=manifest.to_dict())
        if approvals_cannot_wait():
            self.log.warning(
                "airflow dags test on Airflow %s cannot wait for an answer (its in-process runner cannot serve "
                "the approval's trigger; Airflow 3.3 can): the request ends as on a timeout",
                ".".join(map(str, AIRFLOW_VERSION)),
            )
            return self._decide(context, spec, audit, manifest.to_dict(), "timeout", {})
        until = datetime.now(UTC) + wait
        self.subject, self.body = request_text(
            asked, spec_name=spec.name, policy_version=spec.policy_version, run_id=context["run_id"],
            until=until, uri=manifest.uri,
        )  # fmt: skip
        self.response_timeout = wait
        if spec.approval.assigned_users:
            self.assigned_users = [{"id": user, "name": user} for user in spec.approval.assigned_users]
        if spec.approval.notify_channel:
            self.notifiers = [_BestEffort(self._slack_notifier(spec, context, len(asked), until))]
        self.log.info("waiting for an answer in Required Actions until %s UTC", f"{until:%Y-%m-%d %H:%M}")
        return super().execute(context)  # parks the task until someone answers or the timeout passes

    def _slack_notifier(self, spec: Spec, context: Context, count: int, until: datetime) -> BaseNotifier:
        from airflow_reconcile.core.markup import escape_mrkdwn, mrkdwn_entities

        try:  # a link's URL: only & < > are escaped (anything more would break the URL)
            link = mrkdwn_entities(self.generate_link_to_ui(task_instance=context["ti"]))
            answer = f"<{link}|answer in Airflow>"
        except ValueError:  # no api.base_url configured
            answer = f"answer in Airflow: DAG {self.dag_id}, run {escape_mrkdwn(context['run_id'])}, Required Actions"
        text = (
            f":raised_hand: *{spec.name}*: {count} action{'s' if count != 1 else ''} wait for approval "
            f"until {until:%Y-%m-%d %H:%M} UTC; {answer}"
        )
        notifier: BaseNotifier = _literal_slack_notifier()(slack_conn_id=spec.targets.slack.connection_id,
                                     channel=spec.approval.notify_channel, text=text)  # fmt: skip
        return notifier

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        return self.audited(context, lambda spec, audit: self._answered(context, spec, audit, event))

    def _answered(self, context: Context, spec: Spec, audit: AuditDraft, event: dict[str, Any]) -> Any:
        from airflow.providers.standard.exceptions import HITLTimeoutError

        manifest = self.pull(context, self.task_id, key=REQUEST_KEY)
        try:
            # The base class validates the answer; the skipping below comes after the ledger knows it.
            answer = HITLOperator.execute_complete(self, context=context, event=event)
            choice = answer["chosen_options"][0]
        except HITLTimeoutError:
            answer, choice = {}, Decision.TIMEOUT
        return self._decide(context, spec, audit, manifest, choice, answer)

    def _decide(
        self, context: Context, spec: Spec, audit: AuditDraft, manifest: dict[str, Any], choice: str,
        answer: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        """Record the answer (``Approve``, ``Reject`` or ``timeout``) in the ledger and the audit record."""

        request = self.read_frame(manifest)
        asked = request.loc[request["ledger_status"] == Status.AWAITING_APPROVAL, "operation_id"].tolist()
        audit.inputs.append(manifest)
        if choice == Decision.TIMEOUT:
            self.log.warning("no answer in time: %d operation(s) go to review", len(asked))
        status = DECISIONS[Decision(choice)]
        changed = self._ledger(spec, context).decide(asked, status)
        by = answer.get("responded_by_user") or None
        responded_at = answer.get("responded_at")
        decision = {
            "decision": status, "asked": len(asked), "changed": changed, "responded_by": by,
            "responded_at": responded_at.isoformat() if isinstance(responded_at, datetime) else responded_at,
        }  # fmt: skip
        audit.details["approval"] = decision
        self.log.info("approval: %s by %s: %d of %d operation(s) now %s", choice, by or "nobody", changed,
                      len(asked), status)  # fmt: skip
        result = {**manifest, **decision}
        if status != Status.APPROVED:
            # Skipping ends the task through an exception, after which Airflow pushes no return value.
            context["ti"].xcom_push(key="return_value", value=result)
            self.skip(ti=context["ti"], tasks=[t for t in self.get_direct_relatives(upstream=False)
                                               if not t.is_teardown])  # fmt: skip
        return result
