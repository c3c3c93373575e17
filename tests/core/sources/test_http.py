"""The http source against a local JSON API speaking three pagination styles."""

from __future__ import annotations

from dataclasses import replace

import pytest

from airflow_reconcile.core.errors import SourceError, TransientError
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.spec import SourceSpec
from devkit.http import JsonApi, Reply

ROWS = [{"id": str(i), "owner": f"user{i % 7}", "updated": f"2026-01-{1 + i % 28:02d}T00:00:00Z"} for i in range(250)]


class CatalogApi(JsonApi):
    name = "catalog"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/api/page", self.by_page)
        self.route("GET", "/api/offset", self.by_offset)
        self.route("GET", "/api/cursor", self.by_cursor)
        self.route("GET", "/api/all", lambda **_: ROWS)
        self.route("GET", "/api/members", lambda **_: {"members": ["alice", "bob"]})
        self.route("GET", "/api/mixed", lambda **_: [{"id": "1"}, "bob"])
        self.route("GET", "/api/nested", lambda **_: [{"id": "1", "tags": {"b": 2, "a": [1, "x"]}}])

    def reset(self) -> None:
        self.calls: list[dict] = []

    def authorised(self, headers) -> bool:
        return headers.get("Authorization") == "Bearer s3cret"

    def by_page(self, query, **_):
        page, size = int(query["page"]), int(query["per_page"])
        return {"data": {"items": ROWS[(page - 1) * size : page * size]}}

    def by_offset(self, query, **_):
        offset, limit = int(query["offset"]), int(query["limit"])
        return {"results": ROWS[offset : offset + limit]}

    def by_cursor(self, query, **_):
        start = int(query.get("cursor", 0))
        nxt = start + 40 if start + 40 < len(ROWS) else None
        if query.get("team") != "ops":
            raise Reply(400, {"error": "team is required"})
        return {"items": ROWS[start : start + 40], "meta": {"next": nxt}}


@pytest.fixture
def api():
    with CatalogApi().running() as standin:
        yield standin


def ctx(api, token="s3cret"):
    return SourceContext(
        origin="s.yaml", connection={"base_url": api.base_url, "headers": {"Authorization": f"Bearer {token}"}}
    )


def spec(**options):
    return SourceSpec(kind="http", options=options, key=["id"])


@pytest.mark.parametrize(
    "options",
    [
        {"url": "/api/page", "records": "data.items", "pagination": {"type": "page", "size": 60}},
        {"url": "/api/offset", "records": "results", "pagination": {"type": "offset", "size": 100}},
        {
            "url": "/api/cursor",
            "records": "items",
            "params": {"team": "ops"},
            "pagination": {"type": "cursor", "next_cursor": "meta.next"},
        },
        {"url": "/api/all"},
    ],  # fmt: skip
)
def test_every_pagination_style_reads_every_record_once(api, options):
    snap = get_source("http").read(spec(**options), ctx(api))
    assert snap.frame["id"].tolist() == [r["id"] for r in ROWS]
    assert snap.source.startswith(api.base_url)


def test_freshness_from_a_column(api):
    source = SourceSpec(
        kind="http", options={"url": "/api/all"}, key=["id"], freshness={"column": "updated", "max_age": "1d"}
    )
    newest = get_source("http").newest(source, ctx(api))
    assert newest.isoformat() == "2026-01-28T00:00:00+00:00"


def test_errors_are_classified_and_never_show_the_token(api):
    with pytest.raises(SourceError, match="401") as err:
        get_source("http").read(spec(url="/api/all"), ctx(api, token="wrong-token"))
    assert "wrong-token" not in str(err.value)
    assert not isinstance(err.value, TransientError)
    api.faults.set([{"method": "GET", "path": "/api/all", "status": 503, "times": 4}])  # every attempt
    with pytest.raises(TransientError, match="503"):
        get_source("http").read(spec(url="/api/all"), replace(ctx(api), retry=RetryPolicy(sleep=lambda _: None)))
    assert api.faults.injected == {"503": 4}
    with pytest.raises(SourceError, match="does not point at a list"):
        get_source("http").read(spec(url="/api/page", records="data.nope", pagination={"type": "page"}), ctx(api))
    with pytest.raises(SourceError, match="pagination.type 'pages' is not one of"):
        get_source("http").read(spec(url="/api/all", pagination={"type": "pages"}), ctx(api))


@pytest.mark.parametrize(
    "fault", [{"status": 503}, {"status": 429, "retry_after": 1}, {"drop": True}], ids=["503", "429", "dropped"]
)
def test_a_paginated_read_under_faults_asks_again_for_the_failed_page_only(api, fault):
    api.faults.set([{"method": "GET", "path": "/api/page", "rate": 0.4, "seed": 7, **fault}])
    slept: list[float] = []
    retry = RetryPolicy(sleep=slept.append)
    paging = {"type": "page", "size": 25}
    snapshot = get_source("http").read(spec(url="/api/page", records="data.items", pagination=paging),
                                       replace(ctx(api), retry=retry))  # fmt: skip
    assert snapshot.frame["id"].tolist() == [r["id"] for r in ROWS]  # every row, once, in order
    injected = sum(api.faults.injected.values())
    assert injected > 0
    assert retry.total_retries == injected  # one retry per fault: the pages before it were kept
    pages = [int(r["query"]["page"]) for r in api.requests]
    assert pages == sorted(pages)  # never back to page 1
    if "retry_after" in fault:
        assert min(slept) >= 1.0


def test_a_list_of_plain_values_is_one_column_never_split_into_characters(api):
    source = get_source("http")
    members = SourceSpec(kind="http", connection_id="c", key=["member"],
                         options={"url": "/api/members", "records": "members", "value_column": "member"})  # fmt: skip
    frame = source.read(members, ctx(api)).frame
    assert frame.to_dict("records") == [{"member": "alice"}, {"member": "bob"}]
    mixed = SourceSpec(kind="http", connection_id="c", key=["id"], options={"url": "/api/mixed"})
    with pytest.raises(SourceError, match="the records mix objects and plain values"):
        source.read(mixed, ctx(api))


def test_nested_values_are_canonical_json_text(api):
    nested = SourceSpec(kind="http", connection_id="c", key=["id"], options={"url": "/api/nested"})
    [row] = get_source("http").read(nested, ctx(api)).frame.to_dict("records")
    assert row["tags"] == '{"a":[1,"x"],"b":2}'  # not "{'b': 2, 'a': [1, 'x']}"
