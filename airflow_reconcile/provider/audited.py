"""What every reconciliation task shares: spec loading, the run workspace and its audit record."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_reconcile.provider.hooks import DEFAULT_AUDIT_CONN_ID

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from airflow_reconcile.core.scope import Scope
    from airflow_reconcile.core.spec import Spec
    from airflow_reconcile.core.vocabulary import Mode
    from airflow_reconcile.core.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class AuditDraft:
    """Filled by a task while it runs; written as one record when it ends, whatever the outcome."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    spec: str = ""
    policy_version: str = ""


def _outcome_of(exc: BaseException) -> tuple[str, str | None]:
    """How a try that raised ended: parked for a person, deferred and skipped are not failures."""
    from airflow_reconcile.provider.compat import (
        AirflowRescheduleException,
        AirflowSkipException,
        DownstreamTasksSkipped,
        TaskAwaitingInput,
        TaskDeferred,
    )

    if isinstance(exc, TaskAwaitingInput):
        return "awaiting_input", None
    if isinstance(exc, TaskDeferred):
        return "deferred", None
    if isinstance(exc, DownstreamTasksSkipped):  # the task succeeded and skips what follows it
        return "success", None
    if isinstance(exc, AirflowRescheduleException):  # a sensor in reschedule mode, poking again later
        return "rescheduled", None
    from airflow_reconcile.core.redact import error_text, redact

    if isinstance(exc, AirflowSkipException):
        return "skipped", redact(str(exc)) or None
    return "failed", error_text(exc)


RUN_PARAMS = ("mode", "approval_timeout", "operation_ids", "since", "run_id")  # ours; other conf is not recorded


def trigger_of(context: Context) -> dict[str, Any]:
    """What started this DAG run: its type (scheduled, manual, asset_triggered...), the user who
    triggered it, our run parameters, and the asset events it consumed."""
    run = context.get("dag_run")
    if run is None:
        return {}
    kind = getattr(run, "run_type", None)
    events = [
        {"asset": getattr(e.asset, "name", None) or getattr(e.asset, "uri", None), "source_dag_id": e.source_dag_id,
         "source_run_id": e.source_run_id, "source_task_id": e.source_task_id}
        for e in (getattr(run, "consumed_asset_events", None) or [])[:50]
    ]  # fmt: skip
    conf = getattr(run, "conf", None) or {}
    return {
        "run_type": getattr(kind, "value", kind),
        "user": getattr(run, "triggering_user_name", None),
        "params": {k: conf[k] for k in RUN_PARAMS if k in conf},
        "asset_events": events,
    }


