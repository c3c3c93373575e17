"""Slack executor over a ``slack_sdk`` WebClient (the Airflow layer builds it with ``SlackHook``)."""

from __future__ import annotations

from typing import Any

from airflow_reconcile.actions.base import Outcome
from airflow_reconcile.errors import PersistentError

EVENT_TYPE = "reconcile_operation"


def escape_mrkdwn(text: str) -> str:
    """Data never changes the meaning of a message: no mentions, links or markup from values."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackExecutor:
    target = "slack"

    def __init__(self, client: Any, default_channel: str) -> None:
        self.client = client
        self.default_channel = default_channel

    def apply(self, action: str, target_ref: str | None, params: dict[str, Any], operation_id: str) -> Outcome:
        if action != "notify":
            raise PersistentError(f"the slack target does not support action {action!r}")
        channel = params.get("channel") or self.default_channel
        self.client.chat_postMessage(
            channel=channel,
            text=escape_mrkdwn(params.get("text", "")),
            metadata={"event_type": EVENT_TYPE, "event_payload": {"operation_id": operation_id}},
        )
        return Outcome(operation_id, "applied")
