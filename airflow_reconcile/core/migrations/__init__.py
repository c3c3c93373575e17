"""Alembic migrations of the audit store (audit records, ledger, pinned specs); see ``core.schema``."""
