"""Slack digest of a drift report to the owning teams' channels, run by an asset-triggered DAG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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

    from airflow_reconcile.core.actions.slack import escape_mrkdwn

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
            f"*Drift digest: {spec.name}* (run `{escape_mrkdwn(run_id)}`)"
            + (f" for team *{escape_mrkdwn(', '.join(teams))}*" if teams else "")
            + f"\n{counts}"
        )
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},  # plain text: never markup
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{n}"} for k, n in sorted(kinds.items())]},
            {"type": "context", "elements": [{"type": "mrkdwn",
                                              "text": f"run `{escape_mrkdwn(run_id)}` · details in the thread"}]},
        ]  # fmt: skip
        lines = []
        for row in rows.head(MAX_ITEMS).to_dict("records"):
            entity = escape_mrkdwn("|".join(str(row[k]) for k in key))
            detail = ""
            if row["drift_kind"] == DriftKind.CHANGED:
                detail = "; ".join(
                    f"{col}: {escape_mrkdwn(str(row.get(f'actual.{col}')))} → {escape_mrkdwn(str(row.get(f'desired.{col}')))}"
                    for col in str(row["changed_columns"]).split(",")
                )
            lines.append(f"• `{entity}` {row['drift_kind']} {detail}".rstrip())
        if len(rows) > MAX_ITEMS:
            lines.append(f"… and {len(rows) - MAX_ITEMS} more")
        messages[str(name)] = Digest(summary=summary, blocks=blocks, items="\n".join(lines))
    return messages


class SlackDriftDigestOperator(AuditedTaskMixin, BaseOperator):
    """Post a digest of each triggering drift-report asset event to Slack.

    Honours the reconciliation's mode: in shadow mode the digest goes to the task log only,
    unless the spec sets ``targets.slack.post_in_shadow``.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#e8fdfb"

    def __init__(self, *, audit_conn_id: str = DEFAULT_AUDIT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.audit_conn_id = audit_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        return self.audited(context, lambda _spec, audit: self.digest_all(context, audit))

    def digest_all(self, context: Context, audit: AuditDraft) -> list[dict[str, Any]]:
        """One digest per triggering drift-report event (several queue up if runs overlap)."""
        from airflow_reconcile.core.spec import load_spec

        events = [e for evs in context["triggering_asset_events"].values() for e in evs]
        if not events:
            self.log.info("no triggering drift-report events (manual run?): nothing to digest")
        results = []
        specs = []
        for event in events:
            spec = load_spec(event.extra["spec_path"])
            specs.append(spec)
            results.append(self.digest(spec, audit, event.extra))
        audit.spec = ",".join(sorted({s.name for s in specs}))
        audit.policy_version = ",".join(sorted({s.policy_version for s in specs}))
        audit.details["digests"] = results
        return results

    def digest(self, spec: Spec, audit: AuditDraft, extra: dict[str, Any]) -> dict[str, Any]:
        from airflow_reconcile.core.workspace import Manifest, read_frame

        manifest = Manifest(uri=extra["uri"], rows=extra["rows"], content_hash=extra["content_hash"])
        audit.inputs.append(manifest.to_dict())
        messages = digest_messages(spec, read_frame(manifest), extra["run_id"])
        post = extra.get("mode") == Mode.APPLY or spec.targets.slack.post_in_shadow
        if post:
            from airflow.providers.slack.hooks.slack import SlackHook

            from airflow_reconcile.core.actions.slack import SlackExecutor, message_id

            slack = SlackExecutor(SlackHook(slack_conn_id=spec.targets.slack.connection_id).client, "")
            for channel, digest in messages.items():
                # One id per (spec, source run, channel): a retried digest task never posts twice.
                op_id = message_id("digest", spec.name, extra["run_id"], channel)
                outcome = slack.post_once(channel, digest.summary, op_id, blocks=digest.blocks)
                # The items go in the summary's thread, once as well (found there by their own id).
                slack.post_once(channel, digest.items, f"{op_id}-items",
                                thread_ts=str(outcome.prior["ts"]), mrkdwn=True)  # fmt: skip
                self.log.info(
                    "digest for %s: %s", channel, "posted" if outcome.status == Status.APPLIED else "already there"
                )
        else:
            for channel, digest in messages.items():
                self.log.info("shadow mode, not posted to %s:\n%s\n%s", channel, digest.summary, digest.items)
        return {"spec": spec.name, "source_run": extra["run_id"], "channels": sorted(messages), "posted": post}
