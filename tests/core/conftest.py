from __future__ import annotations

import pytest


@pytest.fixture
def seeded(jira_standin):
    """Three Jira issues: OPS-1 bob's, OPS-2 unassigned, OPS-3 alice's; users alice, bob and an inactive one."""
    jira_standin.seed(
        {
            "users": [{"name": "alice"}, {"name": "bob"}, {"name": "gone", "active": False}],
            "issues": [
                {"key": "OPS-1", "service": "a", "assignee": "bob"},
                {"key": "OPS-2", "service": "b", "assignee": None},
                {"key": "OPS-3", "service": "c", "assignee": "alice"},
            ],
        }
    )
    return jira_standin
