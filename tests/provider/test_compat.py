"""The core checks a spec's cron without Airflow (values.check_cron); it must agree with Airflow's own."""

from __future__ import annotations

import pytest

from airflow_reconcile.core.values import CRON_PRESETS, check_cron
from airflow_reconcile.provider.compat import CronTriggerTimetable

EXPRESSIONS = [
    *CRON_PRESETS, "@midnight", "@annually", "@reboot", "@every_day", "0 7 * * *", "*/15 6-18 * * 1-5",
    "0 7 * *", "61 7 * * *", "0 25 * * *", "0 7 * * * *", "0 7 * * mon", "", "not cron",
]  # fmt: skip


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_core_accepts_what_airflow_accepts(expression):
    try:
        CronTriggerTimetable(expression, timezone="UTC").validate()
        airflow_accepts = True
    except Exception:  # noqa: BLE001 - whatever Airflow raises, it refused the expression
        airflow_accepts = False
    try:
        check_cron(expression)
        core_accepts = True
    except ValueError:
        core_accepts = False
    assert core_accepts == airflow_accepts


def test_airflow_knows_the_presets_the_core_copies():
    from airflow.utils.dates import cron_presets

    assert CRON_PRESETS == cron_presets
