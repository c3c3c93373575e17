"""Layout, packaging and import-weight contracts."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import zipfile

import pytest

import airflow_reconcile
from tests.conftest import REPO

AIRFLOW_LAYER = {"hooks", "dag_factory", "compat", "operators", "sensors", "plugins"}
HEAVY = ("pandas", "great_expectations", "jira", "slack_sdk")


def core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(airflow_reconcile.__path__, "airflow_reconcile."):
        if info.name.split(".")[1] not in AIRFLOW_LAYER:
            names.append(info.name)
    return names


def python(code: str, cwd: object = None, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**_env(), **env}, cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_core_imports_no_airflow():
    modules = core_modules()
    assert {"airflow_reconcile.drift", "airflow_reconcile.rules", "airflow_reconcile.audit",
            "airflow_reconcile.sources.jira", "airflow_reconcile.actions.jira"} <= set(modules)  # fmt: skip
    out = python(
        "import importlib, sys, json\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))))"
    )
    assert json.loads(out) == []


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (REPO / "dags").glob("*.py")))
def test_dag_files_stay_light(dag_file):
    out = python(
        "import runpy, sys, json\n"
        f"runpy.run_path({str(REPO / 'dags' / dag_file)!r})\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_folders_map_to_one_namespace():
    import airflow_reconcile.operators as operators
    import airflow_reconcile.plugins as plugins
    import airflow_reconcile.sensors as sensors

    assert operators.__file__ == str(REPO / "operators" / "__init__.py")
    assert sensors.__file__ == str(REPO / "sensors" / "__init__.py")
    assert plugins.__file__ == str(REPO / "plugins" / "__init__.py")


def test_built_wheel_has_one_namespace_and_imports(tmp_path):
    # The README's command, with the output folder moved out of the repo.
    build = subprocess.run(["make", "wheel", f"DIST={tmp_path / 'dist'}"], cwd=REPO, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("airflow_reconcile-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("airflow_reconcile/operators/apply.py", "airflow_reconcile/sensors/freshness.py",
                     "airflow_reconcile/plugins/api.py", "airflow_reconcile/plugins/page.html",
                     "airflow_reconcile/plugins/listener.py", "airflow_reconcile/dag_factory.py",
                     "airflow_reconcile/compat.py", "airflow_reconcile/examples/ticket_ownership.py"):  # fmt: skip
        assert expected in names
    # The shipped DAG files and specs, for `reconcile init` (a wheel is all a user needs for the example).
    shipped = sorted(
        n.removeprefix("airflow_reconcile/dags/") for n in names if n.startswith("airflow_reconcile/dags/")
    )
    in_repo = sorted(
        str(p.relative_to(REPO / "dags")) for p in (REPO / "dags").rglob("*") if p.suffix in (".py", ".yaml")
    )
    assert shipped == in_repo
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: apache-airflow<3.4,>=3.1" in metadata
    assert "Provides-Extra: postgres" in metadata
    assert "Provides-Extra: lineage" in metadata
    assert not [n for n in names if n.split("/")[0] in ("operators", "sensors", "plugins", "dags", "devkit", "tests")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[airflow.plugins]" in text
    assert "[apache_airflow_provider]" in text
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    out = python(
        "import airflow_reconcile.operators as o, airflow_reconcile.sensors as s, airflow_reconcile.plugins as p\n"
        "print(o.__file__); print(s.__file__); print(p.__file__)",
        cwd=tmp_path,  # not the repo: its folders would shadow the installed copy
        PYTHONPATH=str(target),
    )
    files = [line for line in out.splitlines() if line.endswith("__init__.py")]
    assert len(files) == 3, out
    assert all(f.startswith(str(target)) for f in files), out


def test_the_environment_is_installed_with_bytecode():
    """These machines set PYTHONDONTWRITEBYTECODE=1: bytecode comes from the install, or every process
    recompiles what it imports (import great_expectations: 11.5 s without, 5.9 s with). The Airflow 3.1
    and 3.2 environments are checked in tests/integration/test_airflow_versions.py."""
    assert missing_bytecode(REPO / ".venv") == []


def missing_bytecode(venv: object, modules: tuple[str, ...] = ("airflow", "pandas", "great_expectations")) -> list[str]:
    """The packages of ``venv`` whose ``__init__`` has no compiled bytecode."""
    from pathlib import Path

    site = next((Path(str(venv)) / "lib").glob("python3.*/site-packages"))
    return [m for m in modules if not list((site / m / "__pycache__").glob("__init__.cpython-3*.pyc"))]


def test_provider_and_plugin_are_registered_with_airflow():
    out = python(
        "import json\n"
        "from airflow.providers_manager import ProvidersManager\n"
        "pm = ProvidersManager()\n"
        "info = pm.providers['airflow-reconcile']\n"
        "types = sorted(t for t in pm.hooks if t.startswith('reconcile_'))\n"
        "print(json.dumps({'version': info.version, 'types': types}))"
    )
    data = json.loads(out.strip().splitlines()[-1])
    assert data["version"] == airflow_reconcile.__version__
    assert data["types"] == ["reconcile_audit", "reconcile_jira"]
    plugins = subprocess.run(
        [str(REPO / ".venv" / "bin" / "airflow"), "plugins", "--output", "json"], capture_output=True, text=True
    )
    assert plugins.returncode == 0, plugins.stderr[-2000:]
    start = next(i for i, line in enumerate(plugins.stdout.splitlines()) if line.lstrip().startswith("[{"))
    listed = json.loads("\n".join(plugins.stdout.splitlines()[start:]))
    [ours] = [p for p in listed if p["name"] == "airflow_reconcile"]
    assert "group='airflow.plugins'" in ours["source"]  # loaded through the entry point, not a plugins folder
    assert ours["fastapi_apps"][0]["url_prefix"] == "/reconcile"
