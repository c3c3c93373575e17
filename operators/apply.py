"""Apply the plan's automatic actions (apply mode) and give every planned action an outcome."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.vocabulary import Mode, Status
from airflow_reconcile.provider.audited import (
    AuditDraft,
    ReconcileBaseOperator,
    audit_outcomes,
    dead_letter_failure,
    run_mode,
)
from airflow_reconcile.provider.hooks import LazyExecutors

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from airflow_reconcile.core.ledger import Ledger
    from airflow_reconcile.core.spec import Spec


class ApplyCorrectionsOperator(ReconcileBaseOperator):
    """Apply the plan from ``plan_task_id``. Shadow mode writes nothing to any target.

    :param mode: ``shadow`` or ``apply`` (templated; the DAG passes ``{{ params.mode }}``)
    :param fail_on_dead_letter: end the task failed when any operation was dead-lettered
    :param approved_only: ``plan_task_id`` is the approval task: apply the operations of its request
        that the ledger holds as approved (the ``apply_approved`` task)
    """

    checkpoints = True  # a signed audit checkpoint after each try (it writes to targets / runs periodically)

    template_fields: Sequence[str] = (*ReconcileBaseOperator.template_fields, "mode")
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        plan_task_id: str,
        mode: str = "{{ params.mode }}",
        fail_on_dead_letter: bool = True,
        approved_only: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.approved_only = approved_only
        self.plan_task_id = plan_task_id
        self.mode = mode
        self.fail_on_dead_letter = fail_on_dead_letter

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> dict[str, Any]:
        from airflow_reconcile.core.actions.base import RateLimiter, apply_plan
        from airflow_reconcile.core.errors import TransientError
        from airflow_reconcile.core.plan import shadow_outcomes
        from airflow_reconcile.core.retry import RetryPolicy

        mode = run_mode(self.mode)
        plan_m = self.pull(context, self.plan_task_id)
        audit.inputs.append({k: v for k, v in plan_m.items() if k != "summary"})
        plan = self.read_frame(plan_m)
        scope = self.run_scope(context, spec, audit)
        if scope is not None:  # checked again where the writes are: never an operation outside the keys
            from airflow_reconcile.core.scope import ScopeError, refuse_outside
            from airflow_reconcile.provider.compat import AirflowFailException

            try:
                refuse_outside(spec, scope, plan)
            except ScopeError as exc:
                raise AirflowFailException(str(exc)) from None
        ledger = None
        if mode == Mode.SHADOW:  # writes nothing, asks no one: a function of the plan alone
            if self.approved_only:  # the approval task was skipped, and this one with it
                plan = plan.iloc[0:0]
            self.log.info("shadow mode: %d planned operations, none applied", len(plan))
            result = shadow_outcomes(plan)
        else:
            from airflow_reconcile.core.ledger import Ledger

            # Written before and after every side effect; if it cannot be written, nothing is applied. The
            # try's own audit store (the one its record goes to).
            ledger = Ledger(self._store, spec=spec.name, dag_id=self.dag_id, run_id=context["run_id"])
            if self.approved_only:
                plan = self._approved(plan, ledger)
            self.log.info("applying %d planned operations", len(plan))
            retry = RetryPolicy.of(spec)
            result = apply_plan(
                plan, LazyExecutors(spec), progress=self.log.info, limiter=RateLimiter(spec.limits.rates),
                ledger=ledger, workers=spec.limits.concurrency, retry=retry,
            )  # fmt: skip
            audit.details["retries"] = dict(retry.retried)
            self.log.info("%d call(s) retried after a transient failure", retry.total_retries)
        manifest = self.workspace(spec, context).write("outcomes", result, policy_version=spec.policy_version)
        counts = audit_outcomes(result, audit)
        self.log.info("outcomes: %s -> %s", counts, manifest.uri)
        audit.outputs.append(manifest.to_dict())
        audit.details["mode"] = str(mode)
        self._metrics(context, spec, counts, ledger)
        failure = dead_letter_failure(result, f"{counts.get(Status.DEAD_LETTERED)} operation(s) were dead-lettered "
                                      f"(see {manifest.uri} and the audit record); the other operations were applied")  # fmt: skip
        if failure is not None and (self.fail_on_dead_letter or isinstance(failure, TransientError)):
            raise failure
        return {**manifest.to_dict(), "mode": str(mode), "outcomes": counts}

    def _metrics(self, context: Context, spec: Spec, counts: dict[str, int], ledger: Ledger | None) -> None:
        """Outcomes of this task, the ledger's queues now, and how long the run took to get here."""
        from datetime import UTC, datetime

        from airflow_reconcile.core.ledger import queue_depths, status_counts
        from airflow_reconcile.provider.metrics import emit, emit_counts

        emit_counts("incr", spec.name, "actions", counts)
        if ledger is not None:
            dead, waiting = queue_depths(status_counts(ledger.store, self.dag_id))
            emit("gauge", spec.name, "dead_letters", dead)
            emit("gauge", spec.name, "review_queue", waiting)
        started = getattr(context.get("dag_run"), "start_date", None)
        if started is not None:
            emit("timing", spec.name, "run_latency", datetime.now(UTC) - started)

    def _approved(self, request: pd.DataFrame, ledger: Ledger) -> pd.DataFrame:
        from airflow_reconcile.core.approval import approved_plan
        from airflow_reconcile.core.ledger import LedgerQueries

        ids = request["operation_id"].tolist()
        rows = {r["operation_id"]: r for r in LedgerQueries(ledger).select(operation_ids=ids)} if ids else {}
        approved = approved_plan(request, rows)
        self.log.info("%d of the %d requested operation(s) are approved", len(approved), len(request))
        return approved
