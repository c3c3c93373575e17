"""Metrics through Airflow's own ``Stats`` (StatsD or OpenTelemetry, as ``[metrics]`` configures them).

Names are ``reconcile.<spec>.<what>`` (spec in the name, so plain StatsD without tags can tell specs
apart), under Airflow's ``statsd_prefix``:

- ``rows_read.<side>`` (gauge), ``drift.<class>`` (gauge: changed, missing, unexpected, ...),
- ``actions.<outcome>`` (counter: applied, skipped, dead_lettered, ...), ``dead_letters`` (gauge: in the
  ledger now), ``review_queue`` (gauge: in review or awaiting approval), ``run_latency`` (timer: from
  the DAG run's start to the end of its apply task).

A metric is never worth a failed task: a backend error is logged and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)


def _name(spec: str, what: str) -> str:
    from airflow_reconcile.provider.compat import metric_name

    return metric_name(f"reconcile.{spec}.{what}")


def emit(kind: str, spec: str, what: str, value: Any) -> None:
    """``kind``: ``gauge``, ``incr`` or ``timing`` (a timedelta or milliseconds)."""
    try:
        from airflow_reconcile.provider.compat import stats as airflow_stats

        stats = airflow_stats()

        if kind == "incr":
            stats.incr(_name(spec, what), count=int(value))
        elif kind == "gauge":
            stats.gauge(_name(spec, what), float(value))
        elif kind == "timing":
            stats.timing(_name(spec, what), value if isinstance(value, timedelta) else float(value))
        else:
            raise ValueError(f"unknown metric kind {kind!r}")
    except Exception as exc:  # noqa: BLE001 - metrics must never fail the task
        log.warning("metric %s %s not sent: %s", kind, what, exc)


def emit_counts(kind: str, spec: str, prefix: str, counts: Mapping[str, Any]) -> None:
    for key, value in counts.items():
        if isinstance(value, int | float):
            emit(kind, spec, f"{prefix}.{key}", value)
