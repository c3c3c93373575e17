"""Turn a reconciliation spec into an Airflow DAG (Airflow layer; light to import).

Importing this module, or calling the factory, never imports pandas, Great Expectations, jira or
slack_sdk: DAG files are parsed often and must stay cheap.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetAny, Param

from airflow_reconcile.core.locations import workspace_root
from airflow_reconcile.core.spec import Spec, load_spec, load_specs
from airflow_reconcile.core.values import DURATION_PATTERN
from airflow_reconcile.core.vocabulary import SIDES, DagId, Mode, TaskId
from airflow_reconcile.core.workspace import location_uri
from airflow_reconcile.provider.compat import ReconcileDAG, retry_policy_args
from airflow_reconcile.provider.operators.apply import ApplyCorrectionsOperator
from airflow_reconcile.provider.operators.derive import DeriveSideOperator
from airflow_reconcile.provider.operators.digest import SlackDriftDigestOperator
from airflow_reconcile.provider.operators.drift import DetectDriftOperator
from airflow_reconcile.provider.operators.quality import ValidateSnapshotOperator
from airflow_reconcile.provider.operators.rules import EvaluateRulesOperator
from airflow_reconcile.provider.operators.snapshot import ReadSnapshotOperator
from airflow_reconcile.provider.sensors.freshness import SourceFreshnessSensor

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def _default_args(owner: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(seconds=30), **retry_policy_args()}
    if owner:
        args["owner"] = owner
    return args


def _asset(spec_name: str, what: str) -> Asset:
    return Asset(
        name=f"reconcile.{spec_name}.{what}", uri=location_uri(workspace_root(), spec_name, what), group="reconcile"
    )


def snapshot_asset(spec_name: str, name: str) -> Asset:
    """The snapshot of an input (``desired`` / ``actual`` for a side given inline), or of a derived side."""
    return _asset(spec_name, f"snapshot_{name}")


def drift_report_asset(spec_name: str) -> Asset:
    """The asset other DAGs schedule on to react to drift."""
    return _asset(spec_name, "drift_report")


def plan_asset(spec_name: str) -> Asset:
    """The plan ``evaluate_rules`` writes: the digest schedules on it (the drift and what no rule handles)."""
    return _asset(spec_name, "plan")


def writer_pool(spec: Spec) -> dict[str, Any]:
    """The tasks that write to the targets take a slot of ``limits.pool`` (when set): with one slot shared by
    every reconciliation that writes to one target, at most one of them writes at a time on any worker."""
    return {"pool": spec.limits.pool} if spec.limits.pool else {}


def run_deadline(spec: Spec) -> Any:
    """Airflow's deadline alert for a run that hangs: ``watchdog.max_run_duration`` after it was queued
    (plus the approval timeout when the DAG waits for a person), the triggerer posts to the digest
    channel with the Slack provider's ``SlackNotifier`` (through ``airflow_reconcile.provider.deadline``, which
    keeps the Slack SDK out of DAG parsing). None when the spec sets no duration."""
    from airflow_reconcile.core.spec import approval_timeout
    from airflow_reconcile.core.values import parse_duration
    from airflow_reconcile.provider.compat import deadline_alert
    from airflow_reconcile.provider.deadline import notify_slack

    if spec.watchdog.max_run_duration is None:
        return None
    seconds = parse_duration(spec.watchdog.max_run_duration)
    if spec.needs_approval:
        seconds += approval_timeout(spec.approval.timeout)
    slack = spec.targets.slack
    allowed = spec.watchdog.max_run_duration + (
        f" + {spec.approval.timeout} for approval" if spec.needs_approval else ""
    )
    text = (
        f":hourglass: reconciliation *{spec.name}*: run `{{{{ dag_run.dag_run_id }}}}` of `{spec.dag_id}` is still "
        f"not finished {allowed} after it was queued (deadline {{{{ deadline.deadline_time }}}}). "
        "Open the run in Airflow: which task is waiting, retrying or stuck?"
    )
    return deadline_alert(
        timedelta(seconds=seconds),
        notify_slack,
        kwargs={"slack_conn_id": slack.connection_id, "channel": slack.digest_channel, "text": text},
        name=f"{spec.dag_id} run duration",
    )


def _schedule(spec: Spec) -> Any:
    from airflow_reconcile.core.values import parse_duration
    from airflow_reconcile.provider.compat import AssetOrTimeSchedule, CronTriggerTimetable, DeltaTriggerTimetable

    assets: list[Any] = [
        Asset(name=a.name, uri=a.uri) if a.uri else Asset.ref(name=a.name) for a in spec.schedule.assets
    ]
    clock: Any = None
    if spec.schedule.cron:
        clock = CronTriggerTimetable(spec.schedule.cron, timezone=spec.schedule.timezone)
    elif spec.schedule.every:
        clock = DeltaTriggerTimetable(timedelta(seconds=parse_duration(spec.schedule.every)))
    if assets and clock is not None:
        return AssetOrTimeSchedule(timetable=clock, assets=assets)
    if assets:
        return AssetAny(*assets) if len(assets) > 1 else assets
    return clock


def build_reconciliation_dag(spec_path: str | os.PathLike[str]) -> ReconcileDAG:
    """freshness → read each input ∥ → validate each → (derive a side → validate it) → detect drift →
    evaluate rules → apply (docs/adr/0003)."""
    spec_path = str(Path(spec_path).resolve())
    spec = load_spec(spec_path)
    common: dict[str, Any] = {"spec_path": spec_path}
    with ReconcileDAG(
        dag_id=spec.dag_id,
        description=spec.description or f"Reconciliation {spec.name}",
        schedule=_schedule(spec),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["reconcile", spec.name],
        params=_params(spec),
        default_args=_default_args(spec.owner),
        doc_md=f"Reconciliation **{spec.name}** from `{spec_path}` (policy version `{spec.policy_version}`).",
        deadline=run_deadline(spec),
    ) as dag:
        freshness = SourceFreshnessSensor(
            task_id=TaskId.CHECK_FRESHNESS, side="desired", poke_interval=60, timeout=3600, retries=0, **common
        )
        # One read task and one gate per input (a side given inline is the input named after it: the 0.2
        # task ids); a derived side gets a derive task after its inputs' gates, and a gate of its own.
        validations: dict[str, Any] = {}
        for name in spec.input_specs():
            read = ReadSnapshotOperator(
                task_id=TaskId.read(name), input_name=name, outlets=[snapshot_asset(spec.name, name)], **common
            )
            validations[name] = _gate(spec, name, TaskId.read(name), common)
            freshness >> read >> validations[name]
        producers, gated = {}, []
        for side in SIDES:
            derive = spec.derive_of(side)
            if derive is None:
                name = str(spec.side_input(side))
                producers[side] = (TaskId.read(name), snapshot_asset(spec.name, name))
                gated.append(validations[name])
                continue
            producers[side] = (TaskId.derive(side), snapshot_asset(spec.name, side))
            derived = DeriveSideOperator(
                task_id=TaskId.derive(side),
                side=side,
                input_task_ids={name: TaskId.read(name) for name in derive.inputs},
                inlets=[snapshot_asset(spec.name, name) for name in derive.inputs],
                outlets=[snapshot_asset(spec.name, side)],
                doc_md=f"`sources.{side}.derive`: DuckDB SQL over {', '.join(derive.inputs)} (sandboxed: the "
                "inputs only, no files, URLs or extensions).",
                **common,
            )
            [validations[name] for name in derive.inputs] >> derived
            derived >> _gate(spec, side, TaskId.derive(side), common)
            gated.append(dag.get_task(TaskId.validate(side)))
        drift = DetectDriftOperator(
            task_id=TaskId.DETECT_DRIFT,
            desired_task_id=producers["desired"][0],
            actual_task_id=producers["actual"][0],
            inlets=[producers["desired"][1], producers["actual"][1]],
            outlets=[drift_report_asset(spec.name)],
            **common,
        )
        rules = EvaluateRulesOperator(
            task_id=TaskId.EVALUATE_RULES,
            drift_task_id=TaskId.DETECT_DRIFT,
            freshness_task_id=TaskId.CHECK_FRESHNESS,
            inlets=[drift_report_asset(spec.name)],
            outlets=[plan_asset(spec.name)],
            **common,
        )
        failing = {"fail_on_dead_letter": spec.limits.fail_on_dead_letter, **writer_pool(spec)}
        apply = ApplyCorrectionsOperator(
            task_id=TaskId.APPLY_CORRECTIONS, plan_task_id=TaskId.EVALUATE_RULES, **failing, **common
        )
        list(dict.fromkeys(gated)) >> drift >> rules >> apply
        if spec.needs_approval:
            # Beside apply_corrections, not after it: a dead letter there does not hold approvals back.
            from airflow_reconcile.provider.operators.approval import RequestApprovalOperator

            request = RequestApprovalOperator(
                task_id=TaskId.REQUEST_APPROVAL, plan_task_id=TaskId.EVALUATE_RULES, retries=0,
                doc_md="Answer in Required Actions: Approve applies the listed actions, Reject records them "
                "as rejected; no answer in time sends them to review.",
                **common,
            )  # fmt: skip
            approved = ApplyCorrectionsOperator(
                task_id=TaskId.APPLY_APPROVED,
                plan_task_id=TaskId.REQUEST_APPROVAL,
                approved_only=True,
                **failing,
                **common,
            )
            rules >> request >> approved
    return dag


def _gate(spec: Spec, name: str, snapshot_task_id: str, common: dict[str, Any]) -> ValidateSnapshotOperator:
    """The quality gate of an input or a derived side, on the snapshot ``snapshot_task_id`` wrote."""
    return ValidateSnapshotOperator(
        task_id=TaskId.validate(name),
        side=name,
        snapshot_task_id=snapshot_task_id,
        inlets=[snapshot_asset(spec.name, name)],
        **common,
    )


def _params(spec: Spec) -> dict[str, Param]:
    params = {
        "mode": Param(
            str(spec.mode),
            enum=[str(mode) for mode in Mode],
            title="Mode",
            description="shadow plans and writes nothing; apply applies the automatic actions",
        )
    }
    if len(spec.side("desired").key) == 1:
        params["keys"] = Param(
            [],
            type="array",
            items={"type": ["string", "integer"]},
            maxItems=spec.limits.max_scope_keys,
            title="Keys (run scope)",
            description=f"Only these {spec.side('desired').key[0]} values: read, compared and corrected for these keys "
            "alone (empty: a full run). Needs a full run before it; at most limits.max_scope_keys keys",
        )
    if spec.needs_approval:
        params["approval_timeout"] = Param(
            spec.approval.timeout,
            type="string",
            pattern=DURATION_PATTERN,  # what the spec's durations take; the task refuses more than a year, saying so
            title="Approval timeout",
            description="How long the approval request waits for an answer (e.g. 30m, 4h, 2d); then: review",
        )
    return params


def build_recovery_dags(spec_path: str | os.PathLike[str]) -> tuple[ReconcileDAG, ReconcileDAG]:
    """Two manually triggered DAGs per spec: ``<dag_id>_replay`` (dead letters) and ``<dag_id>_revert`` (a run)."""
    from airflow_reconcile.provider.operators.recovery import ReplayOperationsOperator, RevertRunOperator

    spec_path = str(Path(spec_path).resolve())
    spec = load_spec(spec_path)
    common: dict[str, Any] = {"spec_path": spec_path, "retries": 0, **writer_pool(spec)}
    shared: dict[str, Any] = {"schedule": None, "start_date": START_DATE, "catchup": False, "max_active_runs": 1,
              "tags": ["reconcile", spec.name, "recovery"], "default_args": _default_args(spec.owner)}  # fmt: skip
    with ReconcileDAG(
        dag_id=DagId.replay(spec.dag_id),
        description=f"Replay dead-lettered operations of {spec.name}",
        params={
            "operation_ids": Param(
                [],
                type="array",
                items={"type": "string"},
                title="Operation ids",
                description="Ledger ids to replay (only dead letters whose write the spec still allows; any "
                "other id is refused with its reason); empty: every dead letter since the time below",
            ),
            "since": Param(
                "",
                type="string",
                title="Since (ISO time)",
                description="With no ids: replay the dead letters updated since then (empty: all)",
            ),
        },  # fmt: skip
        doc_md=f"Re-checks each dead-lettered operation against the spec's policy and the target's current state, "
        f"and applies it once; anything else is refused with the reason. Spec `{spec_path}`.",
        render_template_as_native_obj=True,  # operation_ids arrive as a list
        **shared,
    ) as replay:
        ReplayOperationsOperator(
            task_id=TaskId.REPLAY, operation_ids="{{ params.operation_ids }}", since="{{ params.since }}",
            **common,
        )  # fmt: skip
    with ReconcileDAG(
        dag_id=DagId.revert(spec.dag_id),
        description=f"Undo what one run of {spec.name} applied",
        params={
            "run_id": Param(
                "",
                type="string",
                minLength=1,
                title="Run id to revert",
                description="The run id of the reconciliation run whose changes to undo",
            )
        },  # fmt: skip
        doc_md="Puts assignees, statuses and labels back to the state the ledger recorded before the run.",
        **shared,
    ) as revert:
        RevertRunOperator(task_id=TaskId.REVERT, revert_run_id="{{ params.run_id }}", **common)
    return replay, revert


def build_digest_dag(specs_dir: str | os.PathLike[str], dag_id: str = DagId.DIGEST) -> ReconcileDAG:
    """A Slack digest after every reconciliation: scheduled on every spec's plan asset (written after the
    drift report, so the digest tells the drift and what no rule handles)."""
    names = [spec.name for spec in load_specs(specs_dir)]  # an invalid spec's own DAG file reports its error
    assets = [plan_asset(n) for n in names]
    with ReconcileDAG(
        dag_id=dag_id,
        description="Slack digest of drift to the owning teams, after every reconciliation",
        schedule=AssetAny(*assets) if assets else None,
        start_date=START_DATE,
        catchup=False,
        tags=["reconcile", "digest"],
        default_args=_default_args(),
    ) as dag:
        SlackDriftDigestOperator(task_id=TaskId.POST_DIGEST, inlets=assets, specs_dir=str(Path(specs_dir).resolve()))
    return dag


def build_watchdog_dag(specs_dir: str | os.PathLike[str], dag_id: str = DagId.WATCHDOG) -> ReconcileDAG:
    """Every 30 minutes: alerts for reconciliations that went quiet, growing queues, stale sources."""
    from airflow_reconcile.provider.compat import DeltaTriggerTimetable
    from airflow_reconcile.provider.operators.watchdog import ReconcileWatchdogOperator

    with ReconcileDAG(
        dag_id=dag_id,
        description="Makes silence visible: no recent success, dead letters, a growing review queue, a stale source",
        schedule=DeltaTriggerTimetable(timedelta(minutes=30)),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["reconcile", "watchdog"],
        default_args=_default_args(),
    ) as dag:
        ReconcileWatchdogOperator(task_id=TaskId.WATCH, specs_dir=str(Path(specs_dir).resolve()))
    return dag
