"""The core: specs, values, sources, quality gates, drift, rules, plans, actions, ledger and audit.

It never imports Airflow (the ``.importlinter`` contract, checked by ``make test``), so it can be used
and tested on its own; the Airflow layer is :mod:`airflow_reconcile.provider`.
"""
