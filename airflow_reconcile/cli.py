"""``reconcile``: command-line tools that run without Airflow.

Exit codes: 0 ok, 1 a finding (drift, broken chain), 2 an error in the input.
"""

from __future__ import annotations

import argparse
import sys

from airflow_reconcile.errors import ReconcileError


def _validate(args: argparse.Namespace) -> int:
    from airflow_reconcile.spec import load_spec

    failed = False
    for path in args.specs:
        try:
            spec = load_spec(path)
        except ReconcileError as exc:
            print(exc, file=sys.stderr)
            failed = True
        else:
            print(f"{path}: ok ({spec.dag_id}, policy version {spec.policy_version})")
    return 2 if failed else 0


def _audit_verify(args: argparse.Namespace) -> int:
    from airflow_reconcile.audit import AuditStore

    ok, broken = AuditStore(args.url).verify()
    if ok:
        print("audit chain intact")
        return 0
    print(f"audit chain broken at record {broken}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconcile", description="airflow-reconcile command-line tools")
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="validate reconciliation specs")
    validate.add_argument("specs", nargs="+")
    validate.set_defaults(func=_validate)
    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the audit hash chain")
    verify.add_argument("--url", required=True, help="SQLAlchemy URL of the audit store")
    verify.set_defaults(func=_audit_verify)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ReconcileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
