"""HTTP JSON APIs: a list of records per page, paginated by page number, offset or cursor."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import SourceError, source_failure
from airflow_reconcile.core.redact import error_text, redact
from airflow_reconcile.core.sources.base import (
    Progress,
    Snapshot,
    SourceContext,
    finish,
    newest_by_reading,
    now_utc,
)

if TYPE_CHECKING:
    from airflow_reconcile.core.spec import SourceSpec

MAX_PAGES = 10_000


def _at(document: Any, path: str | None) -> Any:
    """The value at a dotted path (``data.items``); the document itself for an empty path."""
    for part in (path or "").split("."):
        if not part:
            continue
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


def _same_origin(url: str, base: str) -> bool:
    from urllib.parse import urlsplit

    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _session(credentials: dict[str, Any]) -> Any:
    """A requests session that drops the connection's headers (``X-API-Key``, ``Authorization``...)
    when a redirect leaves the host; requests itself drops only its own ``Authorization``."""
    import requests

    class CredentialsStayHome(requests.Session):
        def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
            super().rebuild_auth(prepared_request, response)
            if self.should_strip_auth(response.request.url, prepared_request.url):
                for name in credentials:
                    prepared_request.headers.pop(name, None)

    return CredentialsStayHome()


def _bounded(response: Any, progress: Progress) -> bytes:
    """The response body, read in chunks: the read stops once the source's ``max_bytes`` is passed."""
    left = progress.bytes_left()
    declared = response.headers.get("Content-Length")
    if left is not None and declared and declared.isdigit():
        progress.check(nbytes=int(declared))  # told before a byte is read
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=1 << 16):
        size += len(chunk)
        progress.check(nbytes=size)
        chunks.append(chunk)
    return b"".join(chunks)


class HttpSource:
    """Options:

    - ``url``: a path joined to the connection's host (the connection's credentials go to that host only:
      an absolute URL elsewhere is refused; absolute URLs are for sources without a connection),
      ``params`` (extra query parameters)
    - ``records``: dotted path to the list of records in each response (default: the response is the list)
    - ``pagination``: ``{"type": "none" | "page" | "offset" | "cursor", ...}`` with ``page_param`` (``page``),
      ``size_param`` (``per_page``), ``offset_param`` (``offset``), ``limit_param`` (``limit``), ``size``
      (100), ``cursor_param`` (``cursor``) and ``next_cursor`` (dotted path to the next cursor).
    The connection gives the base URL (host) and a bearer token (password); never the spec.
    """

    kind = "http"

    def read(self, spec: SourceSpec, ctx: SourceContext) -> Snapshot:
        import pandas as pd
        import requests

        opts = spec.options
        conn = dict(ctx.connection or {})
        url = str(opts.get("url") or "")
        if not url:
            raise SourceError(f"{ctx.origin}: sources.*.options.url is required for an http source")
        base = str(conn.get("base_url", "")).rstrip("/")
        credentials = dict(conn.get("headers") or {})
        if "://" not in url:
            url = f"{base}/{url.lstrip('/')}"
        elif credentials and not _same_origin(url, base):  # validate refuses it too; a spec may predate that
            raise SourceError(
                f"{ctx.origin}: options.url {redact(url)!r} is not on the connection's host {redact(base)!r}: the "
                "connection's credentials go to its own host only. Give a path (e.g. /api/owners), or drop "
                "connection_id for a public URL"
            )
        headers = {"Accept": "application/json", **credentials}
        paging = dict(opts.get("pagination") or {"type": "none"})
        kind = paging.get("type", "none")
        if kind not in ("none", "page", "offset", "cursor"):
            raise SourceError(
                f"{ctx.origin}: options.pagination.type {kind!r} is not one of none, page, offset, cursor"
            )
        size = int(paging.get("size", 100))
        params: dict[str, Any] = dict(opts.get("params") or {})
        page, offset, cursor = int(paging.get("start", 1)), 0, None
        records: list[dict[str, Any]] = []
        progress = ctx.tracker("http", spec)
        timeout = float(opts.get("timeout", 30))
        with _session(credentials) as session:
            for number in range(1, MAX_PAGES + 1):
                query = dict(params)
                if kind == "page":
                    query.update({paging.get("page_param", "page"): page, paging.get("size_param", "per_page"): size})
                elif kind == "offset":
                    query.update(
                        {paging.get("offset_param", "offset"): offset, paging.get("limit_param", "limit"): size}
                    )
                elif kind == "cursor" and cursor is not None:
                    query[paging.get("cursor_param", "cursor")] = cursor

                def fetch(query: dict[str, Any] = query) -> tuple[bytes, Any]:
                    with session.get(url, params=query, headers=headers, timeout=timeout, stream=True) as response:
                        response.raise_for_status()
                        body = _bounded(response, progress)
                    return body, json.loads(body)

                try:  # one page at a time: a failed page is tried again, not the pages before it
                    body, document = ctx.retry.call(fetch, f"GET {redact(url)} (page {number})")
                except (requests.RequestException, ValueError) as exc:
                    # The URL may carry query parameters, never credentials (those travel in headers).
                    raise source_failure(exc, f"{ctx.origin}: GET {redact(url)} failed: {error_text(exc)}") from None
                batch = _at(document, opts.get("records"))
                if not isinstance(batch, list):
                    raise SourceError(
                        f"{ctx.origin}: {url}: options.records={opts.get('records')!r} does not point at a list"
                    )
                records.extend(batch)
                progress.add(len(batch), nbytes=len(body))
                if kind == "none" or not batch:
                    break
                if kind == "page":
                    page += 1
                elif kind == "offset":
                    offset += len(batch)
                else:
                    cursor = _at(document, paging.get("next_cursor", "next_cursor"))
                    if not cursor:
                        break
                if kind in ("page", "offset") and len(batch) < size:
                    break
            else:
                raise SourceError(f"{ctx.origin}: {url}: more than {MAX_PAGES} pages; check options.pagination")
        frame = pd.DataFrame.from_records(_objects(records, opts, f"{ctx.origin}: {url}"))
        return Snapshot(frame=finish(frame, spec, url, ctx.origin), source=url, taken_at=now_utc())

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        return newest_by_reading(self, spec, ctx)


def _objects(records: list[Any], opts: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The records as rows: objects as they are; a list of plain values (``["alice", "bob"]``, a membership
    list) as one column, ``options.value_column`` (default ``value``) — never split into characters. A list
    that mixes the two is an error."""
    objects = [r for r in records if isinstance(r, dict)]
    if len(objects) == len(records):
        return objects
    if objects:
        odd = next(r for r in records if not isinstance(r, dict))
        raise SourceError(f"{where}: the records mix objects and plain values (e.g. {odd!r}); point options.records "
                          "at a list of one kind")  # fmt: skip
    nested = next((r for r in records if isinstance(r, list)), None)
    if nested is not None:
        raise SourceError(f"{where}: the records are lists (e.g. {nested!r:.60}), not objects or values; point "
                          "options.records at the list of records")  # fmt: skip
    return [{str(opts.get("value_column") or "value"): r} for r in records]
