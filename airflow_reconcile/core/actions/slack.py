"""Slack executor over a ``slack_sdk`` WebClient (the Airflow layer builds it with ``SlackHook``)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from airflow_reconcile.core.actions.base import BeforeWrite, no_record
from airflow_reconcile.core.catalog import ActionRecord, TargetRecord
from airflow_reconcile.core.errors import PersistentError
from airflow_reconcile.core.markup import mrkdwn_entities
from airflow_reconcile.core.plan import Outcome
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.core.target_settings import SlackSettings
from airflow_reconcile.core.vocabulary import Status

TARGET = TargetRecord(
    name="slack",
    executor="airflow_reconcile.core.actions.slack:SlackExecutor",
    item="message",
    title="Slack",
    rate=1.0,  # Slack allows about one message a second per channel
    column_settings={"team_column": "either"},
    settings=SlackSettings,  # the team whose channel a notification goes to
    hints={404: "the channel does not exist or the app is not in it: invite the app or fix the channel, then replay"},
    actions=(
        ActionRecord("notify", ("text",), needs_ref=False, once_only=True, markup={"text": "slack_mrkdwn"},
                     max_length={"text": 40_000}, optional=("channel",),
                     not_undone="a Slack message that was sent cannot be unsent; delete it in Slack if it must go"),
    ),
)  # fmt: skip
EVENT_TYPE = "reconcile_operation"
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def message_id(kind: str, *parts: str) -> str:
    """A stable id for a message the package posts on its own (digest, watchdog): ``kind-<hash>``.

    The same parts give the same id, so a retried or repeated task finds its message and never posts twice.
    """
    return f"{kind}-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class SlackExecutor:
    """Posts through the Slack Web API, at most once per operation id.

    Every message carries the operation id in its metadata. Before posting, the channel's recent
    history (``conversations.history`` with ``include_all_metadata``, by channel id) — or, for a
    threaded follow-up, the thread (``conversations.replies``) — is searched for it, so a retry after
    a timeout, or a re-run, never posts twice. A channel is a ``#name``, a channel id, or a person
    (a user id ``U…`` or an e-mail address): a direct message through ``conversations.open``.
    """

    target = "slack"
    LOOKBACK_SECONDS = 7 * 86400

    def __init__(self, client: Any, default_channel: str, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.default_channel = default_channel
        self.retry = retry or RetryPolicy()  # reads (history, lookups) are tried again on their own
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def apply(
        self, action: str, target_ref: str | None, params: dict[str, Any], operation_id: str,
        before_write: BeforeWrite = no_record,
    ) -> Outcome:  # fmt: skip
        if TARGET.action(action) is None:
            raise PersistentError(f"the slack target does not support action {action!r}")
        channel = params.get("channel") or self.default_channel
        return self.post_once(channel, mrkdwn_entities(params.get("text", "")), operation_id, before_write=before_write)

    def post_once(
        self,
        channel: str,
        text: str,
        operation_id: str,
        *,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        before_write: BeforeWrite = no_record,
        **extra: Any,
    ) -> Outcome:
        """Post ``text`` (already safe mrkdwn; the notification text when ``blocks`` are given) unless
        a message with this operation id is there; ``thread_ts`` posts it as a reply in that thread."""
        channel_id = self._channel_id(channel)
        if channel_id:
            found = self._posted(channel_id, operation_id, thread_ts)
            if found is not None:
                return Outcome(operation_id, Status.SKIPPED, prior={"channel": channel_id, "ts": found.get("ts")})
        if thread_ts:
            extra["thread_ts"] = thread_ts
        if blocks:
            extra["blocks"] = blocks
        before_write({"channel": channel_id or channel})
        response = self.client.chat_postMessage(
            channel=channel_id or channel,
            text=text,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"operation_id": operation_id}},
            **extra,
        )
        if response.get("channel") and not channel_id:
            with self._lock:
                self._ids[channel.lstrip("#")] = str(response["channel"])
        return Outcome(
            operation_id, Status.APPLIED, prior={"channel": response.get("channel"), "ts": response.get("ts")}
        )

    def _read(self, call: Callable[[], Any], what: str) -> Any:
        return self.retry.call(call, f"Slack {what}")

    def _channel_id(self, channel: str) -> str | None:
        """A channel's id (``conversations.history`` takes no names); None when the bot cannot see it yet."""
        if CHANNEL_ID.match(channel):
            return channel
        if USER_ID.match(channel) or EMAIL.match(channel):
            return self._direct(channel)
        name = channel.lstrip("#")
        if name in self._ids:
            return self._ids[name]
        cursor = None
        while True:
            page = self._read(partial(self.client.conversations_list, types="public_channel,private_channel",
                                      exclude_archived=True, limit=200, cursor=cursor), "conversations.list")  # fmt: skip
            with self._lock:
                for item in page.get("channels", []):
                    self._ids[str(item["name"])] = str(item["id"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if name in self._ids or not cursor:
                return self._ids.get(name)

    def _direct(self, person: str) -> str:
        """The direct-message channel with a person, by user id or e-mail (scopes im:write, users:read.email)."""
        if person in self._ids:
            return self._ids[person]
        user = person
        if EMAIL.match(person):
            user = str(
                self._read(partial(self.client.users_lookupByEmail, email=person), "users.lookupByEmail")["user"]["id"]
            )
        channel = str(
            self._read(partial(self.client.conversations_open, users=user), "conversations.open")["channel"]["id"]
        )
        with self._lock:
            self._ids[person] = channel
        return channel

    def _posted(self, channel_id: str, operation_id: str, thread_ts: str | None = None) -> dict[str, Any] | None:
        """The message carrying this operation id in the channel's recent history (or the thread)."""
        oldest = f"{time.time() - self.LOOKBACK_SECONDS:.6f}"
        cursor = None
        while True:
            if thread_ts:
                page = self._read(partial(self.client.conversations_replies, channel=channel_id, ts=thread_ts,
                                          include_all_metadata=True, limit=200, cursor=cursor), "conversations.replies")  # fmt: skip
            else:
                page = self._read(partial(self.client.conversations_history, channel=channel_id, include_all_metadata=True,
                                          oldest=oldest, limit=200, cursor=cursor), "conversations.history")  # fmt: skip
            for message in page.get("messages", []):
                meta = message.get("metadata") or {}
                if (
                    meta.get("event_type") == EVENT_TYPE
                    and (meta.get("event_payload") or {}).get("operation_id") == operation_id
                ):
                    return dict(message)
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                return None
