"""Slack digest of a drift report to the owning teams' channels, run by an asset-triggered DAG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_reconcile.hooks import DEFAULT_AUDIT_CONN_ID
from airflow_reconcile.operators.audited import AuditDraft, AuditedTaskMixin

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

    from airflow_reconcile.spec import Spec

MAX_ITEMS = 15


def digest_messages(spec: Spec, drift: pd.DataFrame, counts: dict[str, Any], run_id: str) -> dict[str, str]:
    """channel → message text (mrkdwn), one per owning team; values from data are escaped."""
    from airflow_reconcile.actions.slack import escape_mrkdwn

    slack = spec.targets.slack
    team_col = slack.team_column
    groups: dict[str, pd.DataFrame] = {}
    if team_col:
        team = drift.get(f"desired.{team_col}")
        if team is None:
            team = drift.get(f"actual.{team_col}")
        if team is not None:
            team = team.fillna(drift.get(f"actual.{team_col}", team)).fillna("unowned")
            groups = {str(t): g for t, g in drift.groupby(team, sort=True)}
    if not groups:
        groups = {"": drift}
    messages: dict[str, str] = {}
    for team, rows in groups.items():
        channel = slack.channel_template.format(team=team) if team else slack.digest_channel
        kinds = rows["drift_kind"].value_counts().to_dict()
        lines = [
            f"*Drift digest: {spec.name}* (run `{escape_mrkdwn(run_id)}`)"
            + (f" for team *{escape_mrkdwn(team)}*" if team else ""),
            ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no drift",
        ]
        key = spec.sources.desired.key
        for row in rows.head(MAX_ITEMS).to_dict("records"):
            entity = escape_mrkdwn("|".join(str(row[k]) for k in key))
            detail = ""
            if row["drift_kind"] == "changed":
                parts = []
                for col in str(row["changed_columns"]).split(","):
                    before, after = row.get(f"actual.{col}"), row.get(f"desired.{col}")
                    parts.append(f"{col}: {escape_mrkdwn(str(before))} → {escape_mrkdwn(str(after))}")
                detail = "; ".join(parts)
            lines.append(f"• `{entity}` {row['drift_kind']} {detail}".rstrip())
        if len(rows) > MAX_ITEMS:
            lines.append(f"… and {len(rows) - MAX_ITEMS} more")
        messages[channel] = "\n".join(lines)
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
        events = [e for evs in context["triggering_asset_events"].values() for e in evs]
        if not events:
            self.log.info("no triggering drift-report events (manual run?): nothing to digest")
            return []
        results = []
        for event in events:
            self.spec_path = event.extra["spec_path"]
            results.append(self.audited(context, lambda spec, audit, ev=event: self.digest(spec, audit, ev)))
        return results

    def digest(self, spec: Spec, audit: AuditDraft, event: Any) -> dict[str, Any]:
        from airflow_reconcile.workspace import Manifest, read_frame

        extra = event.extra
        manifest = Manifest(uri=extra["uri"], rows=extra["rows"], content_hash=extra["content_hash"])
        audit.inputs.append(manifest.to_dict())
        messages = digest_messages(spec, read_frame(manifest), extra["counts"], extra["run_id"])
        post = extra.get("mode") == "apply" or spec.targets.slack.post_in_shadow
        if post:
            from airflow.providers.slack.hooks.slack import SlackHook

            client = SlackHook(slack_conn_id=spec.targets.slack.connection_id).client
            for channel, text in messages.items():
                client.chat_postMessage(channel=channel, text=text, mrkdwn=True)
                self.log.info("posted the digest to %s", channel)
        else:
            for channel, text in messages.items():
                self.log.info("shadow mode, not posted to %s:\n%s", channel, text)
        audit.details.update(digest={"channels": sorted(messages), "posted": post, "source_run": extra["run_id"]})
        return {"spec": spec.name, "channels": sorted(messages), "posted": post}
