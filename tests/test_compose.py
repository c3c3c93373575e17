"""No Docker engine in CI: check docker-compose.yaml by parsing it."""

from __future__ import annotations

import json
import tomllib

import yaml

from tests.conftest import REPO


def load():
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_services_like_airflows_own_compose():
    services = load()["services"]
    assert {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-worker", "airflow-triggerer", "airflow-init"} <= set(services)  # fmt: skip
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-triggerer",
    ):
        service = services[name]
        assert service["image"].endswith("apache/airflow:3.3.2}")
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert "./dags:/opt/airflow/dags" in service["volumes"]
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]


def test_package_is_installed_from_the_mounted_project():
    service = load()["services"]["airflow-scheduler"]
    env = service["environment"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    project, extras = env["_PIP_ADDITIONAL_REQUIREMENTS"].rstrip("]").split("[")
    assert mounts[project] == "."
    assert (REPO / "pyproject.toml").exists()
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.split(",")) == {"postgres", "lineage", "s3"} <= set(declared)


def test_audit_store_uses_the_driver_the_postgres_extra_installs():
    env = load()["services"]["airflow-scheduler"]["environment"]
    url = json.loads(env["AIRFLOW_CONN_RECONCILE_AUDIT"])["extra"]["sqlalchemy_url"]
    assert url.startswith("postgresql+psycopg://")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("psycopg[binary]") for dep in declared["postgres"])


def init_script():
    postgres = load()["services"]["postgres"]
    init = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    return REPO / init.split(":")[0]


def test_audit_store_database_is_created_with_its_own_roles():
    script = init_script().read_text()
    assert "CREATE DATABASE reconcile_audit OWNER reconcile_owner" in script
    env = load()["services"]["airflow-scheduler"]["environment"]
    url = json.loads(env["AIRFLOW_CONN_RECONCILE_AUDIT"])["extra"]["sqlalchemy_url"]
    assert url.startswith("postgresql+psycopg://reconcile_tasks:")  # not the metadata DB's superuser
    init = load()["services"]["airflow-init"]
    assert init["environment"]["RECONCILE_AUDIT_URL"].startswith("postgresql+psycopg://reconcile_owner:")
    assert "db grant --role reconcile_tasks" in init["command"][1]


def test_no_real_credentials_in_compose():
    env = load()["services"]["airflow-scheduler"]["environment"]
    assert "CHANGE-ME" in env["AIRFLOW_CONN_RECONCILE_JIRA"]
    assert "CHANGE-ME" in env["AIRFLOW_CONN_RECONCILE_SLACK"]


def test_every_secret_comes_from_the_env_file_that_make_compose_env_writes():
    """No default password, no empty Fernet key: compose refuses to start without .env, and .env holds
    exactly the secrets compose reads."""
    import re

    from devkit.compose_env import SECRETS

    text = (REPO / "docker-compose.yaml").read_text()
    assert "DEVELOPMENT ONLY" in text.splitlines()[0]
    assert "airflow:airflow" not in text
    assert 'FERNET_KEY: ""' not in text
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?run make compose-env\}", text))
    optional = set(re.findall(r"\$\{([A-Z_]+):-", text))
    assert required == set(SECRETS)
    assert optional <= {"AIRFLOW_IMAGE_NAME", "AIRFLOW_UID", "AIRFLOW_PROJ_DIR", "_AIRFLOW_WWW_USER_USERNAME"}
    assert load()["services"]["redis"]["command"][1] == "--requirepass"
    assert "run make compose-env" in load()["services"]["airflow-scheduler"]["environment"]["AIRFLOW__CORE__FERNET_KEY"]


def test_compose_env_writes_every_secret_once_readable_by_its_owner_only(tmp_path):
    import base64
    import subprocess
    import sys

    env_file = tmp_path / ".env"
    subprocess.run([sys.executable, str(REPO / "devkit" / "compose_env.py"), str(env_file)], check=True)
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if not line.startswith("#"))
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert len(base64.urlsafe_b64decode(values["FERNET_KEY"])) == 32  # what Fernet takes
    assert all(len(v) >= 16 for k, v in values.items() if k != "AIRFLOW_UID")
    before = env_file.read_text()
    subprocess.run([sys.executable, str(REPO / "devkit" / "compose_env.py"), str(env_file)], check=True)
    assert env_file.read_text() == before  # never overwritten: its keys sign and encrypt what exists


def _shape(name: str, value: str) -> object:
    """What must agree between compose and the end-to-end test's topology, host, user and secret aside:
    URL schemes and drivers, database names, broker database, the workspace's scheme, connection id,
    bucket and prefix, and each connection's type and extra fields (the audit store's URL shaped so too)."""
    import re
    from urllib.parse import urlsplit

    value = re.sub(r"\$\{[^}]+\}", "secret", value)  # compose's ${VAR:?...} placeholders
    if name.startswith("AIRFLOW_CONN_"):
        conn = json.loads(value)
        extra = conn.get("extra", {})
        url = extra.get("sqlalchemy_url")
        return (conn["conn_type"], sorted(extra), _shape("url", url) if url else None, sorted(conn))
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if name == "AIRFLOW_RECONCILE_WORKSPACE":  # s3://<conn_id>@<bucket>/<prefix>: all of it must agree
        return (parts.scheme, parts.username, parts.hostname, parts.path)
    return (parts.scheme, parts.path)


def test_compose_runs_the_topology_the_production_test_runs():
    """docker-compose.yaml and the production end-to-end test (devkit.topology.production_env) set the
    same settings the same way: executor, metadata DB, broker, result backend, workspace, its connection
    and the audit store's."""
    from devkit.topology import SETTINGS, production_env

    compose = load()["x-airflow-common"]["environment"]
    tested = production_env(
        postgres="user:password@127.0.0.1:5432", redis=":password@127.0.0.1:6379",
        s3_connection=json.dumps({"conn_type": "aws", "login": "key", "password": "secret",
                                  "extra": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"}}),
    )  # fmt: skip
    assert set(tested) == set(SETTINGS)
    for name in SETTINGS:
        assert name in compose, f"docker-compose.yaml does not set {name}"
        assert _shape(name, compose[name]) == _shape(name, tested[name]), name
    assert (
        compose["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+") == compose["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    services = load()["services"]
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["redis"]["image"].startswith("redis:")
    assert "minio" in services  # the workspace's object store
