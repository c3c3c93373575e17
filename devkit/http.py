"""A small routed HTTP server with a control API and fault injection, shared by both stand-ins."""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

Route = tuple[str, re.Pattern[str], Callable[..., Any]]


class Reply(Exception):
    """Raised by a handler to answer with a status and a JSON body."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class Faults:
    """Faults injected through ``POST /_control/faults``; each entry applies ``times`` times.

    Entry: ``{"method": "PUT", "path": "regex", "status": 503, "times": 1, "delay": 0,
    "retry_after": 2, "after_write": false, "drop": false, "rate": 0.0, "headers": {}}``. ``after_write`` lets
    the request take effect and then fails the response (or, with ``delay``, makes the client time out after
    the write). ``drop`` closes the connection without an answer (with ``after_write``: a lost reply).
    ``rate`` (0..1) fails that fraction of matching requests instead of ``times``: drawn from a random
    generator seeded with ``seed`` (default 0, so a test sees the same faults every time), and never more
    than ``streak`` (default 2) times in a row for one method and path, as a flaky service that is not
    down. ``{"latency": 0.02, "rate": 1}`` answers every matching request normally, 20 ms late (a slow network).
    ``injected`` counts the faults by kind (``503``, ``429``, ``drop``, ``after_write``).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []
        self.rngs: dict[int, random.Random] = {}
        self.streaks: dict[tuple[int, str, str], int] = {}
        self.injected: Counter[str] = Counter()

    def set(self, entries: list[dict[str, Any]]) -> None:
        with self.lock:
            self.entries = [dict(e) for e in entries]
            self.rngs = {i: random.Random(e.get("seed", 0)) for i, e in enumerate(self.entries)}  # noqa: S311
            self.streaks = {}
            self.injected = Counter()

    def take(self, method: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            for i, entry in enumerate(self.entries):
                if entry.get("method", method).upper() != method or not re.search(entry.get("path", ""), path):
                    continue
                if entry.get("rate"):
                    if entry.get("latency"):
                        return entry
                    key = (i, method, path)
                    if self.rngs[i].random() < float(entry["rate"]) and self.streaks.get(key, 0) < entry.get(
                        "streak", 2
                    ):
                        self.streaks[key] = self.streaks.get(key, 0) + 1
                        self._count(entry)
                        return entry
                    self.streaks[key] = 0
                    continue
                if entry.get("times", 1) > 0:
                    entry["times"] = entry.get("times", 1) - 1
                    self._count(entry)
                    return entry
        return None

    def _count(self, entry: dict[str, Any]) -> None:
        kind = "drop" if entry.get("drop") else str(entry.get("status", 503))
        self.injected[f"{kind} after write" if entry.get("after_write") else kind] += 1


class StandIn:
    """Subclasses fill ``routes`` and implement ``reset``, ``seed`` and ``state``."""

    name = "stand-in"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults = Faults()
        self.routes: list[Route] = []
        self.requests: list[dict[str, Any]] = []
        self.base_url = "http://127.0.0.1"
        self.reset()

    def route(self, method: str, pattern: str, handler: Callable[..., Any]) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def reset(self) -> None:
        raise NotImplementedError

    def seed(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def authorised(self, headers: Any) -> bool:
        return True

    def control(self, method: str, path: str, body: Any) -> Any:
        with self.lock:
            if path == "/_control/reset" and method == "POST":
                self.reset()
                self.faults.set([])
                return {"ok": True}
            if path == "/_control/seed" and method == "POST":
                self.seed(body or {})
                return {"ok": True}
            if path == "/_control/faults" and method == "POST":
                self.faults.set(body or [])
                return {"ok": True}
            if path == "/_control/state" and method == "GET":
                return {**self.state(), "requests": list(self.requests)}
        raise Reply(404, {"error": f"no control endpoint {method} {path}"})

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; without TCP_NODELAY, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every keep-alive response.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet: tests read state, not logs
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if not raw:
                    return None
                ctype = self.headers.get("Content-Type", "")
                if "application/x-www-form-urlencoded" in ctype:
                    return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                try:
                    return json.loads(raw)
                except ValueError:
                    return raw.decode(errors="replace")

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _dispatch(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(url.query).items()}
                body = self._body()
                try:
                    if url.path.startswith("/_control/"):
                        self._send(200, app.control(method, url.path, body))
                        return
                    if not app.authorised(self.headers):
                        raise Reply(
                            401, {"errorMessages": ["authentication required"], "ok": False, "error": "not_authed"}
                        )
                    fault = app.faults.take(method, url.path)
                    if fault and fault.get("latency"):  # a slow network, not an error
                        time.sleep(float(fault["latency"]))
                        fault = None
                    if fault and not fault.get("after_write"):
                        self._fault(fault)
                        return
                    status, result = self._call(method, url.path, query, body)
                    with app.lock:
                        app.requests.append({"method": method, "path": url.path, "status": status, "query": query,
                                             "fault": bool(fault), "at": time.time()})  # fmt: skip
                    if fault:
                        self._fault(fault)
                        return
                    self._send(status, result)
                except Reply as reply:
                    self._send(reply.status, reply.body, reply.headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _fault(self, fault: dict[str, Any]) -> None:
                if fault.get("delay"):
                    time.sleep(float(fault["delay"]))
                if fault.get("drop"):  # no answer at all: the client sees the connection closed
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") else {}
                headers.update(fault.get("headers") or {})  # e.g. a Set-Cookie a real server sends with its error
                status = int(fault.get("status", 503))
                self._send(
                    status, {"errorMessages": [f"injected fault {status}"], "ok": False, "error": "injected"}, headers
                )

            def _call(self, method: str, path: str, query: dict[str, Any], body: Any) -> tuple[int, Any]:
                for r_method, pattern, handler in app.routes:
                    match = pattern.match(path)
                    if match and r_method == method:
                        with app.lock:
                            result = handler(query=query, body=body, **match.groupdict())
                        return result if isinstance(result, tuple) else (200, result)
                raise Reply(
                    404, {"errorMessages": [f"no route {method} {path}"], "ok": False, "error": "unknown_method"}
                )

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

        return Handler

    @contextmanager
    def running(self) -> Iterator[Self]:
        """Serve on a free loopback port for the ``with`` block (a test's fixture: ``with X().running() as x: yield x``)."""
        server = self.serve(0)
        try:
            yield self
        finally:
            server.shutdown()

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Start serving on a daemon thread; port 0 picks a free port (``server.server_port``)."""
        server = ThreadingHTTPServer((host, port), self.handler_class())
        server.daemon_threads = True
        self.base_url = f"http://{host}:{server.server_port}"
        threading.Thread(target=server.serve_forever, name=f"{self.name}:{port}", daemon=True).start()
        return server


class JsonApi(StandIn):
    """A stand-in that is only its routes: nothing to seed, reset or report (a test's small API)."""

    def reset(self) -> None:
        pass

    def seed(self, data: dict[str, Any]) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {}
