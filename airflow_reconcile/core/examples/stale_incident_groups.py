"""Sample data for the "stale incident groups" example: a derived side over two inputs.

The incidents are real: the ServiceNow incident event log in ``data/incident_events.csv`` (the events up to
2016-03-10 of the "Incident management process enriched event log", Amaral et al. 2018, CC BY 4.0; see
``data/README.md``), one row per update, ``?`` for empty, day-first times. The team roster is ours:
every assignment group with its team, four groups retired with a successor and two without. The Jira
side holds one ticket per open incident mirroring its assignment group (as the service desk's Jira
project does), plus planted cases: open incidents without a ticket, tickets of incidents that closed, and
a ticket moved by hand to the wrong group.

The spec derives the desired state with DuckDB (the latest event per incident, open ones only, joined with
the roster: a retired group becomes its successor, or nothing when it has none) and compares it with the
tickets. ``reconcile init --example stale_incident_groups`` writes the data; the demo and the tests seed the
Jira stand-in with ``jira_seed()``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data")
EVENTS = DATA / "incident_events.csv"
PROJECT = "INC"
TEAMS = ("service-desk", "network", "platform", "database", "apps")
# Retired groups: with a successor (their open incidents move there), or without one (they go to review).
SUCCESSORS = {"Group 31": "Group 10", "Group 20": "Group 70", "Group 33": "Group 25", "Group 73": "Group 72"}
NO_SUCCESSOR = ("Group 29", "Group 23")
OPEN_EXCLUDED = ("Closed", "Resolved")


def _events() -> list[dict[str, str]]:
    with EVENTS.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _when(text: str) -> datetime:
    """The export's day-first local time (no zone is given; only their order matters here)."""
    return datetime.strptime(text, "%d-%m-%Y %H:%M")  # noqa: DTZ007


def open_incidents() -> dict[str, dict[str, str | None]]:
    """Each incident's latest event (by time, then sys_mod_count), the open ones: what the derive computes,
    written out here in plain Python so the tests check the SQL against an independent reading."""
    latest: dict[str, dict[str, str]] = {}
    for event in _events():
        seen = latest.get(event["number"])
        order = (_when(event["sys_updated_at"]), int(event["sys_mod_count"]))
        if seen is None or order > (_when(seen["sys_updated_at"]), int(seen["sys_mod_count"])):
            latest[event["number"]] = event
    return {
        number: {"group": None if e["assignment_group"] == "?" else e["assignment_group"], "state": e["incident_state"]}
        for number, e in sorted(latest.items())
        if e["incident_state"] not in OPEN_EXCLUDED
    }  # fmt: skip


def roster() -> list[dict[str, str]]:
    groups = sorted({e["assignment_group"] for e in _events() if e["assignment_group"] != "?"},
                    key=lambda g: int(g.split()[-1]))  # fmt: skip
    rows = []
    for group in groups:
        retired = group in SUCCESSORS or group in NO_SUCCESSOR
        rows.append({"group": group, "status": "retired" if retired else "active",
                     "successor": SUCCESSORS.get(group, ""), "team": TEAMS[int(group.split()[-1]) % len(TEAMS)]})  # fmt: skip
    return rows


@dataclass
class Scenario:
    incidents: dict[str, dict[str, str | None]]
    roster: list[dict[str, str]]
    issues: list[dict[str, Any]]
    cases: dict[str, list[str]] = field(default_factory=dict)

    def jira_seed(self) -> dict[str, Any]:
        return {"issues": self.issues}

    def write_roster(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["group", "status", "successor", "team"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.roster)
        return path

    def write_events(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(EVENTS.read_bytes())
        return path

    def write_tickets_export(self, path: Path) -> Path:
        """The Jira side as the spec's ``tickets`` input reads it (its ``fields`` as columns), for ``reconcile plan``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["key", "number", "group", "status"], lineterminator="\n")
            writer.writeheader()
            writer.writerows({"key": i["key"], "number": i["incident"], "group": i["assignment_group"] or "",
                              "status": i["status"]} for i in self.issues)  # fmt: skip
        return path

    def expected(self) -> dict[str, int]:
        """What the reconciliation finds: moves to a successor, retired groups to review, hand moves put back,
        missing tickets, tickets of closed incidents."""
        moves = len(self.cases["moved"]) + len(self.cases["hand_moved"])
        review = len(self.cases["orphaned"])
        return {"changed": moves + review, "missing": len(self.cases["missing_ticket"]),
                "unexpected": len(self.cases["closed_incident"]), "auto": moves, "review": review}  # fmt: skip


def stale_incident_groups(missing_ticket: int = 3, closed_incident: int = 2) -> Scenario:
    incidents = open_incidents()
    numbers = list(incidents)
    without_ticket = set(numbers[7 :: max(1, len(numbers) // missing_ticket)][:missing_ticket])
    issues, cases = [], {"moved": [], "orphaned": [], "hand_moved": [], "missing_ticket": sorted(without_ticket),
                         "closed_incident": []}  # fmt: skip
    hand_moved = next(n for n in numbers if incidents[n]["group"] == "Group 70" and n not in without_ticket)
    for index, number in enumerate(numbers, start=1):
        group = incidents[number]["group"]
        if number in without_ticket:
            continue
        if number == hand_moved:
            cases["hand_moved"].append(number)
            group = "Group 9"  # someone moved the ticket in Jira, not in ServiceNow
        elif group in SUCCESSORS:
            cases["moved"].append(number)
        elif group in NO_SUCCESSOR:
            cases["orphaned"].append(number)
        issues.append(_ticket(index, number, group))
    closed = sorted({e["number"] for e in _events()} - set(incidents))[:closed_incident]
    for offset, number in enumerate(closed, start=len(numbers) + 1):
        cases["closed_incident"].append(number)
        issues.append(_ticket(offset, number, "Group 70"))
    return Scenario(incidents, roster(), issues, cases)


def _ticket(index: int, number: str, group: str | None) -> dict[str, Any]:
    return {"key": f"{PROJECT}-{index}", "project": PROJECT, "summary": f"{number}: follow-up", "issuetype": "Task",
            "incident": number, "assignment_group": group, "status": "Open", "priority": "Medium"}  # fmt: skip
