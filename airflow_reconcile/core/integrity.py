"""Tamper evidence: keyed hash chains and signed checkpoints kept outside the audit store.

What it holds against (see the README, Security): the audit records and the ledger's history are
each a chain in which every entry's MAC covers the one before it, computed with a key that the audit
store never holds (an Airflow connection, or a secrets backend, gives it to the tasks). Someone who
can write the audit database but has not got the key cannot rewrite an entry and recompute the chain.
Deleting the newest entries, or all of them, leaves a chain that is still whole: **checkpoints**
catch that. A checkpoint (chain head, entry count, time) is signed with the same key and written
outside the database — files in the workspace, and a line in the task log — by the tasks that write
to targets and by the watchdog; ``reconcile audit verify`` checks the store against every one.

Without a key (``Signer(None)``), the chains use plain SHA-256: they detect accidental edits only,
and ``verify`` says so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_reconcile.core.errors import ReconcileError

GENESIS = "0" * 64
MIN_KEY_CHARS = 32
SEP = "\x1f"


@dataclass(frozen=True)
class Signer:
    """MACs with the audit key (HMAC-SHA256), or plain SHA-256 without one."""

    key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_text(cls, text: str | None, origin: str = "the audit key") -> Signer:
        if not text:
            return cls(None)
        if len(text) < MIN_KEY_CHARS:
            raise ReconcileError(
                f"{origin} is {len(text)} characters; use at least {MIN_KEY_CHARS} random characters "
                '(e.g. the output of: python -c "import secrets; print(secrets.token_hex(32))")'
            )
        return cls(text.encode())

    @property
    def keyed(self) -> bool:
        return self.key is not None

    @property
    def key_id(self) -> str | None:
        """Names the key without revealing it (stored beside each entry, so verify can tell keys apart)."""
        if self.key is None:
            return None
        return hmac.new(self.key, b"airflow-reconcile key id", hashlib.sha256).hexdigest()[:16]

    def mac(self, *fields: object) -> str:
        data = SEP.join(str(f) for f in fields).encode()
        if self.key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    def check(self, expected: str, *fields: object) -> bool:
        return hmac.compare_digest(self.mac(*fields), expected)


def state_digest(row: dict[str, Any]) -> str:
    """One ledger row's whole state as a digest (what its newest history entry must match)."""
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()


# Checkpoints ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """A chain's newest entry and how many entries it has."""

    chain: str  # "audit" or "ledger"
    head_id: int
    head_hash: str
    count: int


def sign_checkpoint(signer: Signer, heads: list[Head], at: datetime | None = None) -> dict[str, Any]:
    when = (at or datetime.now(UTC)).isoformat()
    chains = {h.chain: {"head_id": h.head_id, "head_hash": h.head_hash, "count": h.count} for h in heads}
    body = json.dumps(chains, sort_keys=True)
    return {"at": when, "key_id": signer.key_id, "chains": chains, "signature": signer.mac("checkpoint", when, body)}


def checkpoint_valid(signer: Signer, checkpoint: dict[str, Any]) -> bool:
    body = json.dumps(checkpoint.get("chains", {}), sort_keys=True)
    return signer.check(str(checkpoint.get("signature", "")), "checkpoint", checkpoint.get("at"), body)


def write_checkpoint(folder: Any, checkpoint: dict[str, Any]) -> Any:
    """One file per checkpoint, written whole (locally a temporary file renamed into place; an object
    store shows an object only once it is complete); the name sorts by time. ``folder`` is a
    :class:`~pathlib.Path` or a path on object storage (see ``core.workspace``)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = checkpoint["at"].replace(":", "").replace("-", "").replace("+", "Z")[:22]
    audit = checkpoint["chains"].get("audit", {}).get("head_id", 0)
    path = folder / f"{stamp}-{audit:012d}.json"
    text = json.dumps(checkpoint, sort_keys=True)
    if not isinstance(path, Path):
        path.write_text(text, encoding="utf-8")
        return path
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_checkpoints(folder: Any) -> list[tuple[str, dict[str, Any] | None]]:
    """(file name, checkpoint or None when unreadable) for every checkpoint file, oldest first."""
    found: list[tuple[str, dict[str, Any] | None]] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json"), key=lambda p: p.name):
        try:
            found.append((path.name, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            found.append((path.name, None))
    return found


# The task log's copy of a checkpoint: this marker, then the whole checkpoint as one line of JSON (logs usually
# live off the host, so a copy there survives a writer who deletes the checkpoint files and the newest records).
LOG_MARKER = "reconcile audit checkpoint: "


def log_line(checkpoint: dict[str, Any]) -> str:
    return LOG_MARKER + json.dumps(checkpoint, sort_keys=True, separators=(",", ":"))


def checkpoints_in_log(text: str, name: str) -> list[tuple[str, dict[str, Any] | None]]:
    """The checkpoints a task log holds (``log_line``), each named ``<name>:<line>``; None for one that cannot
    be read (a cut line)."""
    found: list[tuple[str, dict[str, Any] | None]] = []
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.splitlines(), start=1):
        if LOG_MARKER not in line:
            continue
        message = line
        try:  # Airflow 3 writes a task's log as JSON lines: the message is the "event" string, escaped in the file
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            message = next((v for v in entry.values() if isinstance(v, str) and LOG_MARKER in v), line)
        payload = message[message.find(LOG_MARKER) + len(LOG_MARKER) :].lstrip()
        try:
            checkpoint, _ = decoder.raw_decode(payload)
        except ValueError:
            checkpoint = None
        found.append((f"{name}:{number}", checkpoint if isinstance(checkpoint, dict) else None))
    return found


def rollback_problem(
    signer: Signer, folder: list[tuple[str, dict[str, Any] | None]], others: list[tuple[str, dict[str, Any] | None]]
) -> str | None:
    """Why the checkpoint folder looks rolled back: a valid checkpoint elsewhere (a task log) is newer than the
    folder's newest, and the folder does not hold it. None when nothing says so."""

    def newest(items: list[tuple[str, dict[str, Any] | None]]) -> tuple[str, dict[str, Any]] | None:
        valid = [(n, c) for n, c in items if c and c.get("key_id") == signer.key_id and checkpoint_valid(signer, c)]
        return max(valid, key=lambda nc: str(nc[1]["at"])) if valid else None

    theirs, ours = newest(others), newest(folder)
    if theirs is None:
        return None
    signatures = {c.get("signature") for _, c in folder if c}
    if theirs[1]["signature"] in signatures:
        return None
    if ours is None or str(ours[1]["at"]) < str(theirs[1]["at"]):
        return (f"checkpoint {theirs[0]} ({theirs[1]['at']}) is newer than every checkpoint file "
                f"({ours[1]['at'] if ours else 'none'}): the checkpoint folder was rolled back or its newest files "
                "deleted")  # fmt: skip
    return None


