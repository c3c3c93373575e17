"""The README's commands are the ones the project runs: CI runs its `make test`, make its deploy commands."""

from __future__ import annotations

from devkit.readme import blocks, commands
from tests.conftest import REPO


def command_of(line: str) -> str:
    """A README line without its trailing comment."""
    return line.split("  #", 1)[0].strip()


def test_ci_runs_the_readmes_make_test_and_nothing_else():
    demo, test = (command_of(line) for line in commands("two-commands"))
    assert (demo, test) == ("make demo", "make test")
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert [line for line in ci if line and not line.startswith(("#", "set ", "cd "))] == [test]


def test_make_compat_installs_with_the_readmes_deploy_commands():
    from airflow_reconcile import __version__

    makefile = (REPO / "Makefile").read_text()
    assert "devkit/readme.py run deploy-install --venv .venv-airflow-$*" in makefile
    build, install = commands("deploy-install")
    assert build == "make wheel"
    wheel = f"dist/airflow_reconcile-{__version__}-py3-none-any.whl"
    assert install == f'pip install "{wheel}[postgres,lineage]"'  # the extras compose installs too


def test_every_marked_block_is_run_by_a_test():
    """A block nobody runs would drift from the code; each marked block is named by a test or by make."""
    runners = (REPO / "Makefile").read_text() + "".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for name in blocks():
        assert f'commands("{name}")' in runners or f"run {name} " in runners, name
