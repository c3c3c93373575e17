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

pytestmark = pytest.mark.slow  # builds a wheel and imports in fresh interpreters

HEAVY = ("pandas", "great_expectations", "jira", "slack_sdk")


def core_modules() -> list[str]:
    """Every module of the core (the import contract checks the code; this checks what importing it loads)."""
    import airflow_reconcile.core

    return [info.name for info in pkgutil.walk_packages(airflow_reconcile.core.__path__, "airflow_reconcile.core.")]


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
    assert {"airflow_reconcile.core.drift", "airflow_reconcile.core.rules", "airflow_reconcile.core.audit",
            "airflow_reconcile.core.sources.jira", "airflow_reconcile.core.actions.jira"} <= set(modules)  # fmt: skip
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
    import airflow_reconcile.provider.operators as operators
    import airflow_reconcile.provider.plugins as plugins
    import airflow_reconcile.provider.sensors as sensors

    assert operators.__file__ == str(REPO / "operators" / "__init__.py")
    assert sensors.__file__ == str(REPO / "sensors" / "__init__.py")
    assert plugins.__file__ == str(REPO / "plugins" / "__init__.py")


def test_built_wheel_has_one_namespace_and_imports(tmp_path):
    # The README's command, with the output folder moved out of the repo.
    build = subprocess.run(["make", "wheel", f"DIST={tmp_path / 'dist'}"], cwd=REPO, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("airflow_reconcile-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("airflow_reconcile/provider/operators/apply.py", "airflow_reconcile/provider/sensors/freshness.py",
                     "airflow_reconcile/provider/plugins/api.py", "airflow_reconcile/provider/plugins/page.html",
                     "airflow_reconcile/provider/plugins/listener.py", "airflow_reconcile/provider/dag_factory.py",
                     "airflow_reconcile/provider/compat.py", "airflow_reconcile/core/examples/ticket_ownership.py"):  # fmt: skip
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
        "import airflow_reconcile.provider.operators as o, airflow_reconcile.provider.sensors as s\n"
        "import airflow_reconcile.provider.plugins as p\n"
        "print(o.__file__); print(s.__file__); print(p.__file__)",
        cwd=tmp_path,  # not the repo: its folders would shadow the installed copy
        PYTHONPATH=str(target),
    )
    files = [line for line in out.splitlines() if line.endswith("__init__.py")]
    assert len(files) == 3, out
    assert all(f.startswith(str(target)) for f in files), out
    # The layer contract holds for the installed package too (make imports checks the source tree).
    contract = subprocess.run([str(REPO / ".venv" / "bin" / "lint-imports"), "--no-logo", "--no-cache",
                               str(REPO / ".importlinter")], cwd=target, capture_output=True, text=True)  # fmt: skip
    assert contract.returncode == 0, contract.stdout[-3000:]
    assert "Contracts: 5 kept, 0 broken." in contract.stdout


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
