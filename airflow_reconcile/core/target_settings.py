"""The built-in targets' settings in a spec (``targets.jira``, ``targets.slack``): each target's record names
its model (``catalog.TargetRecord.settings``). Here, apart from the targets' modules, so the spec model can
use them without importing the executors."""

from __future__ import annotations

from pydantic import Field

from airflow_reconcile.core.catalog import TargetSettings


class JiraSettings(TargetSettings):
    """``targets.jira``."""

    connection_id: str = "reconcile_jira"
    issue_key_column: str = Field(
        default="key", description="The actual side's column holding the issue key an action on an issue acts on."
    )


class SlackSettings(TargetSettings):
    """``targets.slack``."""

    connection_id: str = "reconcile_slack"
    digest_channel: str = "#ops-reconcile"
    team_column: str | None = None
    channel_template: str = "#{team}"
    post_in_shadow: bool = False
