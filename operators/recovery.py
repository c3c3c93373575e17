"""Replay dead-lettered operations, and revert what a run applied: both through the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.vocabulary import Status
from airflow_reconcile.provider.audited import AuditDraft, ReconcileBaseOperator, audit_outcomes, dead_letter_failure

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from airflow_reconcile.core.ledger import Ledger
    from airflow_reconcile.core.retry import RetryPolicy
    from airflow_reconcile.core.spec import Spec


class _LedgerOperator(ReconcileBaseOperator):
    checkpoints = True  # a signed audit checkpoint after each try (it writes to targets / runs periodically)

    def ledger(self, spec: Spec, context: Context) -> Ledger:
        """The ledger, checked against the newest signed checkpoint before any row is trusted (as verify does:
        a history whose newest entries were deleted since, or replaced, stops replay and revert)."""
        from airflow_reconcile.core.integrity import read_checkpoints
        from airflow_reconcile.core.ledger import Ledger
        from airflow_reconcile.core.locations import checkpoint_folder
        from airflow_reconcile.provider.hooks import workspace_path

        # The try's own audit store (the one its record goes to): one store per try.
        ledger = Ledger(self._store, spec=spec.name, dag_id=self.dag_id, run_id=context["run_id"])
        ledger.checkpoints = read_checkpoints(workspace_path(checkpoint_folder(self.workspace_root)))[-1:]
        return ledger

    def report(self, result: pd.DataFrame, audit: AuditDraft, what: str, retry: RetryPolicy) -> dict[str, Any]:
        counts = audit_outcomes(result, audit)
        audit.details["retries"] = dict(retry.retried)
        self.log.info("%s: %d operation(s): %s; %d retried call(s)", what, len(result), counts, retry.total_retries)
        failure = dead_letter_failure(result, f"{what}: {counts.get(Status.DEAD_LETTERED)} operation(s) failed again "
                                      "and stay dead-lettered; see the audit record's operations for each error and hint")  # fmt: skip
        if failure is not None:
            raise failure
        return {"outcomes": counts}


class ReplayOperationsOperator(_LedgerOperator):
    """Apply dead-lettered operations again: the given ids, or every dead letter of the spec since a time.

    :param operation_ids: ledger operation ids (templated; the DAG passes ``{{ params.operation_ids }}``)
    :param since: ISO time; with no ids, replay the spec's dead letters updated since then (templated)
    """

    template_fields: Sequence[str] = (*ReconcileBaseOperator.template_fields, "operation_ids", "since")
    ui_color = "#fff4d6"

    def __init__(self, *, operation_ids: Any = None, since: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.operation_ids, self.since = operation_ids, since

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> dict[str, Any]:
        from airflow_reconcile.core.actions.base import RateLimiter
        from airflow_reconcile.core.actions.revert import RecoveryPolicy, replay_operations
        from airflow_reconcile.core.retry import RetryPolicy
        from airflow_reconcile.provider.compat import AirflowFailException
        from airflow_reconcile.provider.hooks import LazyExecutors

        ids = [str(i).strip() for i in (self.operation_ids or []) if str(i).strip()]
        audit.details.update(operation_ids=ids, since=self.since or None)
        retry = RetryPolicy.of(spec)
        result, refused = replay_operations(
            self.ledger(spec, context), LazyExecutors(spec), operation_ids=ids or None, since=self.since or None,
            policy=RecoveryPolicy.of(spec), limiter=RateLimiter(spec.limits.rates), progress=self.log.info,
            retry=retry,
        )  # fmt: skip
        audit.details["refused"] = refused
        for item in refused:
            self.log.warning("not replayed: %s (%s): %s", item["operation_id"], item["action"], item["reason"])
        outcome = self.report(result, audit, "replay", retry)
        if refused:
            raise AirflowFailException(
                f"replay: {len(refused)} operation(s) refused by policy (see the log or the audit record's refused "
                f"list for each reason); {len(result)} replayed"
            )
        return outcome


class RevertRunOperator(_LedgerOperator):
    """Undo the operations a reconciliation run applied, from the prior state the ledger recorded.

    :param revert_run_id: the run whose applied operations to undo (templated: ``{{ params.run_id }}``)
    """

    template_fields: Sequence[str] = (*ReconcileBaseOperator.template_fields, "revert_run_id")
    ui_color = "#f3e8fd"

    def __init__(self, *, revert_run_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.revert_run_id = revert_run_id

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> dict[str, Any]:
        from airflow_reconcile.core.actions.base import RateLimiter
        from airflow_reconcile.core.actions.revert import RecoveryPolicy, revert_run
        from airflow_reconcile.core.retry import RetryPolicy
        from airflow_reconcile.provider.compat import AirflowFailException
        from airflow_reconcile.provider.hooks import LazyExecutors

        if not (self.revert_run_id or "").strip():
            raise AirflowFailException("give the run id to revert (the run_id field of the trigger form)")
        retry = RetryPolicy.of(spec)
        result, not_reversible = revert_run(
            self.ledger(spec, context), LazyExecutors(spec), self.revert_run_id.strip(), policy=RecoveryPolicy.of(spec),
            limiter=RateLimiter(spec.limits.rates), progress=self.log.info, retry=retry,
        )  # fmt: skip
        audit.details.update(reverted_run_id=self.revert_run_id, not_reversible=not_reversible)
        for item in not_reversible:
            self.log.warning("not reverted: %s (%s): %s", item["operation_id"], item["action"], item["reason"])
        report = self.report(result, audit, f"revert of {self.revert_run_id}", retry)
        return {**report, "not_reversible": len(not_reversible)}