@dataclass
class Verification:
    """What ``verify`` found: ``problems`` is empty when everything checked out."""

    records: int = 0
    ledger_events: int = 0
    keyed: bool = False
    unkeyed: int = 0  # entries written without a key (before one was configured)
    checkpoints: int = 0
    unkeyed_checkpoints: int = 0  # written before the key was set: unsigned, skipped when a key is given
    problems: list[str] = field(default_factory=list)
    broken_record: int | None = None  # the first audit record that does not verify

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.ok:
            return "; ".join(self.problems)
        how = "keyed (HMAC)" if self.keyed else "NOT keyed: it detects accidental edits only; set an audit key"
        extra = f", {self.unkeyed} written before the key was set, sealed" if self.unkeyed and self.keyed else ""
        return (
            f"audit chain intact ({self.records} records, {self.ledger_events} ledger history entries{extra}; "
            f"{how}); {self.checkpoints} checkpoint(s) checked"
            + (f", {self.unkeyed_checkpoints} from before the key skipped" if self.unkeyed_checkpoints else "")
        )


def verify_chain(
    rows: Any, fields: Any, *, hash_column: str, signer: Signer, label: str, found: Verification
) -> tuple[int, int | None]:
    """Walk one chain in id order; returns (entries, id of the first that does not verify or None).

    An entry verifies when it links to the one before and its MAC is right for its key: the verifier's
    key, or none for entries written before a key was set (never after a keyed entry: an unkeyed entry
    there was written by someone without the key). With a key, unkeyed entries count only as the prefix a
    keyed entry **seals** (its MAC covers the last of them, so none can change since): a chain that ends
    in unkeyed entries, or has no keyed entry at all, was written by someone without the key — a writer
    of the database can replace a whole history with an unkeyed one, never with a sealed one. A store is
    sealed by the key's first use (``AuditStore.guard``)."""
    prev, keyed_seen, count = GENESIS, False, 0
    unsealed: int | None = None  # the first unkeyed entry no keyed entry has sealed yet
    plain = Signer(None)
    for row in rows:
        count += 1
        key_id = row.get("key_id")
        if key_id is None:
            if keyed_seen:
                found.problems.append(f"{label} {row['id']} is not keyed but follows keyed entries: it was written "
                                      "by someone without the audit key")  # fmt: skip
                return count, int(row["id"])
            checker = plain
            found.unkeyed += 1
            unsealed = int(row["id"]) if unsealed is None else unsealed
        elif signer.keyed and key_id == signer.key_id:
            checker, keyed_seen, unsealed = signer, True, None
        else:
            given = "no key was given" if not signer.keyed else f"the key given is {signer.key_id}"
            found.problems.append(f"{label} {row['id']} was written with audit key {key_id}, but {given}: give "
                                  "verify the key the tasks use")  # fmt: skip
            return count, int(row["id"])
        if row["prev_hash"] != prev or not checker.check(str(row[hash_column]), prev, *fields(row)):
            found.problems.append(f"{label} {row['id']}: it, or the one before it, was changed or removed after it "
                                  "was written")  # fmt: skip
            return count, int(row["id"])
        prev = str(row[hash_column])
    if signer.keyed and unsealed is not None:
        found.problems.append(
            f"{label} {unsealed} and those after it are not keyed and no keyed entry seals them: with the audit key in "
            "use they were written by someone without it (a history replaced in the database?). A store that "
            "had entries before its key was set is sealed by the first task that runs with the key"
        )
        return count, unsealed
    return count, None
