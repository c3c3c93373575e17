"""Scoped-run benchmark: a 10-key scope against a SQL input of N rows and a Jira of M issues, read as a
scoped run's read tasks read them (the source narrowed in the database / the JQL), against a full read.

- SQL: a SQLite file of N rows; the scoped read is ``SELECT * FROM (<query>) WHERE id IN (<10 bound ints>)``;
- Jira: the Jira stand-in (its HTTP API, through the ``jira`` client) seeded with M issues; the scoped read is
  ``(<jql>) AND key in (<10 keys>)`` (only the issue key narrows a search; see core.scope.pushdown).

Prints the rows each read returned (a scoped one must return at most 10) and its time: the full read once
(it is the slow one), the scoped read as the median of 3, and their ratio.

    make bench-scope                          # 100,000 rows and 100,000 issues
    make bench-scope SCOPE_ROWS=20000 SCOPE_ISSUES=20000
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

from measure import timed

from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.spec import SourceSpec

KEYS = 10


def sql_case(rows: int, folder: Path) -> dict[str, object]:
    path = folder / "owners.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("create table owners (id integer primary key, service text, owner text)")
        db.executemany("insert into owners values (?, ?, ?)", ((i, f"svc-{i}", f"owner-{i % 97}") for i in range(rows)))
    source = SourceSpec(kind="sql", options={"query": "select id, service, owner from owners"}, key=["id"])
    keys = tuple(random.Random(1).sample(range(rows), KEYS))

    def read(scope: tuple[str, tuple[int, ...]] | None) -> int:
        ctx = SourceContext(origin="bench", connection={"url": f"sqlite:///{path}"}, scope=scope)
        return len(get_source("sql").read(source, ctx).frame)

    return measure(read, ("id", keys))


def jira_case(issues: int) -> dict[str, object]:
    from jira import JIRA

    from devkit.jira_standin import JiraStandIn

    standin = JiraStandIn()
    standin.seed({"issues": [{"key": f"OPS-{i}", "assignee": None, "status": "Open"} for i in range(1, issues + 1)]})
    source = SourceSpec(kind="jira", options={"jql": "project = OPS ORDER BY key",
                                              "fields": {"key": "key", "status": "status"}}, key=["key"])  # fmt: skip
    keys = tuple(f"OPS-{k}" for k in random.Random(2).sample(range(1, issues + 1), KEYS))
    with standin.running():
        user, token = standin.credentials
        client = JIRA(server=standin.base_url, basic_auth=(user, token), options={"rest_api_version": "2"},
                      max_retries=0, timeout=60)  # fmt: skip

        def read(scope: tuple[str, tuple[str, ...]] | None) -> int:
            ctx = SourceContext(origin="bench", client_factory=lambda: client, scope=scope, progress=lambda _: None)
            return len(get_source("jira").read(source, ctx).frame)

        return measure(read, ("key", keys))


def measure(read, scope) -> dict[str, object]:  # type: ignore[no-untyped-def]
    full_s, full_rows = timed(read, None)
    scoped = [timed(read, scope) for _ in range(3)]
    scoped_rows = {rows for _, rows in scoped}
    if scoped_rows != {KEYS}:
        sys.exit(f"a scoped read returned {scoped_rows} rows, not {KEYS}")
    scoped_s = statistics.median(t for t, _ in scoped)
    return {"full_rows": full_rows, "full_s": full_s, "scoped_rows": KEYS, "scoped_s": scoped_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--issues", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = {"sql": sql_case(args.rows, Path(folder))}
    results["jira"] = jira_case(args.issues)
    print(f"{KEYS}-key scope; full read once, scoped read median of 3")
    for name, r in results.items():
        print(f"{name:>4}: full {r['full_rows']:>7,} rows {r['full_s']:8.3f} s | scoped {r['scoped_rows']} rows "
              f"{r['scoped_s']:6.3f} s | full / scoped {r['full_s'] / r['scoped_s']:,.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
