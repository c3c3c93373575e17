"""The Airflow layer: hooks, the DAG factory, operators, sensors, the plugin, lineage, metrics, deadlines.

Its layers, top to bottom (``.importlinter``): the DAG factory and the plugin; operators and sensors
(none imports another, all built on :mod:`~airflow_reconcile.provider.audited`); hooks; lineage,
metrics and deadlines; and :mod:`~airflow_reconcile.provider.compat`, the one module that knows how
Airflow 3.1, 3.2 and 3.3 differ. Everything here may use :mod:`airflow_reconcile.core`, never the reverse.
"""
