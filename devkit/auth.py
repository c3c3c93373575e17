"""An auth manager with per-DAG read rights, for the integration tests.

Airflow's ``SimpleAuthManager`` gives every user of a role the same rights on every DAG; production
deployments get per-DAG rights from the FAB or Keycloak auth managers. To test that the plugin shows
a user only the DAGs the auth manager lets them read, the test stack runs this subclass: it answers
exactly like ``SimpleAuthManager``, except that a user named in ``RECONCILE_DAG_GRANTS`` (JSON:
``{"user": ["dag_id", ...]}``) may not read or edit any other DAG.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

GRANTS_ENV = "RECONCILE_DAG_GRANTS"


def grants() -> dict[str, set[str]]:
    return {user: set(dag_ids) for user, dag_ids in json.loads(os.environ.get(GRANTS_ENV) or "{}").items()}


class PerDagAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        granted = grants().get(user.get_name())
        if granted is not None and details is not None and getattr(details, "id", None) not in granted:
            return False
        return bool(super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details))
