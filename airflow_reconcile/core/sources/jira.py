"""Jira: issues by JQL through the ``jira`` library, paginated, with fields selected by name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import SourceError, source_failure
from airflow_reconcile.core.redact import redact
from airflow_reconcile.core.sources.base import Snapshot, SourceContext, finish, now_utc

if TYPE_CHECKING:
    from airflow_reconcile.core.retry import RetryPolicy
    from airflow_reconcile.core.spec import SourceSpec

PAGE_SIZE = 100
# Jira's warning for a key of a scoped search that names no issue (validateQuery=warn): the only one allowed.
MISSING_KEY = re.compile(r"(?:An issue with key|The issue key) '([^']+)' (?:does not exist for|for) field 'key'")


USER_IDS = ("name", "emailAddress", "accountId")  # Server/DC: name; Cloud: e-mail if visible, else account id


def _plain(value: Any) -> str | None:
    """Jira field values as text: users by name (Cloud: e-mail or account id), options and statuses by name/value."""
    if value is None:
        return None
    if isinstance(value, dict):
        is_user = "accountId" in value or "emailAddress" in value
        for attr in USER_IDS if is_user else ("name", "value", "key", "displayName"):
            if attr in value and value[attr] is not None:
                return str(value[attr])
        return str(value)
    if isinstance(value, list):
        return ",".join(filter(None, (_plain(v) for v in value)))
    return str(value)


def _jql_text(value: str) -> str:
    """A JQL string literal: quoted, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _order_by_at(jql: str) -> int | None:
    """Where the JQL's ``ORDER BY`` starts, outside quoted text (``summary ~ "order by"`` is no ORDER BY)."""

    quote, index, found = "", 0, None
    while index < len(jql):
        char = jql[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif (index == 0 or jql[index - 1].isspace() or jql[index - 1] == ")") and (
            match := re.match(r"order\s+by\b", jql[index:], flags=re.IGNORECASE)
        ):
            found = index
            index += match.end() - 1
        index += 1
    return found


def issue_key_field(spec: SourceSpec, column: str) -> bool:
    """Whether ``column`` of a Jira source is the issue key (``fields: {column: key}``)."""
    fields = dict(spec.options.get("fields") or {})
    return str(fields.get(column, "")).strip().casefold() == "key"


def scoped_jql(jql: str, keys: Sequence[str | int] | None) -> str:
    """The JQL, or in a scoped run ``(<jql>) AND key in ("K-1", ...)`` before its ORDER BY, each key a quoted
    literal. Only the issue key narrows a search: a custom field's clause matches by Jira's own rules
    (text fields by words, options by name), which are not the diff's."""
    if keys is None:
        return jql
    at = _order_by_at(jql)
    head, order = (jql, "") if at is None else (jql[:at], " " + jql[at:].strip())
    keyed = f"key in ({', '.join(_jql_text(str(k)) for k in keys)})"
    return f"({head.strip()}) AND {keyed}{order}" if head.strip() else f"{keyed}{order}"


class JiraSource:
    """Options: ``jql`` and ``fields`` (column → Jira field name or id; ``key`` is the issue key)."""

    kind = "jira"

    @staticmethod
    def narrows(spec: SourceSpec, column: str) -> bool:
        """A scoped run's keys go into the JQL (``scoped_jql``) when ``column`` is the issue key."""
        return issue_key_field(spec, column)

    def _client(self, ctx: SourceContext) -> Any:
        if ctx.client_factory is None:
            raise SourceError(f"{ctx.origin}: a jira source needs connection_id naming a Jira connection")
        return ctx.client_factory()

    def read(self, spec: SourceSpec, ctx: SourceContext) -> Snapshot:
        import pandas as pd
        from jira.exceptions import JIRAError

        jql = spec.options.get("jql")
        columns: dict[str, str] = dict(spec.options.get("fields") or {})
        if not jql or not columns:
            raise SourceError(f"{ctx.origin}: a jira source needs options.jql and options.fields")
        client = self._client(ctx)
        try:
            ids = self._field_ids(ctx.retry.call(client.fields, "Jira GET /field"), columns, ctx.origin)
            scope = ctx.scope if ctx.scope is not None and issue_key_field(spec, ctx.scope[0]) else None
            jql = scoped_jql(str(jql), None if scope is None else scope[1])
            wanted = sorted({i for i in ids.values() if i != "key"})
            rows: list[dict[str, Any]] = []
            progress = ctx.tracker("jira", spec)
            # A scoped search names keys that may not exist (yet, or any more): Server/DC refuses the whole
            # search then, so it is validated with warnings instead, and any warning but "no such issue" for
            # one of the scope's keys still stops the read (Cloud's /search/jql returns no row for them).
            scoped = None if scope is None else {str(k).upper() for k in scope[1]}
            for issues, total in self._pages(client, jql, wanted, ctx.retry, scoped, ctx.origin):
                for issue in issues:
                    fields = issue.get("fields", {})
                    rows.append(
                        {col: issue["key"] if fid == "key" else _plain(fields.get(fid)) for col, fid in ids.items()}
                    )
                progress.add(len(issues), total)
        except JIRAError as exc:
            raise source_failure(exc, f"{ctx.origin}: Jira answered {exc.status_code}: {redact(exc.text)}") from None
        frame = pd.DataFrame(rows, columns=list(ids), dtype="string")
        return Snapshot(frame=finish(frame, spec, "Jira", ctx.origin), source="jira", taken_at=now_utc())

    @staticmethod
    def _pages(
        client: Any, jql: str, fields: list[str], retry: RetryPolicy, scoped: set[str] | None = None, origin: str = ""
    ) -> Any:
        """(issues, total or None) per page: Server/DC page by ``startAt``; Cloud only by page token
        (``/search/jql``; the old ``/search`` is gone there and gives no total). A page that fails for a
        transient reason is asked for again (the retry policy); the pages before it are kept."""
        if getattr(client, "_is_cloud", False):
            token, number = None, 1
            while True:
                page = retry.call(partial(client.enhanced_search_issues, jql, nextPageToken=token,
                                          maxResults=PAGE_SIZE, fields=fields, json_result=True),
                                  f"Jira search page {number}")  # fmt: skip
                number += 1
                yield page.get("issues", []), None
                token = page.get("nextPageToken")
                if page.get("isLast", True) or not token:
                    return
        start = 0
        while True:
            page = retry.call(partial(client.search_issues, jql, startAt=start, maxResults=PAGE_SIZE, fields=fields,
                                      json_result=True, validate_query="warn" if scoped is not None else True),
                              f"Jira search page {start // PAGE_SIZE + 1}")  # fmt: skip
            for warning in page.get("warningMessages") or []:
                found = MISSING_KEY.search(str(warning))
                if scoped is None or found is None or found.group(1).upper() not in scoped:
                    raise SourceError(f"{origin}: Jira warned about the search ({warning}); fix options.jql")
            issues = page.get("issues", [])
            total = int(page.get("total", start + len(issues)))
            yield issues, total
            start += len(issues)
            if not issues or start >= total:
                return

    @staticmethod
    def _field_ids(fields: list[dict[str, Any]], columns: dict[str, str], origin: str) -> dict[str, str]:
        """Resolve field names (``Service``) and ids (``customfield_10100``) to ids (``fields``: GET /field)."""
        by_name: dict[str, str] = {}
        for field in fields:
            by_name[field["id"].lower()] = field["id"]
            by_name[field["name"].lower()] = field["id"]
            for clause in field.get("clauseNames", []):
                by_name.setdefault(clause.lower(), field["id"])
        out = {}
        for col, name in columns.items():
            if name == "key":
                out[col] = "key"
                continue
            if name.lower() not in by_name:
                raise SourceError(f"{origin}: options.fields.{col}: Jira has no field {name!r}")
            out[col] = by_name[name.lower()]
        return out

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        return None
