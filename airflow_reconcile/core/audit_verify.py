"""Verification of the audit store: both chains with the store's key, and the store against checkpoints kept
outside it (``core.integrity``); the heads and signed checkpoints themselves."""

from __future__ import annotations

from typing import Any

from airflow_reconcile.core.audit_chains import AUDIT_CHAIN, CHAINS, LEDGER_CHAIN
from airflow_reconcile.core.integrity import Head, Signer, Verification, checkpoint_valid, sign_checkpoint


class AuditVerification:
    """The verification of ``AuditStore`` (its engine, key and schema check)."""

    engine: Any
    signer: Signer

    def ensure_schema(self) -> None:  # pragma: no cover - AuditStore's
        raise NotImplementedError

    def verify(self) -> tuple[bool, int | None]:
        """Check both chains with this store's key (no checkpoints); returns (ok, id of the first broken
        audit record, or None). ``verify_all`` says what is wrong, and checks the checkpoints too."""
        found = self.verify_all(checkpoints=None)
        return found.ok, found.broken_record

    def verify_all(self, checkpoints: list[tuple[str, dict[str, Any] | None]] | None) -> Verification:
        """Check both chains with this store's key, and the store against every checkpoint given."""
        self.ensure_schema()
        found = Verification(keyed=self.signer.keyed)
        with self.engine.connect() as conn:
            found.records, found.broken_record = AUDIT_CHAIN.verify(AUDIT_CHAIN.entries(conn), self.signer, found)
            found.ledger_events, _ = LEDGER_CHAIN.verify(LEDGER_CHAIN.entries(conn), self.signer, found)
            for name, checkpoint in checkpoints or []:
                self._check_against(conn, name, checkpoint, found)
        return found

    def heads(self) -> list[Head]:
        """The newest entry of both chains, and how many entries lead up to it (counted up to its id, so
        an append meanwhile does not make the count disagree with the head)."""
        self.ensure_schema()
        heads = []
        with self.engine.connect() as conn:
            for chain in CHAINS:
                head_id, head_hash = chain.head(conn)
                heads.append(Head(chain.name, head_id, head_hash, chain.count_up_to(conn, head_id)))
        return heads

    def checkpoint(self) -> dict[str, Any]:
        """A signed checkpoint of both chains, to keep outside this store (``integrity.write_checkpoint``)."""
        return sign_checkpoint(self.signer, self.heads())

    def _check_against(self, conn: Any, name: str, checkpoint: dict[str, Any] | None, found: Verification) -> None:
        if checkpoint is None:
            found.problems.append(f"checkpoint {name} cannot be read")
            return
        if self.signer.keyed and checkpoint.get("key_id") is None and "signature" in checkpoint:
            found.unkeyed_checkpoints += 1  # from before the key: unsigned, so it vouches for nothing either way
            return
        if checkpoint.get("key_id") != self.signer.key_id or not checkpoint_valid(self.signer, checkpoint):
            found.problems.append(f"checkpoint {name} does not verify with the key given (forged, edited, or "
                                  "signed with another key)")  # fmt: skip
            return
        found.checkpoints += 1
        for chain in CHAINS:
            head = checkpoint.get("chains", {}).get(chain.name)
            if not head or not head["head_id"]:
                continue
            what = chain.plural
            at = chain.hash_at(conn, head["head_id"])
            count = chain.count_up_to(conn, head["head_id"])
            if at is None:
                found.problems.append(f"checkpoint {name} ({checkpoint['at']}) saw {head['count']} {what} up to id "
                                      f"{head['head_id']}; that entry is gone (the newest entries, or all, were deleted)")  # fmt: skip
            elif at != head["head_hash"]:
                found.problems.append(f"checkpoint {name}: {chain.name} entry {head['head_id']} is not the one it saw "
                                      "(rewritten, its chain recomputed)")  # fmt: skip
            elif count != head["count"]:
                found.problems.append(f"checkpoint {name} saw {head['count']} {what} up to id {head['head_id']}; "
                                      f"the store has {count} (entries before it were deleted)")  # fmt: skip
