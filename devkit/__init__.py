"""Development kit: local stand-ins for Jira and Slack, sample data, and a local Airflow runner.

Used by ``make demo`` and the tests; not part of the installed package. The stand-ins speak the
subset of each HTTP API that the ``jira`` library and the Slack provider's hook use, keep state
across requests, and take a control API (``/_control/...``) to seed data, read what was written
and inject faults.
"""
