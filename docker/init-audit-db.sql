-- The reconciliation audit store lives in its own database beside Airflow's metadata DB.
CREATE DATABASE reconcile_audit OWNER airflow;
