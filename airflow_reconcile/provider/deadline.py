"""The callback of a reconciliation DAG's deadline alert, run by Airflow's triggerer.

It hands over to the Slack provider's ``SlackNotifier`` (rendering its text with the context the
scheduler attaches: the DAG run and the deadline). It lives here, not as a path to the notifier, so
that parsing a DAG file does not import the Slack SDK: Airflow imports a callback's path when the
DAG is defined, and this module is light.
"""

from __future__ import annotations

from typing import Any


async def notify_slack(*, context: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Post ``SlackNotifier(**kwargs)`` (``slack_conn_id``, ``channel``, ``text``...) with ``context``."""
    from airflow.providers.slack.notifications.slack import SlackNotifier

    await SlackNotifier(**kwargs, context=context or {})
