"""Run a real Airflow 3 locally (API server, scheduler, DAG processor, triggerer) and drive it over REST.

Used by ``make demo`` and the integration tests. Everything listens on 127.0.0.1; every process
runs in its own process group so that stopping it stops its workers too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN = ("admin", "admin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalAirflow:
    def __init__(
        self,
        home: Path,
        *,
        port: int = 8080,
        dags_folder: Path = REPO / "dags",
        extra_env: dict[str, str] | None = None,
        users: dict[str, tuple[str, str]] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        """``users``: more users than the admin, name → (role, password); roles as SimpleAuthManager's."""
        self.home = Path(home).resolve()
        self.users = {ADMIN[0]: ("admin", ADMIN[1]), **(users or {})}
        self.port = port
        self.dags_folder = dags_folder
        self.extra_env = extra_env or {}
        self.log = log
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def lineage_file(self) -> Path:
        """Where the OpenLineage events go: one JSON event per line."""
        return self.home / "openlineage.jsonl"

    @property
    def env(self) -> dict[str, str]:
        home = self.home
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, (r, _) in self.users.items()),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": "local-dev-only-jwt-secret-not-for-production",
                "AIRFLOW__API__SECRET_KEY": "local-dev-only-secret-key",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                # How often unanswered approvals past their timeout are resolved (default 15 s).
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                # OpenLineage events (apache-airflow-providers-openlineage) as JSON lines in AIRFLOW_HOME.
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                    {"type": "file", "log_file_path": str(self.lineage_file), "append": True}
                ),
                "GX_ANALYTICS_ENABLED": "False",
                "NO_PROXY": "127.0.0.1,localhost",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
            }
        )
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        exe = str(Path(sys.executable).with_name("airflow"))
        return subprocess.run([exe, *args], env=self.env, check=check, capture_output=True, text=True)

    def prepare(self) -> None:
        """Create AIRFLOW_HOME, the fixed passwords and the migrated SQLite metadata DB."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({n: p for n, (_, p) in self.users.items()}))
        started = time.monotonic()
        result = self.airflow("db", "migrate", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        self.log(f"metadata DB ready in {time.monotonic() - started:.1f}s ({self.home / 'airflow.db'})")

    def start(self) -> None:
        exe = str(Path(sys.executable).with_name("airflow"))
        logs = self.home / "component-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for component in COMPONENTS:
            out = (logs / f"{component}.log").open("ab")
            self.procs[component] = subprocess.Popen(
                [exe, component], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 180) -> float:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode}: {self.tail(name)}")
            try:
                if requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).ok:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow API server not ready after {timeout}s: {self.tail('api-server')}")

    def tail(self, component: str, chars: int = 3000) -> str:
        path = self.home / "component-logs" / f"{component}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.procs.clear()

    # -- REST API --------------------------------------------------------------------------
    def token(self, username: str = ADMIN[0], password: str = ADMIN[1]) -> str:
        response = requests.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=10
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if self._token is None:
            self._token = self.token()
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def get(self, path: str, retries: int = 5, **kwargs: Any) -> Any:
        """GET with a few retries: some endpoints answer 500 briefly right after a run ends."""
        for attempt in range(retries):
            response = self.api("GET", path, **kwargs)
            if response.status_code < 500 or attempt == retries - 1:
                response.raise_for_status()
                return response.json()
            time.sleep(1)
        raise AssertionError("unreachable")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.api("GET", f"/api/v2/dags/{dag_id}")
            if response.ok:
                return dict(response.json())
            time.sleep(2)
        errors = self.api("GET", "/api/v2/importErrors").json()
        raise TimeoutError(f"DAG {dag_id} not registered after {timeout}s; import errors: {errors}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, retries: int = 5) -> str:
        """Trigger a run; a 500 "Database error" (SQLite busy while the scheduler writes) is retried.

        The run id is chosen here, so a retry after a lost answer finds its run (409) instead of
        starting a second one.
        """
        from datetime import UTC, datetime

        run_id = f"manual__{datetime.now(UTC).isoformat()}"  # the form Airflow gives manual runs
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        for attempt in range(retries):
            response = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
            if response.ok:
                return str(response.json()["dag_run_id"])
            if attempt and response.status_code == 409:  # the earlier attempt created it
                return run_id
            if response.status_code < 500 or attempt == retries - 1:
                break
            time.sleep(1 + attempt)
        raise RuntimeError(f"trigger {dag_id} failed: {response.status_code} {response.text}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        state = "queued"
        while time.monotonic() < deadline:
            state = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return str(state)
            time.sleep(2)
        raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"])

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        data = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
        value = data["value"]
        return json.loads(value) if isinstance(value, str) else value
