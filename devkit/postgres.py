"""A throw-away PostgreSQL server from Debian's packages, on loopback, for tests.

``make system-deps`` installs the ``postgresql`` package when it is missing. The server runs as the
``postgres`` system user when we are root (PostgreSQL refuses to run as root), in a data directory
of its own, on a free port of 127.0.0.1, with password authentication over TCP.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from devkit.airflow_local import free_port


class PostgresNotInstalled(RuntimeError):
    pass


def bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise PostgresNotInstalled(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; run `make system-deps` "
            "(installs Debian's postgresql package)"
        )
    return Path(found[-1]).parent


class LocalPostgres:
    def __init__(self, user: str = "reconcile", database: str = "reconcile") -> None:
        self.bin = bin_dir()
        self.user, self.database = user, database
        self.password = secrets.token_urlsafe(16)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="reconcile-pg-"))
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            os.chmod(self.root, 0o755)
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, text=True)

    def start(self) -> LocalPostgres:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._as:
            owner = pwd.getpwnam("postgres")
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=50", "start",
        )  # fmt: skip
        self._run(
            str(self.bin / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U", self.user, self.database
        )
        return self

    def url(self, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
