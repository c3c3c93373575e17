"""Slack Web API stand-in: auth.test, chat.postMessage, conversations.list, conversations.history.

As in Slack, a channel has an id (``C...``): chat.postMessage takes a name or an id and answers
with the id; conversations.history takes only the id. Channels are created on first post (or seeded).
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

    def reset(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.channels: dict[str, str] = {}  # name (no '#') -> id

    def seed(self, data: dict[str, Any]) -> None:
        for name in data.get("channels", []):
            self._channel_id(name)
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
        items = sorted(self.channels.items(), key=lambda kv: kv[1])
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
        found = [m for m in self.messages if m["channel_id"] == channel and float(m["ts"]) >= oldest]
        if str(args.get("include_all_metadata", "")).lower() not in ("1", "true"):
            found = [{k: v for k, v in m.items() if k != "metadata"} for m in found]
        limit = int(args.get("limit", 100))
        return {"ok": True, "messages": list(reversed(found))[:limit], "has_more": len(found) > limit}
