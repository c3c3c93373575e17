"""Slack digest of a drift report to the owning teams' channels, run by an asset-triggered DAG."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_reconcile.core.vocabulary import DriftKind, Mode, Status
from airflow_reconcile.provider.audited import AuditDraft, AuditedTaskMixin
from airflow_reconcile.provider.hooks import DEFAULT_AUDIT_CONN_ID

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from airflow_reconcile.core.spec import Spec

MAX_ITEMS = 15


@dataclass(frozen=True)
class Digest:
    """One channel's digest: a summary message (text and Block Kit blocks) and the items, posted
    as a reply in its thread so a busy channel sees one message per run."""

    summary: str
    blocks: list[dict[str, Any]]
    items: str


def digest_messages(spec: Spec, drift: pd.DataFrame, run_id: str) -> dict[str, Digest]:
    """channel → digest: one per owning team, the digest channel for the rest.

    Values that come from data are escaped: they can never mention, link or format.
    """
    import pandas as pd

    from airflow_reconcile.core.markup import escape_mrkdwn, mrkdwn_code

    slack = spec.targets.slack
    team = pd.Series(pd.NA, index=drift.index, dtype="string")
    for side in ("desired", "actual"):
        column = f"{side}.{slack.team_column}"
        if slack.team_column and column in drift.columns:
            team = team.fillna(drift[column])
    channel = team.map(lambda t: slack.channel_template.format(team=t), na_action="ignore").fillna(slack.digest_channel)
    key = spec.sources.desired.key
    messages: dict[str, Digest] = {}
    for name, rows in drift.groupby(channel, sort=True):
        teams = sorted(team[rows.index].dropna().unique())
        kinds = rows["drift_kind"].value_counts().to_dict()
        counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        title = f"Drift digest: {spec.name}" + (f" for team {', '.join(teams)}" if teams else "")
        summary = (
            f"*Drift digest: {spec.name}* (run `{mrkdwn_code(run_id)}`)"
            + (f" for team *{escape_mrkdwn(', '.join(teams))}*" if teams else "")
            + f"\n{counts}"
        )
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},  # plain text: never markup
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{n}"} for k, n in sorted(kinds.items())]},
            {"type": "context", "elements": [{"type": "mrkdwn",
                                              "text": f"run `{mrkdwn_code(run_id)}` · details in the thread"}]},
        ]  # fmt: skip
        lines = []
        for row in rows.head(MAX_ITEMS).to_dict("records"):
            entity = mrkdwn_code("|".join(str(row[k]) for k in key))
            detail = ""
            if row["drift_kind"] == DriftKind.CHANGED:
                detail = "; ".join(
                    f"{escape_mrkdwn(col)}: {escape_mrkdwn(str(row.get(f'actual.{col}')))} → {escape_mrkdwn(str(row.get(f'desired.{col}')))}"
                    for col in str(row["changed_columns"]).split(",")
                )
            lines.append(f"• `{entity}` {row['drift_kind']} {detail}".rstrip())
        if len(rows) > MAX_ITEMS:
            lines.append(f"… and {len(rows) - MAX_ITEMS} more")
        messages[str(name)] = Digest(summary=summary, blocks=blocks, items="\n".join(lines))
    return messages


class _Ours:
    """What every event of one digest try is traced against, read once for all of them: the specs
    of this DAG's folder and the audit store."""

    def __init__(self, specs_dir: str, audit_conn_id: str) -> None:
        self.specs_dir, self.audit_conn_id = specs_dir, audit_conn_id

    @cached_property
    def specs(self) -> list[Spec]:
        from airflow_reconcile.core.spec import load_spec, specs_in

        return [load_spec(path) for path in specs_in(self.specs_dir)]

    @cached_property
    def store(self) -> Any:
        from airflow_reconcile.provider.hooks import AuditStoreHook

        return AuditStoreHook(self.audit_conn_id).store


