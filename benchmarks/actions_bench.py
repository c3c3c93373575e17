"""Jira actions per second through the real ``jira`` client, against the stand-in in its own process.

N issues, N ``assign`` operations through ``apply_plan`` with the idempotency ledger (SQLite), first
one at a time (the baseline), then with bounded concurrency, each on freshly seeded data; then the
same with every request answered ``--latency-ms`` late (a real Jira is a network away), on N/5
actions. Prints actions/s, the speed-ups, and the duplicate count (an issue assigned more than once:
must be 0).

    make bench-actions                  # 1,000 actions (200 with latency), 8 workers
    make bench-actions ACTIONS=100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import requests
from jira import JIRA

from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.plan import PLAN_COLUMNS
from devkit.airflow_local import free_port

USER, TOKEN = "reconcile-bot", "stand-in-token"


def start_standin() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devkit.standins", "--jira-port", str(port), "--slack-port", str(free_port())],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(f"{url}/_control/state", timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the Jira stand-in did not start")


def seed(url: str, n: int) -> None:
    requests.post(f"{url}/_control/reset", timeout=10)
    issues = [{"key": f"OPS-{i}", "service": f"svc{i}", "assignee": None} for i in range(1, n + 1)]
    users = [{"name": "alice"}, {"name": "bob"}]
    requests.post(f"{url}/_control/seed", data=json.dumps({"users": users, "issues": issues}), timeout=60)


def plan(n: int) -> pd.DataFrame:
    rows = []
    for i in range(1, n + 1):
        row = dict.fromkeys(PLAN_COLUMNS, "")
        row.update(operation_id=f"bench-{i}", rule="assign", action="assign", target="jira", autonomy="auto",
                   entity=f"svc{i}", target_ref=f"OPS-{i}", params=json.dumps({"assignee": "alice"}))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS), dtype="string")


def run(url: str, n: int, workers: int, db: Path, latency: float = 0.0) -> tuple[float, Counter[str], int]:
    seed(url, n)
    faults = [{"latency": latency, "rate": 1}] if latency else []
    requests.post(f"{url}/_control/faults", data=json.dumps(faults), timeout=10)
    client = JIRA(server=url, basic_auth=(USER, TOKEN), options={"rest_api_version": "2"}, max_retries=0, timeout=30)
    ledger = Ledger(AuditStore(f"sqlite:///{db}"), spec="bench", dag_id="bench", run_id=f"w{workers}")
    started = time.perf_counter()
    result = apply_plan(plan(n), {"jira": JiraExecutor(client)}, ledger=ledger, workers=workers,
                        progress=lambda _: None)  # fmt: skip
    seconds = time.perf_counter() - started
    writes = requests.get(f"{url}/_control/state", timeout=30).json()["writes"]
    per_issue = Counter(w["key"] for w in writes if w["kind"] == "assign")
    duplicates = sum(count - 1 for count in per_issue.values() if count > 1)
    return seconds, Counter(result["status"]), duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="network latency for the second pair")
    args = parser.parse_args()
    proc, url = start_standin()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for latency, n in ((0.0, args.actions), (args.latency_ms / 1000, max(args.actions // 5, 1))):
                where = f"{args.latency_ms:.0f} ms latency" if latency else "loopback"
                rates = []
                for workers in (1, args.workers):
                    db = Path(tmp) / f"{workers}-{latency}.db"
                    seconds, statuses, duplicates = run(url, n, workers, db, latency)
                    rates.append(n / seconds)
                    print(f"{where:>16}, {workers} worker(s): {n} actions in {seconds:6.2f} s = {n / seconds:7.1f} "
                          f"actions/s  outcomes {dict(statuses)}  duplicates {duplicates}")  # fmt: skip
                print(f"{where:>16}: {args.workers} workers / sequential = {rates[1] / rates[0]:.2f}x")
            print("goal: >= 100 actions/s on loopback, 0 duplicates")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