class AuditedTaskMixin:
    """Mixed into our operators and sensors. Subclasses implement ``run(context, spec, audit)``."""

    spec_path: str | None = None
    audit_conn_id: str = DEFAULT_AUDIT_CONN_ID
    workspace_root: str | None = None
    _store: Any = None  # the audit store of the running try (set by ``audited``)

    def workspace(self, spec: Spec, context: Context) -> Workspace:
        from airflow_reconcile.core.locations import workspace_root
        from airflow_reconcile.core.workspace import Workspace
        from airflow_reconcile.provider.hooks import workspace_path

        root = self.workspace_root or workspace_root()
        return Workspace(root=root, spec_name=spec.name, run_id=context["run_id"], opener=workspace_path)

    @staticmethod
    def read_frame(manifest: Any) -> Any:
        """A manifest's frame, from wherever the workspace is (checked against its content hash)."""
        from airflow_reconcile.core.workspace import read_frame
        from airflow_reconcile.provider.hooks import workspace_path

        return read_frame(manifest, workspace_path)

    @staticmethod
    def verified_file(manifest: Any) -> Any:
        """A context manager: a local copy of a manifest's Parquet file (checked against its content hash)."""
        from airflow_reconcile.core.workspace import verified_file
        from airflow_reconcile.provider.hooks import workspace_path

        return verified_file(manifest, workspace_path)

    def audited(self, context: Context, body: Callable[[Any, AuditDraft], Any]) -> Any:
        """Run ``body(spec, draft)`` and write one audit record for this try, whatever happens.

        ``spec`` is the loaded spec, or None for a task that serves several specs (it then fills
        ``draft.spec`` and ``draft.policy_version`` itself). An invalid spec is audited too.
        """
        from airflow_reconcile.core.audit import AuditRecord, record_index
        from airflow_reconcile.core.pinning import pinned_spec
        from airflow_reconcile.provider.compat import final_failure
        from airflow_reconcile.provider.hooks import AuditStoreHook
        from airflow_reconcile.provider.lineage import run_date, trace_id

        started = datetime.now(UTC)
        store = AuditStoreHook(self.audit_conn_id).store
        store.ensure_schema()  # no audit, no action: fail before doing anything
        self._store = store  # this try's store (a task reads the newest full run's population from it)
        draft = AuditDraft()
        draft.details["trigger"] = trigger_of(context)
        outcome, error = "success", None
        try:
            # The run's spec as its first task read it (a mid-run edit changes the next run, not this one).
            spec = (
                pinned_spec(store, context["ti"].dag_id, context["run_id"], self.spec_path) if self.spec_path else None
            )
            if spec is not None:
                draft.spec, draft.policy_version = spec.name, spec.policy_version
            return body(spec, draft)
        except BaseException as exc:
            outcome, error = _outcome_of(exc)
            final = final_failure(exc)
            if final is not None:  # Airflow < 3.3: no retry policy, the task decides
                raise final from exc
            raise
        finally:
            ti = context["ti"]
            record = AuditRecord(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                map_index=record_index(ti),
                try_number=ti.try_number,
                started_at=started,
                ended_at=datetime.now(UTC),
                outcome=outcome,
                spec=draft.spec,
                policy_version=draft.policy_version,
                inputs=draft.inputs,
                outputs=draft.outputs,
                details=draft.details,
                error=error,
                trace_id=trace_id(
                    ti.dag_id, ti.task_id, ti.try_number, record_index(ti), run_date(context.get("dag_run"))
                ),
            )
            digest = store.append(record)
            log.info("audit record %s written (%s, trace id %s)", digest[:12], outcome, record.trace_id)
            self._lineage_record = {**record.to_dict(), "record_hash": digest}
            if self.checkpoints:
                self._checkpoint(store)

    def run_scope(self, context: Context, spec: Spec, audit: AuditDraft) -> Scope | None:
        """The run's scope (run parameter ``keys``; None: a full run), in the audit record, checked in every
        task against the newest full run (its population, the guards' base, is kept as ``scope_population``)
        and in the form its key column holds (canonical integers for an integer key). A scope that cannot be
        used fails the task at once, with the reason, before anything is read."""
        from airflow_reconcile.core.scope import ScopeError, check_against, scope_of
        from airflow_reconcile.provider.compat import AirflowFailException

        try:
            scope = scope_of(spec, (context.get("params") or {}).get("keys"))
            if scope is not None:
                self.scope_population = self.full_population(context)
                scope = check_against(scope, self.scope_population, spec)
        except ScopeError as exc:
            raise AirflowFailException(str(exc)) from None
        if scope is not None:
            audit.details["scope"] = scope.to_dict()
        return scope

    scope_population: dict[str, Any] | None = None  # a scoped run's base: the newest full run's population

    def full_population(self, context: Context) -> dict[str, Any] | None:
        """The newest full run's population (``detect_drift``'s record): the base of a scoped run's guards."""
        from airflow_reconcile.core.scope import full_population

        return full_population(self._store, context["ti"].dag_id)

    checkpoints = False  # True: after its record, the task writes an audit checkpoint (core.integrity)

    def _checkpoint(self, store: Any) -> None:
        """A signed checkpoint of the audit chains, kept outside the store: a file in the workspace and
        this line in the task log. Best effort: the record is written; a checkpoint that cannot be kept
        is logged as an error, and the next one covers the same records."""
        from airflow_reconcile.core.integrity import write_checkpoint
        from airflow_reconcile.core.locations import checkpoint_folder
        from airflow_reconcile.provider.hooks import workspace_path

        try:
            checkpoint = store.checkpoint()
            path = write_checkpoint(workspace_path(checkpoint_folder(self.workspace_root)), checkpoint)
        except Exception:  # noqa: BLE001 - the try's own outcome stands
            log.exception("audit checkpoint could not be written")
            return
        from airflow_reconcile.core.integrity import log_line

        heads = ", ".join(
            f"{c} head {h['head_id']} ({h['count']} entries)" for c, h in sorted(checkpoint["chains"].items())
        )
        key = f"key {store.signer.key_id}" if store.signer.keyed else "NOT keyed: set the audit key connection"
        log.info("audit checkpoint %s: %s (%s); kept in %s", checkpoint["at"], heads, key, path)
        # The whole checkpoint, for `reconcile audit verify --checkpoint-log` (logs usually live off the host).
        log.info("%s", log_line(checkpoint))

    # OpenLineage (apache-airflow-providers-openlineage calls these after the try): the lineage comes
    # from this try's audit record, so the two always agree. See airflow_reconcile.provider.lineage.
    _lineage_record: dict[str, Any] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow_reconcile.provider.lineage import operator_lineage

        return operator_lineage(self._lineage_record)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)

    def pull(self, context: Context, task_id: str, key: str = "return_value") -> dict[str, Any]:
        """A manifest an upstream task returned; fails clearly when it is absent."""
        value = context["ti"].xcom_pull(task_ids=task_id, key=key)
        if not value:
            raise ValueError(f"task {task_id!r} left no manifest in XCom; did it run in this DAG run?")
        return dict(value)

    def set_outlet_extra(self, context: Context, extra: dict[str, Any]) -> None:
        """Every asset event this task emits carries counts, URIs and the policy version."""
        for outlet in getattr(self, "outlets", []):
            context["outlet_events"][outlet].extra = extra


