"""The bundled examples. ``reconcile init`` writes one into a DAGs folder — its DAG file, its spec and
sample data — from the installed package, so the wheel is all a user needs to run it.

The DAG files and specs are the repository's ``dags/`` folder, shipped in the wheel as
``airflow_reconcile/dags``: one copy of each, whether it is deployed by copying ``dags/`` or by
``reconcile init``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from airflow_reconcile.core.errors import ReconcileError
from airflow_reconcile.core.locations import absolute
from airflow_reconcile.core.vocabulary import DagId


@dataclass(frozen=True)
class Example:
    """A shipped spec (``dags/specs/<name>.yaml``, DAG file ``dags/reconcile_<name>.py``) and its sample data."""

    name: str
    description: str
    data_files: tuple[str, ...]
    write_data: Callable[[Path, datetime | None], list[Path]]
    """Writes ``data_files`` into the folder given (``specs/data``), times relative to the datetime (now)."""
    plan_files: str
    """What ``reconcile plan`` needs besides the spec to run without Airflow (``{data}``: the data folder)."""


def _ticket_ownership_data(folder: Path, now: datetime | None) -> list[Path]:
    from airflow_reconcile.core.examples.ticket_ownership import ticket_ownership

    scenario = ticket_ownership(now=now)
    return [
        scenario.write_catalog(folder / "service_catalog.csv"),
        scenario.write_jira_export(folder / "jira_export.csv"),
    ]


def _stale_incident_groups_data(folder: Path, now: datetime | None) -> list[Path]:
    from airflow_reconcile.core.examples.stale_incident_groups import stale_incident_groups

    scenario = stale_incident_groups()  # real events of 2016: no time is made relative to now
    return [
        scenario.write_events(folder / "incident_events.csv"),
        scenario.write_roster(folder / "team_roster.csv"),
        scenario.write_tickets_export(folder / "tickets_export.csv"),
    ]


EXAMPLES = {
    e.name: e
    for e in [
        Example("ticket_ownership", "a service catalog (CSV) against Jira ownership tickets, with Slack digests",
                ("service_catalog.csv", "jira_export.csv"), _ticket_ownership_data, "--actual {data}/jira_export.csv"),
        Example("stale_incident_groups", "open ServiceNow incidents in retired groups (a derive over the event log and "
                "a team roster) against their Jira follow-up tickets",
                ("incident_events.csv", "team_roster.csv", "tickets_export.csv"), _stale_incident_groups_data,
                "--input tickets={data}/tickets_export.csv"),
    ]
}  # fmt: skip
# The DAGs that serve every spec in specs/: written with any example, kept if they are already there.
SHARED_DAG_FILES = (f"{DagId.DIGEST}.py", f"{DagId.WATCHDOG}.py")  # each DAG file is named for its DAG


def shipped_dags() -> Path:
    """The shipped ``dags/`` folder: ``airflow_reconcile/dags`` in a wheel, ``dags/`` in a source checkout."""
    package = Path(__file__).resolve().parents[2]  # airflow_reconcile (core/examples/__init__.py)
    for candidate in (package / "dags", package.parent / "dags"):
        if (candidate / "specs").is_dir():
            return candidate
    raise ReconcileError(f"the shipped DAG files are missing from {package}; reinstall airflow-reconcile")


def init_example(
    directory: str | os.PathLike[str], name: str, *, force: bool = False, now: datetime | None = None
) -> list[Path]:
    """Write example ``name`` into ``directory`` (a DAGs folder); the paths written, in order.

    Nothing is overwritten without ``force``: if a file the example needs is there, nothing is written.
    Sample data goes to ``specs/data/``, where the spec looks by default; its times are relative to ``now``,
    so the source is fresh for the spec's ``freshness.max_age``.
    """
    example = EXAMPLES.get(name)
    if example is None:
        raise ReconcileError(f"--example {name!r}: there is no such example; choose one of {', '.join(EXAMPLES)}")
    source, target = shipped_dags(), absolute(directory)
    copies = {target / f"{DagId.of(name)}.py": source / f"{DagId.of(name)}.py",
              target / "specs" / f"{name}.yaml": source / "specs" / f"{name}.yaml"}  # fmt: skip
    # lexists: a dangling symbolic link is there too (writing "through" it would create its target elsewhere).
    shared = {target / f: source / f for f in SHARED_DAG_FILES if force or not os.path.lexists(target / f)}
    data = [target / "specs" / "data" / f for f in example.data_files]
    existing = [p for p in [*copies, *data] if os.path.lexists(p)]
    if existing and not force:
        raise ReconcileError(
            f"{', '.join(map(str, existing))} already exist(s); nothing was written. "
            "Remove them, choose another folder, or pass --force to overwrite"
        )
    for destination in [*copies, *shared, *data]:
        _inside(target, destination)
    written = []
    for destination, origin in {**copies, **shared}.items():
        _write_inside(target, destination, origin.read_bytes())
        written.append(destination)
    with tempfile.TemporaryDirectory(prefix="reconcile-init-") as tmp:
        for made in example.write_data(Path(tmp), now):
            destination = target / "specs" / "data" / made.name
            _write_inside(target, destination, made.read_bytes())
            written.append(destination)
    return written


def _inside(root: Path, destination: Path) -> None:
    """Refuse a destination whose folder resolves outside ``root`` (a symbolic link among its parents)."""
    folder = destination.parent
    while not os.path.lexists(folder) and folder != folder.parent:  # the part that exists decides
        folder = folder.parent
    if folder == root or folder in root.parents:  # not made yet: mkdir makes real folders from here
        return
    if not folder.resolve().is_relative_to(root.resolve()):
        raise ReconcileError(f"{destination}: its folder leads outside {root} (a symbolic link?); nothing was written")


def _write_inside(root: Path, destination: Path, data: bytes) -> None:
    """Write ``data`` to ``destination`` without following a link: to a new temporary file in the same folder
    (created exclusively, so a link planted on its name is never followed), then renamed over the destination
    (a link there is replaced, not written through)."""
    _inside(root, destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    _inside(root, destination)  # mkdir may have met a link made meanwhile
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