class SlackDriftDigestOperator(AuditedTaskMixin, BaseOperator):
    """Post a digest of each triggering drift-report asset event to Slack.

    An asset event's extra is not trusted (anyone allowed to create asset events can write it): the
    event says only *which run* to digest, through the source DAG and run that Airflow itself
    stamps on an event a task emitted. The spec is the one of that DAG in this DAG's own specs
    folder, the drift report and its content hash are what the run's ``detect_drift`` audit record
    holds, and the mode is the one that record says the run ran in. An event that cannot be traced
    that way (created through the REST API, or by a DAG without a spec here) is refused: recorded,
    logged, nothing posted, and the task fails so that someone looks.

    Honours the reconciliation's mode: in shadow mode the digest goes to the task log only,
    unless the spec sets ``targets.slack.post_in_shadow``.

    :param specs_dir: the folder of the specs this digest serves (the DAG factory passes its own)
    """

    template_fields: Sequence[str] = ()
    ui_color = "#e8fdfb"

    def __init__(self, *, specs_dir: str, audit_conn_id: str = DEFAULT_AUDIT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs_dir = specs_dir
        self.audit_conn_id = audit_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        return self.audited(context, lambda _spec, audit: self.digest_all(context, audit))

    def digest_all(self, context: Context, audit: AuditDraft) -> list[dict[str, Any]]:
        """One digest per triggering drift-report event (several queue up if runs overlap)."""
        from airflow_reconcile.core.errors import ReconcileError

        events = [e for evs in context["triggering_asset_events"].values() for e in evs]
        if not events:
            self.log.info("no triggering drift-report events (manual run?): nothing to digest")
        results, refused, specs = [], [], []
        ours = _Ours(self.specs_dir, self.audit_conn_id)
        for event in events:
            source = {"source_dag_id": event.source_dag_id, "source_run_id": event.source_run_id}
            try:
                spec, report, mode = self.trusted(event, ours)
            except ReconcileError as exc:
                self.log.warning("asset event %s refused: %s", source, exc)
                refused.append({**source, "why": str(exc)})
                continue
            specs.append(spec)
            results.append(self.digest(spec, audit, report, str(event.source_run_id), mode))
        audit.spec = ",".join(sorted({s.name for s in specs}))
        audit.policy_version = ",".join(sorted({s.policy_version for s in specs}))
        audit.details["digests"] = results
        if refused:
            audit.details["refused"] = refused
            raise ReconcileError(
                f"{len(refused)} drift-report event(s) could not be traced to a reconciliation run of a spec in "
                f"{self.specs_dir} and were not digested (first: {refused[0]['why']}); see this try's audit record"
            )
        return results

    def trusted(self, event: Any, ours: _Ours) -> tuple[Spec, Any, str]:
        """(spec, drift report manifest, mode) of the run that emitted ``event``, from our own records."""
        from airflow_reconcile.core.errors import ReconcileError
        from airflow_reconcile.core.locations import workspace_root
        from airflow_reconcile.core.vocabulary import DagId, TaskId
        from airflow_reconcile.core.workspace import Manifest, Workspace

        dag_id, run_id = event.source_dag_id, event.source_run_id
        if not dag_id or not run_id:
            raise ReconcileError("it was not emitted by a task (created through the API?): it names no source run")
        spec = next((s for s in ours.specs if DagId.of(s.name) == dag_id), None)
        if spec is None:
            raise ReconcileError(f"DAG {dag_id!r} is not the DAG of a spec in {self.specs_dir}")
        records = [r for r in ours.store.records(dag_id=dag_id, run_id=run_id)
                   if r["task_id"] == TaskId.DETECT_DRIFT and r["outcome"] == "success"]  # fmt: skip
        if not records or not records[-1]["outputs"]:
            raise ReconcileError(f"run {run_id!r} of {dag_id} has no successful {TaskId.DETECT_DRIFT} audit record")
        report = Manifest.from_dict(records[-1]["outputs"][0])
        expected = Workspace(root=self.workspace_root or workspace_root(), spec_name=spec.name, run_id=run_id)
        if report.uri != expected.uri("drift"):
            raise ReconcileError(f"run {run_id!r} of {dag_id}: its drift report is not in this workspace")
        mode = str(records[-1]["details"].get("mode") or spec.mode)
        return spec, report, mode

    def digest(self, spec: Spec, audit: AuditDraft, report: Any, run_id: str, mode: str) -> dict[str, Any]:

        audit.inputs.append(report.to_dict())
        messages = digest_messages(spec, self.read_frame(report), run_id)
        post = mode == Mode.APPLY or spec.targets.slack.post_in_shadow
        if post:
            from airflow_reconcile.core.actions.slack import SlackExecutor, message_id
            from airflow_reconcile.core.retry import RetryPolicy
            from airflow_reconcile.provider.hooks import slack_client

            retry = RetryPolicy.of(spec)
            slack = SlackExecutor(slack_client(spec.targets.slack.connection_id), "", retry)
            for channel, digest in messages.items():
                # One id per (spec, source run, channel): a retried digest task never posts twice.
                op_id = message_id("digest", spec.name, run_id, channel)
                outcome = retry.call(partial(slack.post_once, channel, digest.summary, op_id, blocks=digest.blocks),
                                     f"Slack digest to {channel}")  # fmt: skip
                # The items go in the summary's thread, once as well (found there by their own id).
                retry.call(partial(slack.post_once, channel, digest.items, f"{op_id}-items",
                                   thread_ts=str(outcome.prior["ts"]), mrkdwn=True), f"Slack digest to {channel}")  # fmt: skip
                self.log.info(
                    "digest for %s: %s", channel, "posted" if outcome.status == Status.APPLIED else "already there"
                )
            # One digest per triggering event: the record counts the retries of all of them.
            audit.details["retries"] = dict(Counter(audit.details.get("retries") or {}) + retry.retried)
        else:
            for channel, digest in messages.items():
                self.log.info("shadow mode, not posted to %s:\n%s\n%s", channel, digest.summary, digest.items)
        return {"spec": spec.name, "source_run": run_id, "channels": sorted(messages), "posted": post, "mode": mode}
