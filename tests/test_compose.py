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
    assert set(extras.split(",")) == {"postgres", "lineage"} <= set(declared)


def test_audit_store_uses_the_driver_the_postgres_extra_installs():
    env = load()["services"]["airflow-scheduler"]["environment"]
    url = json.loads(env["AIRFLOW_CONN_RECONCILE_AUDIT"])["extra"]["sqlalchemy_url"]
    assert url.startswith("postgresql+psycopg://")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("psycopg[binary]") for dep in declared["postgres"])


def test_audit_store_database_is_created():
    postgres = load()["services"]["postgres"]
    init = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = REPO / init.split(":")[0]
    assert "CREATE DATABASE reconcile_audit" in script.read_text()


def test_no_real_credentials_in_compose():
    env = load()["services"]["airflow-scheduler"]["environment"]
    assert "CHANGE-ME" in env["AIRFLOW_CONN_RECONCILE_JIRA"]
    assert "CHANGE-ME" in env["AIRFLOW_CONN_RECONCILE_SLACK"]
