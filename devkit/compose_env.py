"""Write ``.env`` for ``docker-compose.yaml``: every secret the compose stack needs, random, once.

``make compose-env`` runs this with the system's Python 3 (standard library only). An existing ``.env``
is never overwritten (its keys encrypt the stack's stored connections and sign its audit trail):
delete it on purpose to start over. The file is readable by its owner only, and git ignores it.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

# name -> how its value is made. Every ${NAME} docker-compose.yaml reads is here (a test checks it).
SECRETS = {
    "FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),  # Airflow's connection encryption
    "AIRFLOW_API_SECRET": lambda: secrets.token_urlsafe(32),  # signs the API server's tokens
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),  # the metadata DB's role (airflow)
    "AUDIT_OWNER_PASSWORD": lambda: secrets.token_urlsafe(24),  # owns the audit tables, migrates them
    "AUDIT_TASKS_PASSWORD": lambda: secrets.token_urlsafe(24),  # the tasks' role: SELECT/INSERT on the chains
    "RECONCILE_AUDIT_KEY": lambda: secrets.token_hex(32),  # the audit trail's HMAC key
    "REDIS_PASSWORD": lambda: secrets.token_urlsafe(24),
    "WORKSPACE_S3_PASSWORD": lambda: secrets.token_urlsafe(24),  # the workspace's object store (MinIO's root user)
    "_AIRFLOW_WWW_USER_PASSWORD": lambda: secrets.token_urlsafe(12),  # the UI's admin user
}


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else ".env")
    if path.exists():
        print(f"{path} exists; nothing changed (delete it to make new secrets: stored connections and the audit "
              "trail's checkpoints then no longer verify)")  # fmt: skip
        return 0
    lines = ["# Made by `make compose-env` for docker-compose.yaml (development only). Keep it secret."]
    lines += [f"{name}={make()}" for name, make in SECRETS.items()]
    lines.append(f"AIRFLOW_UID={os.getuid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    print(f"{path} written ({len(SECRETS)} secrets, mode 600); the UI's admin password is _AIRFLOW_WWW_USER_PASSWORD")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
