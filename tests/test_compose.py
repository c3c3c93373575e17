"""No Docker engine in CI: check docker-compose.yaml by parsing it."""

from __future__ import annotations

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
    assert mounts[env["_PIP_ADDITIONAL_REQUIREMENTS"]] == "."
    assert (REPO / "pyproject.toml").exists()


def test_audit_store_database_is_created():
    postgres = load()["services"]["postgres"]
    init = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = REPO / init.split(":")[0]
    assert "CREATE DATABASE reconcile_audit" in script.read_text()


def test_no_real_credentials_in_compose():
    env = load()["services"]["airflow-scheduler"]["environment"]
    assert "CHANGE-ME" in env["AIRFLOW_CONN_RECONCILE_JIRA"]
    assert "CHANGE-ME" in env["AIRFLOW_CONN_RECONCILE_SLACK"]
