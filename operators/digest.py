"""Slack digest of a run's drift report and plan to the owning teams' channels, run by an asset-triggered DAG
(the plan asset ``evaluate_rules`` updates: by then both the drift and what no rule handles are known)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_reconcile.core.vocabulary import Mode, Status
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


def _line(row: dict[str, Any], key: Sequence[str]) -> str:
    from airflow_reconcile.core.drift import row_changes, row_entity
    from airflow_reconcile.core.markup import escape_mrkdwn, mrkdwn_code

    detail = "; ".join(f"{escape_mrkdwn(c)}: {escape_mrkdwn(before)} → {escape_mrkdwn(after)}"
                       for c, before, after in row_changes(row))  # fmt: skip
    return f"• `{mrkdwn_code(row_entity(row, key))}` {row['drift_kind']} {detail}".rstrip()


def unhandled_lines(summary: Mapping[str, Any]) -> list[str]:
    """What the plan says no rule handles (counts, then its first rows), for the digest channel."""
    from airflow_reconcile.core.markup import escape_mrkdwn, mrkdwn_code

    count = int(summary.get("unhandled") or 0)
    if not count:
        return []
    kinds = ", ".join(f"{n} {k}" for k, n in sorted((summary.get("unhandled_by_kind") or {}).items()))
    columns = ", ".join(f"{escape_mrkdwn(c)} {n}" for c, n in sorted((summary.get("unhandled_columns") or {}).items()))
    lines = [f"*{count} drift row(s) no rule handles* ({kinds}" + (f"; changed columns: {columns}" if columns else "")
             + "): they are not corrected until a rule says what to do"]  # fmt: skip
    for example in summary.get("unhandled_examples") or []:
        cols = f" in {escape_mrkdwn(example['columns'])}" if example.get("columns") else ""
        lines.append(f"• `{mrkdwn_code(str(example['entity']))}` {example['kind']}{cols}")
    if count > len(summary.get("unhandled_examples") or []):
        lines.append(f"… and {count - len(summary['unhandled_examples'])} more (the run's evaluate_rules audit record)")
    return lines


def digest_messages(
    spec: Spec, drift: pd.DataFrame, run_id: str, plan: Mapping[str, Any] | None = None
) -> dict[str, Digest]:
    """channel → digest: one per owning team, the digest channel for the rest — and, in the digest channel,
    the drift no rule handles (``plan``: the run's plan summary). No drift, nothing unhandled: no digest.

    Values that come from data are escaped: they can never mention, link or format.
    """
    import pandas as pd

    from airflow_reconcile.core.markup import escape_mrkdwn, mrkdwn_code

    slack = spec.targets.slack
    teams: list[str | None] = [None] * len(drift)
    for side in ("desired", "actual"):
        column = f"{side}.{slack.team_column}"
        if slack.team_column and column in drift.columns:
            teams = [t if t is not None else (None if pd.isna(v) else str(v))
                     for t, v in zip(teams, drift[column].tolist(), strict=True)]  # fmt: skip
    # Plain Python, not pandas: a column every row lacks (no row has the desired side's team) is typed null.
    channels = [slack.digest_channel if t is None else slack.channel_template.format(team=t) for t in teams]
    unhandled = unhandled_lines(plan or {})
    key = spec.sources.desired.key
    by_channel: dict[str, list[int]] = {}
    for position, channel in enumerate(channels):
        by_channel.setdefault(channel, []).append(position)
    if unhandled:
        by_channel.setdefault(slack.digest_channel, [])
    records: list[dict[str, Any]] = drift.astype(object).where(drift.notna(), None).to_dict("records")  # type: ignore[assignment]
    messages: dict[str, Digest] = {}
    for name in sorted(by_channel):
        rows = [records[p] for p in by_channel[name]]
        named = sorted({t for t in (teams[p] for p in by_channel[name]) if t is not None})
        kinds = dict(Counter(str(r["drift_kind"]) for r in rows))
        extra = unhandled if name == slack.digest_channel else []
        counts = ", ".join([*(f"{n} {k}" for k, n in sorted(kinds.items())),
                            *([f"{int((plan or {})['unhandled'])} no rule handles"] if extra else [])])  # fmt: skip
        title = f"Drift digest: {spec.name}" + (f" for team {', '.join(named)}" if named else "")
        summary = (
            f"*Drift digest: {spec.name}* (run `{mrkdwn_code(run_id)}`)"
            + (f" for team *{escape_mrkdwn(', '.join(named))}*" if named else "")
            + f"\n{counts}"
        )
        fields = [{"type": "mrkdwn", "text": f"*{k}*\n{n}"} for k, n in sorted(kinds.items())]
        if extra:
            fields.append({"type": "mrkdwn", "text": f"*no rule*\n{int((plan or {})['unhandled'])}"})
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},  # plain text: never markup
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn",
                                              "text": f"run `{mrkdwn_code(run_id)}` · details in the thread"}]},
        ]  # fmt: skip
        lines = [_line(row, key) for row in rows[:MAX_ITEMS]]
        if len(rows) > MAX_ITEMS:
            lines.append(f"… and {len(rows) - MAX_ITEMS} more")
        messages[name] = Digest(summary=summary, blocks=blocks, items="\n".join([*extra, *lines]))
    return messages


class _Ours:
    """What every event of one digest try is traced against, read once for all of them: the specs
    of this DAG's folder and the audit store."""

    def __init__(self, specs_dir: str, audit_conn_id: str) -> None:
        self.specs_dir, self.audit_conn_id = specs_dir, audit_conn_id

    @cached_property
    def specs(self) -> list[Spec]:
        """The folder's valid specs: one invalid spec never holds back the digests of the others."""
        import logging

        from airflow_reconcile.core.spec import load_specs

        return load_specs(self.specs_dir, logging.getLogger(__name__).warning)

    @cached_property
    def store(self) -> Any:
        from airflow_reconcile.provider.hooks import AuditStoreHook

        return AuditStoreHook(self.audit_conn_id).store


class SlackDriftDigestOperator(AuditedTaskMixin, BaseOperator):
    """Post a digest of each triggering plan asset event to Slack: the run's drift and what no rule handles.

    An asset event's extra is not trusted (anyone allowed to create asset events can write it): the
    event says only *which run* to digest, through the source DAG and run that Airflow itself
    stamps on an event a task emitted. The spec is the one of that DAG in this DAG's own specs
    folder, the drift report and its content hash are what the run's ``detect_drift`` audit record
    holds, the plan's summary what its ``evaluate_rules`` record holds, and the mode is the one the
    ``detect_drift`` record says the run ran in. An event that cannot be traced
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
        """One digest per triggering plan event (several queue up if runs overlap)."""
        from airflow_reconcile.core.errors import ReconcileError

        events = [e for evs in context["triggering_asset_events"].values() for e in evs]
        if not events:
            self.log.info("no triggering plan events (manual run?): nothing to digest")
        results, refused, specs = [], [], []
        ours = _Ours(self.specs_dir, self.audit_conn_id)
        for event in events:
            source = {"source_dag_id": event.source_dag_id, "source_run_id": event.source_run_id}
            try:
                spec, report, plan, mode = self.trusted(event, ours)
            except ReconcileError as exc:
                self.log.warning("asset event %s refused: %s", source, exc)
                refused.append({**source, "why": str(exc)})
                continue
            specs.append(spec)
            results.append(self.digest(spec, audit, report, plan, str(event.source_run_id), mode))
        audit.spec = ",".join(sorted({s.name for s in specs}))
        audit.policy_version = ",".join(sorted({s.policy_version for s in specs}))
        audit.details["digests"] = results
        if refused:
            audit.details["refused"] = refused
            raise ReconcileError(
                f"{len(refused)} plan event(s) could not be traced to a reconciliation run of a spec in "
                f"{self.specs_dir} and were not digested (first: {refused[0]['why']}); see this try's audit record"
            )
        return results

    def trusted(self, event: Any, ours: _Ours) -> tuple[Spec, Any, dict[str, Any], str]:
        """(spec, drift report manifest, plan summary, mode) of the run that emitted ``event``, from our own
        records: the run's successful ``detect_drift`` and ``evaluate_rules`` tries."""
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
        expected = Workspace(root=self.workspace_root or workspace_root(), spec_name=spec.name, run_id=run_id)
        found: dict[str, Any] = {}
        for task_id, name in ((TaskId.DETECT_DRIFT, "drift"), (TaskId.EVALUATE_RULES, "plan")):
            records = [r for r in ours.store.records(dag_id=dag_id, run_id=run_id)
                       if r["task_id"] == task_id and r["outcome"] == "success"]  # fmt: skip
            if not records or not records[-1]["outputs"]:
                raise ReconcileError(f"run {run_id!r} of {dag_id} has no successful {task_id} audit record")
            manifest = Manifest.from_dict(records[-1]["outputs"][0])
            if manifest.uri != expected.uri(name):
                raise ReconcileError(f"run {run_id!r} of {dag_id}: its {name} is not in this workspace")
            found[name] = (manifest, records[-1]["details"])
        report, drift_details = found["drift"]
        mode = str(drift_details.get("mode") or spec.mode)
        return spec, report, dict(found["plan"][1].get("plan") or {}), mode

    def digest(
        self, spec: Spec, audit: AuditDraft, report: Any, plan: dict[str, Any], run_id: str, mode: str
    ) -> dict[str, Any]:
        audit.inputs.append(report.to_dict())
        messages = digest_messages(spec, self.read_frame(report), run_id, plan)
        post = mode == Mode.APPLY or spec.targets.slack.post_in_shadow
        done = {"spec": spec.name, "source_run": run_id, "channels": sorted(messages), "posted": post and bool(messages),
                "mode": mode, "drift": report.rows, "unhandled": int(plan.get("unhandled") or 0)}  # fmt: skip
        if not messages:
            self.log.info("run %s of %s: no drift, nothing unhandled: the target matches; nothing to post",
                          run_id, spec.name)  # fmt: skip
            return {**done, "drift": "none"}
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
        return done
