"""Sample data for the "ticket ownership" example, deterministic for a given seed.

The service catalog (source of record) says who owns and is on call for each service; Jira holds
one "Service Ownership" ticket per service, assigned to whoever is on call. The generator plants
known cases and returns them, so tests can compare what the pipeline finds with what was planted.
``reconcile init`` writes the catalog (and the Jira side as an export, for ``reconcile plan``); the
Jira stand-in of the demo and the tests is seeded with the Jira side.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TEAMS = ["payments", "identity", "search", "storage", "network", "mobile", "data", "platform"]


@dataclass
class Scenario:
    catalog: list[dict[str, str]]
    users: list[dict[str, Any]]
    issues: list[dict[str, Any]]
    cases: dict[str, list[str]] = field(default_factory=dict)

    def write_catalog(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(self.catalog[0]))
            writer.writeheader()
            writer.writerows(self.catalog)
        return path

    def write_jira_export(self, path: Path) -> Path:
        """The Jira side as the example spec's actual snapshot reads it (its ``fields`` as columns)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = ["key", "service", "assignee", "status", "priority", "updated"]
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({**issue, "assignee": issue["assignee"] or ""} for issue in self.issues)
        return path

    def expected_drift(self) -> dict[str, int]:
        """What a diff of the catalog against the Jira side finds: the planted cases, counted."""
        changed = sum(len(self.cases[c]) for c in ("wrong_owner", "unassigned", "stale_owner"))
        missing = len(self.cases["missing_ticket"])
        return {"missing": missing, "unexpected": len(self.cases["orphaned"]), "changed": changed,
                "unchanged": len(self.catalog) - changed - missing}  # fmt: skip

    def jira_seed(self) -> dict[str, Any]:
        return {"users": self.users, "issues": self.issues}


def ticket_ownership(
    services: int = 300,
    wrong_owner: int = 20,
    unassigned: int = 15,
    stale_owner: int = 12,
    missing_ticket: int = 10,
    orphaned: int = 5,
    seed: int = 42,
    now: datetime | None = None,
) -> Scenario:
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    members = {t: [f"{t}.{i}" for i in range(1, 5)] for t in TEAMS}
    former = [f"former.{i}" for i in range(1, 7)]
    users = [{"name": u, "displayName": u, "active": True} for us in members.values() for u in us]
    users += [{"name": u, "displayName": u, "active": False} for u in former]

    catalog = []
    for n in range(1, services + 1):
        team = TEAMS[n % len(TEAMS)]
        catalog.append(
            {
                "service": f"svc-{n:03d}",
                "team": team,
                "assignee": rng.choice(members[team]),
                "updated_at": (now - timedelta(hours=rng.randint(1, 72))).isoformat(timespec="seconds"),
            }
        )
    names = [row["service"] for row in catalog]
    shuffled = rng.sample(names, len(names))
    cuts = [wrong_owner, unassigned, stale_owner, missing_ticket]
    cases: dict[str, list[str]] = {}
    start = 0
    for case, count in zip(["wrong_owner", "unassigned", "stale_owner", "missing_ticket"], cuts, strict=True):
        cases[case] = sorted(shuffled[start : start + count])
        start += count
    cases["orphaned"] = [f"svc-9{n:02d}" for n in range(1, orphaned + 1)]

    issues = []
    number = 0
    by_service = {row["service"]: row for row in catalog}
    for name in names:
        if name in cases["missing_ticket"]:
            continue
        row = by_service[name]
        assignee: str | None = row["assignee"]
        if name in cases["wrong_owner"]:
            other = rng.choice([t for t in TEAMS if t != row["team"]])
            assignee = rng.choice(members[other])
        elif name in cases["unassigned"]:
            assignee = None
        elif name in cases["stale_owner"]:
            assignee = rng.choice(former)
        number += 1
        issues.append(_issue(number, name, assignee, rng, now))
    for name in cases["orphaned"]:
        number += 1
        issues.append(_issue(number, name, rng.choice(former), rng, now))
    return Scenario(catalog=catalog, users=users, issues=issues, cases=cases)


def _issue(number: int, service: str, assignee: str | None, rng: random.Random, now: datetime) -> dict[str, Any]:
    updated = now - timedelta(days=rng.randint(1, 200))
    return {
        "key": f"OPS-{number}",
        "summary": f"Service ownership: {service}",
        "issuetype": "Service Ownership",
        "service": service,
        "assignee": assignee,
        "status": rng.choice(["Open", "In Progress"]),
        "priority": rng.choice(["Low", "Medium", "High"]),
        "updated": updated.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
    }