class ReconcileBaseOperator(AuditedTaskMixin, BaseOperator):
    """Base of the reconciliation operators: stores the shared arguments, audits ``run``.

    :param spec_path: path of the reconciliation spec (templated)
    :param audit_conn_id: connection of the audit store (default ``reconcile_audit``)
    :param workspace_root: where run workspaces live (templated); default under AIRFLOW_HOME
    """

    template_fields: Sequence[str] = ("spec_path", "workspace_root")
    spec_path: str  # one spec per task (the mixin's None is for tasks that serve several)

    def __init__(
        self,
        *,
        spec_path: str,
        audit_conn_id: str = DEFAULT_AUDIT_CONN_ID,
        workspace_root: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec_path = spec_path
        self.audit_conn_id = audit_conn_id
        self.workspace_root = workspace_root

    def execute(self, context: Context) -> Any:
        return self.audited(context, lambda spec, audit: self.run(context, spec, audit))

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> Any:
        raise NotImplementedError


def run_mode(value: Any) -> Mode:
    """The run's mode (the trigger form's ``mode``, templated into the task): one of ``Mode``, or the task
    fails without a retry saying what to give."""
    from airflow_reconcile.core.vocabulary import Mode
    from airflow_reconcile.provider.compat import AirflowFailException

    try:
        return Mode(str(value))
    except ValueError:
        raise AirflowFailException(f"mode must be {' or '.join(map(repr, map(str, Mode)))}, got {value!r}") from None


def dead_letter_failure(result: pd.DataFrame, message: str) -> Exception | None:
    """How a try with dead letters ends: None without any; ``TransientError`` when every one failed for a
    transient reason (429, 5xx, timeouts, a write not yet visible), so the task's next try sends them
    again (its retry delay is the backoff) before they need a person; otherwise failed at once (a
    persistent or policy failure waits for a person and a replay)."""
    from airflow_reconcile.core.errors import TransientError
    from airflow_reconcile.core.vocabulary import Status
    from airflow_reconcile.provider.compat import AirflowFailException

    dead = result[result["status"] == Status.DEAD_LETTERED]
    if dead.empty:
        return None
    if set(dead["error_class"]) == {TransientError.__name__}:
        return TransientError(f"{message}; all failed for a transient reason: the task's next try sends them again")
    return AirflowFailException(message)


def audit_outcomes(result: pd.DataFrame, audit: AuditDraft) -> dict[str, int]:
    """Put each operation's outcome and the counts in the audit record; return the counts."""
    from airflow_reconcile.core.actions.base import outcome_counts
    from airflow_reconcile.core.vocabulary import Status

    counts = outcome_counts(result)
    ops = result[["operation_id", "rule", "action", "entity", "target_ref", "status", "error"]].astype(object)
    # Dead letters first: the record keeps the first entries of a long list (core.audit.bounded); every
    # outcome is in the try's outcomes file.
    ops = ops.iloc[ops["status"].ne(Status.DEAD_LETTERED).argsort(kind="stable")]
    audit.details.update(outcomes=counts, operations=ops.where(ops.notna(), None).to_dict("records"))
    return counts
