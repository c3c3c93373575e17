#!/bin/bash
# The reconciliation audit store: its own database beside Airflow's metadata DB, owned by its own role
# (reconcile_owner: migrates it); the tasks connect as reconcile_tasks, which `reconcile db grant` (run by
# airflow-init) lets read and append to the audit trail, never update or delete it. Passwords: .env.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner_pw="$AUDIT_OWNER_PASSWORD" -v tasks_pw="$AUDIT_TASKS_PASSWORD" <<'SQL'
CREATE ROLE reconcile_owner LOGIN PASSWORD :'owner_pw';
CREATE ROLE reconcile_tasks LOGIN PASSWORD :'tasks_pw';
CREATE DATABASE reconcile_audit OWNER reconcile_owner;
SQL
