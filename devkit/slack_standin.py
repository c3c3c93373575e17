"""Slack Web API stand-in: auth.test, chat.postMessage, conversations.list/history/replies/open,
users.lookupByEmail.

As in Slack, a channel has an id (``C...``): chat.postMessage takes a name or an id and answers
with the id; conversations.history takes only the id and lists no thread replies (those are in
conversations.replies). Channels are created on first post (or seeded); a direct-message channel
(``D...``) is opened with a seeded user's id.
"""

from __future__ import annotations

import json
import time
from typing import Any

from devkit.http import StandIn


class SlackStandIn(StandIn):
    name = "slack"

    def __init__(self, token: str = "xoxb-stand-in") -> None:
        self.token = token
        super().__init__()
        for method in ("GET", "POST"):
            self.route(method, "/api/auth.test", self.auth_test)
            self.route(method, "/api/chat.postMessage", self.post_message)
            self.route(method, "/api/conversations.history", self.history)
            self.route(method, "/api/conversations.list", self.channel_list)
            self.route(method, "/api/conversations.replies", self.replies)
            self.route(method, "/api/conversations.open", self.open_direct)
            self.route(method, "/api/users.lookupByEmail", self.lookup_by_email)

    def reset(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.channels: dict[str, str] = {}  # name (no '#') -> id
        self.users: dict[str, dict[str, Any]] = {}  # id -> {id, name, email}

    def seed(self, data: dict[str, Any]) -> None:
        for name in data.get("channels", []):
            self._channel_id(name)
        for user in data.get("users", []):
            self.users[user["id"]] = dict(user)
        self.messages.extend(data.get("messages", []))

    def state(self) -> dict[str, Any]:
        return {"messages": list(self.messages), "channels": dict(self.channels)}

    def _channel_id(self, channel: str) -> str:
        if channel in self.channels.values():
            return channel
        name = channel.lstrip("#")
        return self.channels.setdefault(name, f"C{len(self.channels) + 1:08d}")

    def channel_list(self, query: dict[str, Any], body: Any, **_: Any) -> dict[str, Any]:
        args = {**query, **(body if isinstance(body, dict) else {})}
        items = sorted(((n, c) for n, c in self.channels.items() if not c.startswith("D")), key=lambda kv: kv[1])
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit", 100))
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {"ok": True, "channels": [{"id": cid, "name": name, "is_member": True} for name, cid in page],
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}  # fmt: skip

    def authorised(self, headers: Any) -> bool:
        return headers.get("Authorization", "") == f"Bearer {self.token}"

    def auth_test(self, **_: Any) -> dict[str, Any]:
        return {"ok": True, "url": "http://127.0.0.1/", "team": "stand-in", "user": "reconcile-bot",
                "team_id": "T0000", "user_id": "U0000", "bot_id": "B0000"}  # fmt: skip

    def post_message(self, query: dict[str, Any], body: Any, **_: Any) -> dict[str, Any]:
        args = {**query, **(body if isinstance(body, dict) else {})}
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        metadata = args.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        ts = f"{time.time():.6f}"
        message = {"channel": channel, "channel_id": self._channel_id(channel), "ts": ts,
                   "text": args.get("text", ""), "blocks": args.get("blocks"),
                   "thread_ts": args.get("thread_ts"), "metadata": metadata}  # fmt: skip
        self.messages.append(message)
        return {"ok": True, "channel": message["channel_id"], "ts": ts, "message": message}

    def history(self, query: dict[str, Any], body: Any, **_: Any) -> dict[str, Any]:
        args = {**query, **(body if isinstance(body, dict) else {})}
        channel = args.get("channel")
        if channel not in self.channels.values():  # Slack wants the id here, not '#name'
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(args.get("oldest") or 0)
        found = [m for m in self.messages if m["channel_id"] == channel and float(m["ts"]) >= oldest
                 and m.get("thread_ts") in (None, m["ts"])]  # fmt: skip
        return self._page(args, list(reversed(found)))

    def replies(self, query: dict[str, Any], body: Any, **_: Any) -> dict[str, Any]:
        """A thread: its parent message first, then the replies, oldest first."""
        args = {**query, **(body if isinstance(body, dict) else {})}
        channel, ts = args.get("channel"), args.get("ts")
        if channel not in self.channels.values():
            return {"ok": False, "error": "channel_not_found"}
        thread = [m for m in self.messages if m["channel_id"] == channel and ts in (m["ts"], m.get("thread_ts"))]
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        return self._page(args, thread)

    @staticmethod
    def _page(args: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
        if str(args.get("include_all_metadata", "")).lower() not in ("1", "true"):
            found = [{k: v for k, v in m.items() if k != "metadata"} for m in found]
        limit = int(args.get("limit", 100))
        return {"ok": True, "messages": found[:limit], "has_more": len(found) > limit}

    def open_direct(self, query: dict[str, Any], body: Any, **_: Any) -> dict[str, Any]:
        args = {**query, **(body if isinstance(body, dict) else {})}
        user = str(args.get("users", ""))
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}
        channel = self.channels.setdefault(f"dm-{user}", f"D{user[1:]}")
        return {"ok": True, "channel": {"id": channel}}

    def lookup_by_email(self, query: dict[str, Any], body: Any, **_: Any) -> dict[str, Any]:
        args = {**query, **(body if isinstance(body, dict) else {})}
        for user in self.users.values():
            if user.get("email", "").casefold() == str(args.get("email", "")).casefold():
                return {"ok": True, "user": {"id": user["id"], "name": user["name"]}}
        return {"ok": False, "error": "users_not_found"}
