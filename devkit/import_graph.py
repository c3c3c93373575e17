"""The installed package's tree, for the import contract (``make imports``).

setuptools maps the card's top-level folders into the package (``operators/`` is
``airflow_reconcile.provider.operators``); import-linter reads a package from one directory tree.
This builds that tree as the wheel has it, from symlinks (pyproject's ``packages`` and
``package-dir``), so the contract checks the same modules users import.

    python devkit/import_graph.py DIR     # then: PYTHONPATH=DIR lint-imports
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def source_dir(package: str, package_dir: dict[str, str]) -> Path:
    """Where setuptools takes ``package`` from: the longest mapped prefix, the rest as folders."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in package_dir:
            return REPO / package_dir[prefix] / Path(*parts[cut:])
    return REPO / Path(*parts)


def build(target: Path) -> None:
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    shutil.rmtree(target, ignore_errors=True)
    for package in tool["packages"]:
        source = source_dir(package, tool.get("package-dir", {}))
        folder = target / Path(*package.split("."))
        folder.mkdir(parents=True, exist_ok=True)
        for module in sorted(source.glob("*.py")):
            (folder / module.name).symlink_to(module)


if __name__ == "__main__":
    build(Path(sys.argv[1]).resolve())
