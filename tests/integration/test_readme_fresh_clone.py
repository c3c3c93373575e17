"""The README's commands, as written, in a fresh `git clone` of the committed repository.

Only the ports may change, through the environment, and only when the defaults are taken.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from airflow_reconcile.core.examples.ticket_ownership import ticket_ownership
from airflow_reconcile.core.vocabulary import TaskId
from devkit.airflow_local import free_port
from devkit.demo import lineage_events
from devkit.readme import activated, commands, run, user_env
from tests.conftest import REPO
from tests.test_readme import command_of

pytestmark = pytest.mark.integration

DEFAULT_PORTS = {"AIRFLOW_PORT": 8080, "JIRA_PORT": 8081, "SLACK_PORT": 8082}


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    target = tmp_path_factory.mktemp("fresh") / "airflow-reconcile"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def shell():
    """A user's shell: none of the test session's Airflow settings; ports only if the defaults are taken."""
    env = user_env()
    ports = {k: str(v) for k, v in DEFAULT_PORTS.items()}
    if any(port_taken(p) for p in DEFAULT_PORTS.values()):
        ports = {k: str(free_port()) for k in DEFAULT_PORTS}
        env.update(ports)
    return env, {k: int(v) for k, v in ports.items()}


def assert_summary(out: str, port: int, lineage_file) -> None:
    seeded = ticket_ownership()
    drift = seeded.expected_drift()
    assert "Airflow ready in" in out
    assert "(user admin, password admin)" in out
    assert f"rows read: desired {len(seeded.catalog)} (service catalog), actual {len(seeded.issues)} (Jira)" in out
    assert (
        f"drift: {drift['missing']} missing, {drift['unexpected']} unexpected, {drift['changed']} changed, "
        f"{drift['unchanged']} unchanged" in out
    )
    outcomes = {"shadow": drift["changed"], "needs_approval": drift["missing"], "in_review": drift["unexpected"]}
    assert f"outcomes (shadow mode): {outcomes}" in out
    assert "audit records written: 9" in out  # eight tasks, and request_approval skipped in shadow mode
    [run_id] = re.findall(r"^Run (\S+): success in ", out, flags=re.MULTILINE)
    assert f"http://127.0.0.1:{port}/dags/reconcile_ticket_ownership/runs/{run_id}" in out
    events = lineage_events(lineage_file, run_id)
    assert f"lineage events: {len(events)} in {lineage_file}" in out
    completed = {e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"}
    assert {
        f"reconcile_ticket_ownership.{t}" for t in (TaskId.READ_DESIRED, TaskId.DETECT_DRIFT, TaskId.APPLY_CORRECTIONS)
    } <= completed


def test_make_demo_as_written_serves_until_ctrl_c(clone, shell):
    env, ports = shell
    demo = command_of(commands("two-commands")[0])
    assert demo == "make demo"
    proc = subprocess.Popen(["bash", "-c", demo], cwd=clone, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 900
        assert proc.stdout is not None
        for line in proc.stdout:  # until the demo says it keeps serving
            lines.append(line)
            if line.startswith("Airflow keeps serving at") or time.monotonic() > deadline:
                break
        out = "".join(lines)
        assert "Airflow keeps serving at" in out, out[-4000:]
        # The default DEMO_HOME is relative (.airflow/demo): every part of it lands in the clone.
        assert_summary(out, ports["AIRFLOW_PORT"], clone / ".airflow" / "demo" / "openlineage.jsonl")
        assert (clone / ".airflow" / "demo" / "reconcile" / "audit.db").exists()
        assert port_taken(ports["AIRFLOW_PORT"])
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the user's terminal reaches the whole group
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    deadline = time.monotonic() + 30
    while port_taken(ports["AIRFLOW_PORT"]) and time.monotonic() < deadline:
        time.sleep(1)
    assert not port_taken(ports["AIRFLOW_PORT"]), "Airflow still serving after Ctrl-C"


def test_make_demo_once_as_written_exits_zero_after_the_summary(clone, shell):
    env, ports = shell
    once = "make demo DEMO_ONCE=1"
    assert f"`{once}` exits after the summary" in (REPO / "README.md").read_text()
    result = run(once, cwd=clone, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_summary(result.stdout, ports["AIRFLOW_PORT"], clone / ".airflow" / "demo" / "openlineage.jsonl")


def test_command_line_quick_start_as_written(tmp_path):
    """No Airflow service: the CLI from the wheel that the deploy commands installed (into Airflow 3.2's venv)."""
    venv = REPO / ".venv-airflow-3.2"
    assert (venv / "bin" / "reconcile").exists(), f"{venv} is missing: `make compat` builds it (make test runs it)"
    env = activated(venv, user_env())
    results = [run(c, cwd=tmp_path, env=env, timeout=300) for c in commands("quick-start")]
    assert [r.returncode for r in results] == [0, 0, 1, 1], [r.stderr[-2000:] for r in results]
    init, validate, plan, diff = (r.stdout for r in results)
    assert "specs/ticket_ownership.yaml" in init
    assert "ticket_ownership.yaml: ok (reconcile_ticket_ownership, policy version" in validate
    drift = ticket_ownership().expected_drift()
    assert (
        f"drift: {drift['changed']} changed, {drift['missing']} missing, {drift['unexpected']} unexpected, "
        f"{drift['unchanged']} unchanged" in plan
    )
    assert f"Plan: {drift['changed'] + drift['missing'] + drift['unexpected']} actions" in plan
    assert re.search(rf"^changed\s+{drift['changed']}$", diff, flags=re.MULTILINE)
    assert re.search(rf"^missing\s+{drift['missing']}\s", diff, flags=re.MULTILINE)


def test_derived_side_quick_start_as_written(tmp_path):
    """The second example from the deployed wheel (Airflow 3.2's venv): DuckDB came with the package."""
    from airflow_reconcile.core.examples.stale_incident_groups import stale_incident_groups

    env = activated(REPO / ".venv-airflow-3.2", user_env())
    results = [run(c, cwd=tmp_path, env=env, timeout=300) for c in commands("derive-quick-start")]
    assert [r.returncode for r in results] == [0, 0, 1], [r.stderr[-2000:] for r in results]
    _, validate, plan = (r.stdout for r in results)
    assert "stale_incident_groups.yaml: ok (reconcile_stale_incident_groups" in validate
    expected = stale_incident_groups().expected()
    assert "desired: derive(incidents, roster)" in plan
    assert (f"drift: {expected['changed']} changed, {expected['missing']} missing, {expected['unexpected']} "
            "unexpected" in plan)  # fmt: skip
    assert f"auto {expected['auto']}" in plan


def test_make_compose_env_as_written_makes_every_secret_compose_reads_once(clone, shell):
    env, _ = shell
    first = run(commands("compose-env")[0], cwd=clone, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    written = (clone / ".env").read_text()
    assert (clone / ".env").stat().st_mode & 0o777 == 0o600
    for name in ("FERNET_KEY", "POSTGRES_PASSWORD", "AUDIT_TASKS_PASSWORD", "RECONCILE_AUDIT_KEY", "REDIS_PASSWORD"):
        assert f"\n{name}=" in written
    again = run(commands("compose-env")[0], cwd=clone, env=env, timeout=120)
    assert again.returncode == 0
    assert "nothing changed" in again.stdout
    assert (clone / ".env").read_text() == written
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True)
    assert ".env" not in status.stdout  # git ignores it: the secrets are never committed
