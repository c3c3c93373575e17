"""The production topology, on one machine, for the end-to-end test (docs/production.md): CeleryExecutor
with a Redis broker, the metadata DB and the audit store on PostgreSQL, the workspace on S3, and Celery
workers that share nothing on local disk (each its own empty AIRFLOW_HOME and working directory).

``production_env`` is the one place the topology's settings are made: the test's stack uses it, and
``tests/test_compose.py`` checks that ``docker-compose.yaml`` sets the same settings the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devkit.airflow_local import LocalAirflow, free_port

METADATA_DB, AUDIT_DB = "airflow", "reconcile_audit"
WORKSPACE_CONN_ID, WORKSPACE_BUCKET = "reconcile_workspace", "reconcile-workspace"
# The settings the topology is made of, and that docker-compose.yaml must set the same way.
SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW_RECONCILE_WORKSPACE",
    "AIRFLOW_CONN_RECONCILE_WORKSPACE",
    "AIRFLOW_CONN_RECONCILE_AUDIT",
)


def production_env(*, postgres: str, redis: str, s3_connection: str) -> dict[str, str]:
    """The topology's settings. ``postgres``: ``user:password@host:port`` of the PostgreSQL server (both
    databases); ``redis``: ``:password@host:port`` of the broker; ``s3_connection``: the Amazon
    provider's connection (JSON) to the object store."""
    metadata = f"postgresql+psycopg://{postgres}/{METADATA_DB}"
    audit = f"postgresql+psycopg://{postgres}/{AUDIT_DB}"
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        # The API server's and scheduler's async engine: psycopg 3 is async too (else Airflow wants asyncpg).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{redis}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata}",
        "AIRFLOW_RECONCILE_WORKSPACE": f"s3://{WORKSPACE_CONN_ID}@{WORKSPACE_BUCKET}/reconcile",
        "AIRFLOW_CONN_RECONCILE_WORKSPACE": s3_connection,
        "AIRFLOW_CONN_RECONCILE_AUDIT": json.dumps(
            {"conn_type": "reconcile_audit", "extra": {"sqlalchemy_url": audit}}
        ),
    }


class LocalRedis:
    """Debian's redis-server (``make system-deps``) on a free port of 127.0.0.1, with a password and no
    persistence, in a directory of its own."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found; run `make system-deps` (installs Debian's redis-server)")
        self.exe, self.port, self.password = exe, free_port(), os.urandom(12).hex()
        self.root = Path(tempfile.mkdtemp(prefix="reconcile-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRedis:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password,
             "--save", "", "--appendonly", "no", "--dir", str(self.root)],
            stdout=(self.root / "redis.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        import socket

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start: {(self.root / 'redis.log').read_text()[-2000:]}")

    @property
    def address(self) -> str:
        return f":{self.password}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        shutil.rmtree(self.root, ignore_errors=True)


class CeleryWorker:
    """``airflow celery worker`` as a host of its own: an empty AIRFLOW_HOME and working directory (the
    configuration is the environment, as a deployment's image or unit file sets it), one task at a time, its own process group
    (``kill()`` is a ``kill -9`` of the worker and every task process it started)."""

    def __init__(self, airflow: LocalAirflow, name: str, hostname: str, home: Path) -> None:
        """``home``: a new directory, the worker's AIRFLOW_HOME and working directory (kept after ``stop``:
        the task logs of its tries are there)."""
        self.airflow, self.name, self.hostname, self.home = airflow, name, hostname, home
        home.mkdir(parents=True)  # empty: Airflow writes its own airflow.cfg there; the settings are the env's
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.home / "worker.log"

    def start(self) -> CeleryWorker:
        env = {
            **self.airflow.env,
            "AIRFLOW_HOME": str(self.home),
            # Task instances record the host they ran on: one name per worker (both resolve to loopback).
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devkit.topology.worker_hostname",
            "RECONCILE_WORKER_HOSTNAME": self.hostname,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }
        exe = str(Path(sys.executable).with_name("airflow"))
        self.proc = subprocess.Popen(
            [exe, "celery", "worker", "--concurrency", "1", "--celery-hostname", f"{self.name}@%h",
             "--without-mingle", "--without-gossip"],
            env=env, cwd=self.home, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"celery worker {self.name} exited: {self.log.read_text()[-3000:]}")
            if " ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"celery worker {self.name} not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """``kill -9`` of the worker and every process under it, at once, as when its host dies: no
        clean-up runs, nothing is acknowledged. (Airflow's task processes leave the worker's process
        group, so a group kill alone would leave the task running without its supervisor.)"""
        import psutil

        if self.proc is None:
            return
        root = psutil.Process(self.proc.pid)
        tree = [root, *root.children(recursive=True)]
        for process in tree:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(tree, timeout=30)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the test's workers: the name each was given."""
    import socket

    return os.environ.get("RECONCILE_WORKER_HOSTNAME") or socket.getfqdn()
