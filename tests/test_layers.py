"""The layer contract (.importlinter) holds, and breaks when a module crosses a layer.

``make imports`` checks the tree as it is; these tests plant one offending module in a copy of the
package's tree and expect the contract that forbids it to fail, naming the module.
"""

from __future__ import annotations

import subprocess

import pytest

from devkit.import_graph import build
from tests.conftest import REPO

LINT = [str(REPO / ".venv" / "bin" / "lint-imports"), "--no-logo", "--no-cache", str(REPO / ".importlinter")]


def lint(tree):
    return subprocess.run(LINT, cwd=tree, capture_output=True, text=True)


def test_the_package_keeps_every_contract(tmp_path):
    build(tmp_path)
    result = lint(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 5 kept, 0 broken." in result.stdout


PLANTED = {
    "core imports airflow": (
        "airflow_reconcile/core/planted.py", "from airflow.sdk import BaseOperator\n",
        "The core never imports Airflow, the Airflow layer or the CLI BROKEN", "airflow_reconcile.core.planted"),
    "core imports the Airflow layer": (
        "airflow_reconcile/core/planted.py", "from airflow_reconcile.provider import hooks\n",
        "CLI above the Airflow layer above the core BROKEN", "airflow_reconcile.core.planted"),
    "an operator imports another": (
        "airflow_reconcile/provider/operators/planted.py", "from airflow_reconcile.provider.operators import apply\n",
        "Operators never import each other; sensors never import operators BROKEN",
        "airflow_reconcile.provider.operators.planted"),
    "a sensor imports an operator": (
        "airflow_reconcile/provider/sensors/planted.py", "from airflow_reconcile.provider.operators import snapshot\n",
        "Operators never import each other; sensors never import operators BROKEN",
        "airflow_reconcile.provider.sensors.planted"),
    "a cycle in the core": (
        "airflow_reconcile/core/planted.py", "from airflow_reconcile.core import drift\n",
        "No import cycles among the modules of any package BROKEN", "planted"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_import_breaks_its_contract(tmp_path, case):
    build(tmp_path)
    path, code, broken, named = PLANTED[case]
    (tmp_path / path).write_text(code)
    if case == "a cycle in the core":  # drift now imports the planted module back
        drift = tmp_path / "airflow_reconcile/core/drift.py"
        text = drift.read_text()
        drift.unlink()  # a symlink into the repo: replace it, never write through it
        drift.write_text(text + "\nfrom airflow_reconcile.core import planted  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert broken in result.stdout
    assert named in result.stdout


def test_compat_may_not_import_what_is_above_it(tmp_path):
    """Inside the Airflow layer: compat is the bottom; it may not import hooks."""
    build(tmp_path)
    compat = tmp_path / "airflow_reconcile/provider/compat.py"
    text = compat.read_text()
    compat.unlink()
    compat.write_text(text + "\nfrom airflow_reconcile.provider import hooks  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "Inside the Airflow layer: factory and plugin, tasks, their base, hooks, lineage" in result.stdout
    assert "airflow_reconcile.provider.compat -> airflow_reconcile.provider.hooks" in result.stdout
