"""Slack Web API stand-in: auth.test, chat.postMessage, conversations.history."""

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

    def reset(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def seed(self, data: dict[str, Any]) -> None:
        self.messages.extend(data.get("messages", []))

    def state(self) -> dict[str, Any]:
        return {"messages": list(self.messages)}

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
        message = {"channel": channel, "ts": ts, "text": args.get("text", ""), "blocks": args.get("blocks"),
                   "thread_ts": args.get("thread_ts"), "metadata": metadata}  # fmt: skip
        self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def history(self, query: dict[str, Any], body: Any, **_: Any) -> dict[str, Any]:
        args = {**query, **(body if isinstance(body, dict) else {})}
        channel = args.get("channel")
        found = [m for m in self.messages if m["channel"] == channel]
        limit = int(args.get("limit", 100))
        return {"ok": True, "messages": list(reversed(found))[:limit], "has_more": len(found) > limit}
