"""Every shipped DAG imports cleanly and has the shape the design promises."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest

from airflow_reconcile.core.vocabulary import DagId, TaskId
from tests.conftest import REPO

# What 0.1's DAG files give: the ticket-ownership DAGs and the shared ones (0.1 had no other example).
OWNERSHIP_DAGS = {"reconcile_ticket_ownership", "reconcile_ticket_ownership_replay", "reconcile_ticket_ownership_revert",
                  DagId.DIGEST, DagId.WATCHDOG}  # fmt: skip


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {
        "reconcile_ticket_ownership", "reconcile_ticket_ownership_replay", "reconcile_ticket_ownership_revert",
        "reconcile_stale_incident_groups", "reconcile_stale_incident_groups_replay",
        "reconcile_stale_incident_groups_revert", DagId.DIGEST, DagId.WATCHDOG,
    }  # fmt: skip


def test_watchdog_runs_every_half_hour_over_the_specs_folder(dagbag):
    watchdog = dagbag.dags[DagId.WATCHDOG]
    assert watchdog.timetable.delta == timedelta(minutes=30)
    assert watchdog.get_task(TaskId.WATCH).specs_dir == str(REPO / "dags" / "specs")


def test_recovery_dags_take_their_input_from_the_trigger_form(dagbag):
    replay = dagbag.dags["reconcile_ticket_ownership_replay"]
    assert replay.timetable.__class__.__name__ == "NullTimetable"  # manual only
    assert replay.params["operation_ids"] == []
    assert [t.task_id for t in replay.tasks] == [TaskId.REPLAY]
    revert = dagbag.dags["reconcile_ticket_ownership_revert"]
    assert revert.params.get_param("run_id").schema["minLength"] == 1
    assert revert.get_task(TaskId.REVERT).revert_run_id == "{{ params.run_id }}"


def test_reconciliation_dag_shape(dagbag):
    dag = dagbag.dags["reconcile_ticket_ownership"]
    assert dag.params["mode"] == "shadow"
    assert {t.task_id for t in dag.tasks} == {
        TaskId.CHECK_FRESHNESS, TaskId.READ_DESIRED, TaskId.READ_ACTUAL, TaskId.VALIDATE_DESIRED, TaskId.VALIDATE_ACTUAL,
        TaskId.DETECT_DRIFT, TaskId.EVALUATE_RULES, TaskId.APPLY_CORRECTIONS, TaskId.REQUEST_APPROVAL, TaskId.APPLY_APPROVED,
    }  # fmt: skip
    assert dag.get_task(TaskId.READ_DESIRED).upstream_task_ids == {TaskId.CHECK_FRESHNESS}
    assert dag.get_task(TaskId.DETECT_DRIFT).upstream_task_ids == {TaskId.VALIDATE_DESIRED, TaskId.VALIDATE_ACTUAL}
    assert dag.get_task(TaskId.APPLY_CORRECTIONS).upstream_task_ids == {TaskId.EVALUATE_RULES}
    # Approvals beside apply_corrections (a dead letter there does not hold them back).
    assert dag.get_task(TaskId.REQUEST_APPROVAL).upstream_task_ids == {TaskId.EVALUATE_RULES}
    assert dag.get_task(TaskId.APPLY_APPROVED).upstream_task_ids == {TaskId.REQUEST_APPROVAL}
    assert dag.get_task(TaskId.REQUEST_APPROVAL).retries == 0  # a retry would ask the same question again
    assert dag.params["approval_timeout"] == "24h"
    assert dag.get_task(TaskId.REQUEST_APPROVAL).approval_timeout == "{{ params.approval_timeout }}"
    assert [a.name for a in dag.get_task(TaskId.DETECT_DRIFT).outlets] == ["reconcile.ticket_ownership.drift_report"]
    assert [a.name for a in dag.get_task(TaskId.READ_ACTUAL).outlets] == ["reconcile.ticket_ownership.snapshot_actual"]
    assert dag.max_active_runs == 1


def test_a_derived_side_gets_a_read_and_gate_per_input_and_a_derive_task(dagbag):
    """docs/adr/0003: read_<input> -> validate_<input> for each input, derive_desired after its inputs' gates,
    then its own gate; the drift task waits for the gates of both sides and reads the producers' snapshots."""
    dag = dagbag.dags["reconcile_stale_incident_groups"]
    inputs = ("incidents", "roster", "tickets")
    assert {t.task_id for t in dag.tasks} == {
        TaskId.CHECK_FRESHNESS, *map(TaskId.read, inputs), *map(TaskId.validate, inputs), TaskId.derive("desired"),
        TaskId.validate("desired"), TaskId.DETECT_DRIFT, TaskId.EVALUATE_RULES, TaskId.APPLY_CORRECTIONS,
    }  # fmt: skip
    for name in inputs:
        assert dag.get_task(TaskId.read(name)).upstream_task_ids == {TaskId.CHECK_FRESHNESS}
        assert dag.get_task(TaskId.validate(name)).upstream_task_ids == {TaskId.read(name)}
    derive = dag.get_task(TaskId.derive("desired"))
    assert derive.upstream_task_ids == {TaskId.validate("incidents"), TaskId.validate("roster")}
    assert derive.input_task_ids == {"incidents": TaskId.read("incidents"), "roster": TaskId.read("roster")}
    assert [a.name for a in derive.inlets] == ["reconcile.stale_incident_groups.snapshot_incidents",
                                               "reconcile.stale_incident_groups.snapshot_roster"]  # fmt: skip
    assert [a.name for a in derive.outlets] == ["reconcile.stale_incident_groups.snapshot_desired"]
    assert dag.get_task(TaskId.validate("desired")).upstream_task_ids == {TaskId.derive("desired")}
    drift = dag.get_task(TaskId.DETECT_DRIFT)
    assert drift.upstream_task_ids == {TaskId.validate("desired"), TaskId.validate("tickets")}
    assert (drift.desired_task_id, drift.actual_task_id) == (TaskId.derive("desired"), TaskId.read("tickets"))


def test_a_spec_without_approve_rules_has_no_approval_tasks(tmp_path):
    from airflow_reconcile.provider.dag_factory import build_reconciliation_dag

    text = (
        (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text().replace("autonomy: approve", "autonomy: review")
    )
    (tmp_path / "spec.yaml").write_text(text)
    dag = build_reconciliation_dag(tmp_path / "spec.yaml")
    assert not {TaskId.REQUEST_APPROVAL, TaskId.APPLY_APPROVED} & set(dag.task_ids)
    assert "approval_timeout" not in dag.params


def test_dead_letters_fail_the_apply_task_unless_the_spec_says_otherwise(tmp_path):
    from airflow_reconcile.provider.dag_factory import build_reconciliation_dag

    text = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    (tmp_path / "spec.yaml").write_text(text.replace("limits:\n", "limits:\n  fail_on_dead_letter: false\n"))
    relaxed = build_reconciliation_dag(tmp_path / "spec.yaml")
    assert relaxed.get_task(TaskId.APPLY_CORRECTIONS).fail_on_dead_letter is False
    assert relaxed.get_task(TaskId.APPLY_APPROVED).fail_on_dead_letter is False
    (tmp_path / "spec.yaml").write_text(text)
    assert build_reconciliation_dag(tmp_path / "spec.yaml").get_task(TaskId.APPLY_CORRECTIONS).fail_on_dead_letter


def test_the_tasks_that_write_take_a_slot_of_the_spec_pool_and_no_other_task_does(tmp_path):
    from airflow_reconcile.provider.dag_factory import build_reconciliation_dag, build_recovery_dags

    text = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    (tmp_path / "spec.yaml").write_text(text.replace("limits:\n", "limits:\n  pool: reconcile_jira\n"))
    dag = build_reconciliation_dag(tmp_path / "spec.yaml")
    replay, revert = build_recovery_dags(tmp_path / "spec.yaml")
    pools = {t.task_id: t.pool for d in (dag, replay, revert) for t in d.tasks}
    writers = {TaskId.APPLY_CORRECTIONS, TaskId.APPLY_APPROVED, TaskId.REPLAY, TaskId.REVERT}
    assert {t for t, pool in pools.items() if pool == "reconcile_jira"} == writers
    assert {pool for t, pool in pools.items() if t not in writers} == {"default_pool"}
    (tmp_path / "spec.yaml").write_text(text)
    assert {t.pool for t in build_reconciliation_dag(tmp_path / "spec.yaml").tasks} == {"default_pool"}


def test_a_pool_name_airflow_would_refuse_is_a_spec_error_naming_the_field(tmp_path):
    from airflow_reconcile.core.errors import SpecError
    from airflow_reconcile.core.spec import load_spec

    text = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    (tmp_path / "spec.yaml").write_text(text.replace("limits:\n", "limits:\n  pool: jira writes!\n"))
    with pytest.raises(SpecError, match=r"limits\.pool"):
        load_spec(tmp_path / "spec.yaml")


def test_a_run_that_hangs_misses_its_deadline_and_slack_hears_of_it(dagbag, slack_standin, monkeypatch):
    import asyncio
    import json

    from airflow.triggers.callback import CallbackTrigger

    [alert] = dagbag.dags["reconcile_ticket_ownership"].deadline
    assert alert.reference.reference_name == "DagRunQueuedAtDeadline"
    assert alert.interval == timedelta(hours=2 + 24)  # watchdog.max_run_duration + approval.timeout
    assert alert.callback.path == "airflow_reconcile.provider.deadline.notify_slack"  # SlackNotifier, imported late
    assert alert.callback.kwargs["channel"] == "#ops-reconcile"

    # What the triggerer does when the deadline passes: Airflow's CallbackTrigger with the context the
    # scheduler attaches (the DAG run as the REST API shows it, and the deadline).
    monkeypatch.setenv("AIRFLOW_CONN_RECONCILE_SLACK", json.dumps(
        {"conn_type": "slack", "password": slack_standin.token, "extra": {"base_url": f"{slack_standin.base_url}/api/"}}
    ))  # fmt: skip
    context = {"dag_run": {"dag_id": "reconcile_ticket_ownership", "dag_run_id": "manual__2026-11-26T01:00:00"},
               "deadline": {"id": "d1", "deadline_time": "2026-11-27T03:00:00+00:00"}}  # fmt: skip
    trigger = CallbackTrigger(alert.callback.path, {**alert.callback.kwargs, "context": context})

    async def events():
        return [e.payload async for e in trigger.run()]

    assert [e["state"] for e in asyncio.run(events())] == ["running", "success"]
    [message] = slack_standin.messages
    assert message["channel"] == "#ops-reconcile"
    assert "run `manual__2026-11-26T01:00:00` of `reconcile_ticket_ownership` is still not finished" in message["text"]
    assert "2h + 24h for approval" in message["text"]
    assert "2026-11-27T03:00:00+00:00" in message["text"]


def test_a_spec_can_go_without_a_run_deadline(tmp_path):
    from airflow_reconcile.provider.dag_factory import build_reconciliation_dag

    text = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    (tmp_path / "spec.yaml").write_text(text + "\nwatchdog:\n  max_run_duration: null\n")
    assert not build_reconciliation_dag(tmp_path / "spec.yaml").deadline
    (tmp_path / "spec.yaml").write_text(
        text.replace("autonomy: approve", "autonomy: review") + "\nwatchdog:\n  max_run_duration: 90m\n"
    )
    [alert] = build_reconciliation_dag(tmp_path / "spec.yaml").deadline
    assert alert.interval == timedelta(minutes=90)  # no approval wait to add


def test_digest_dag_is_scheduled_on_the_plan(dagbag):
    """The plan is written after the drift report: the digest knows both the drift and what no rule handles."""
    condition = dagbag.dags[DagId.DIGEST].timetable.asset_condition
    assert sorted(asset.name for asset in condition.objects) == [
        "reconcile.stale_incident_groups.plan", "reconcile.ticket_ownership.plan"]  # fmt: skip
    dag = dagbag.dags["reconcile_ticket_ownership"]
    assert [a.name for a in dag.get_task(TaskId.EVALUATE_RULES).outlets] == ["reconcile.ticket_ownership.plan"]


def test_invalid_spec_breaks_only_its_own_dag(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    specs = tmp_path / "specs"
    specs.mkdir()
    good = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    (specs / "ticket_ownership.yaml").write_text(good)
    (specs / "broken.yaml").write_text(
        good.replace("name: ticket_ownership", "name: broken").replace("autonomy: auto", "autonomy: yolo")
    )
    for name in ("ticket_ownership", "broken"):
        (tmp_path / f"reconcile_{name}.py").write_text(
            "from pathlib import Path\nfrom airflow_reconcile.provider.dag_factory import build_reconciliation_dag\n"
            f"dag = build_reconciliation_dag(Path(__file__).parent / 'specs' / '{name}.yaml')\n"
        )
    (tmp_path / "reconcile_drift_digest.py").write_text((REPO / "dags" / "reconcile_drift_digest.py").read_text())
    bag = DagBag(dag_folder=str(tmp_path))
    assert set(bag.dag_ids) == {"reconcile_ticket_ownership", DagId.DIGEST}
    [(path, error)] = bag.import_errors.items()
    assert path.endswith("reconcile_broken.py")
    assert "broken.yaml:" in error
    assert "autonomy: 'yolo' is not one of observe, recommend, auto, approve, review" in error
    # A column typo is the DAG's import error too, naming the line: the DAG never runs a rule that cannot match.
    (specs / "broken.yaml").write_text(
        good.replace("name: ticket_ownership", "name: broken").replace(
            "{field: actual.assignee,", "{field: actual.asignee,"
        )
    )
    bag = DagBag(dag_folder=str(tmp_path))
    [(path, error)] = bag.import_errors.items()
    line = good[: good.index("{field: actual.assignee,")].count("\n") + 1
    assert f"broken.yaml:{line}: rules[0].match.when[0].field: condition names column 'asignee'" in error
    assert "(did you mean 'assignee'?)" in error


def test_cron_is_read_in_the_spec_time_zone(tmp_path):
    from airflow_reconcile.provider.dag_factory import build_reconciliation_dag

    text = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    spec = tmp_path / "s.yaml"
    spec.write_text(text.replace("schedule:\n", "schedule:\n  cron: '0 7 * * 1-5'\n  timezone: Europe/Berlin\n", 1))
    dag = build_reconciliation_dag(spec)
    assert "timezone='Europe/Berlin'" in repr(dag.timetable.timetable)


def test_retry_policy_retries_transient_and_fails_bad_input(dagbag):
    import requests
    from airflow.sdk import RetryAction

    from airflow_reconcile.core.errors import GuardTripped, SourceError, SpecError, TransientError, retry_decision

    dag = dagbag.dags["reconcile_ticket_ownership"]
    for task in dag.tasks:
        assert task.retry_policy is not None, task.task_id
    policy = dag.get_task(TaskId.READ_ACTUAL).retry_policy

    def action(exc):
        return policy.evaluate(exc, try_number=1, max_tries=3).action

    cases = {
        TransientError("Jira answered 503"): RetryAction.RETRY,
        ConnectionError("refused"): RetryAction.RETRY,
        requests.exceptions.ReadTimeout("read timed out"): RetryAction.RETRY,
        SourceError("Jira answered 400: bad JQL"): RetryAction.FAIL,
        SpecError("x.yaml:3: ..."): RetryAction.FAIL,
        GuardTripped("too many"): RetryAction.FAIL,
        RuntimeError("unknown"): RetryAction.DEFAULT,
    }
    for exc, expected in cases.items():
        assert action(exc) == expected, exc
        # Before 3.3 the task decides from the same lists (airflow_reconcile.provider.compat.final_failure).
        assert retry_decision(exc) == expected.value, exc


@pytest.mark.parametrize(
    ("schedule", "timetable", "summary"),
    [
        ("schedule:\n  every: 6h\n", "DeltaTriggerTimetable", "6:00:00"),
        ("schedule:\n  cron: '*/15 * * * *'\n", "CronTriggerTimetable", "*/15 * * * *"),
        ("schedule:\n  cron: '0 6 * * *'\n  assets:\n    - name: service_catalog\n", "AssetOrTimeSchedule", None),
        ("schedule:\n  assets:\n    - name: service_catalog\n", "AssetTriggeredTimetable", None),
    ],
)
def test_schedule_forms(tmp_path, schedule, timetable, summary):
    from airflow_reconcile.provider.dag_factory import build_reconciliation_dag

    text = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    start = text.index("schedule:")
    end = text.index("sources:")
    spec = tmp_path / "s.yaml"
    spec.write_text(text[:start] + schedule + "\n" + text[end:])
    dag = build_reconciliation_dag(spec)
    assert type(dag.timetable).__name__ == timetable
    if summary:
        assert str(getattr(dag.timetable, "delta", None) or dag.timetable.expression) == summary


def test_cron_and_every_together_are_rejected():
    from airflow_reconcile.core.errors import SpecError
    from airflow_reconcile.core.spec import parse_spec

    text = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    text = text.replace("schedule:\n", "schedule:\n  cron: '@daily'\n  every: 1d\n", 1)
    with pytest.raises(SpecError, match=r"schedule: give cron or every, not both"):
        parse_spec(text, "s.yaml")


def test_dag_files_an_earlier_release_wrote_still_load_and_say_how_to_update(tmp_path):
    """DAG files `reconcile init` wrote before the layers (0.1, kept in tests/data/dags-0.1) import
    airflow_reconcile.dag_factory: they still give the same DAGs, with a DeprecationWarning."""
    import shutil
    import warnings

    from airflow.dag_processing.dagbag import DagBag

    old = REPO / "tests" / "data" / "dags-0.1"
    assert "from airflow_reconcile.dag_factory import" in (old / "reconcile_ticket_ownership.py").read_text()
    shutil.copytree(old, tmp_path, dirs_exist_ok=True)
    shutil.copytree(REPO / "dags" / "specs", tmp_path / "specs")
    sys.modules.pop("airflow_reconcile.dag_factory", None)  # the warning is given when the old path is imported
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == OWNERSHIP_DAGS
    shown = [w for ws in bag.captured_warnings.values() for w in ws]  # what the DAG processor reports per file
    assert any("reconcile init --force" in w for w in shown), bag.captured_warnings


def test_reconcile_init_force_rewrites_old_dag_files_with_the_new_imports(tmp_path, monkeypatch):
    """The README's upgrade note, as written: `reconcile init --force` (into Airflow's [core] dags_folder)
    over the DAG files 0.1 wrote there."""
    import shutil

    from airflow.dag_processing.dagbag import DagBag

    from airflow_reconcile import cli

    shutil.copytree(REPO / "tests" / "data" / "dags-0.1", tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path))
    assert cli.main(["init"]) != 0  # without --force nothing is overwritten
    assert "airflow_reconcile.dag_factory" in (tmp_path / "reconcile_ticket_ownership.py").read_text()
    assert cli.main(["init", "--force"]) == 0
    for name in ("reconcile_ticket_ownership.py", "reconcile_drift_digest.py", "reconcile_watchdog.py"):
        assert "airflow_reconcile.dag_factory" not in (tmp_path / name).read_text(), name
    sys.modules.pop("airflow_reconcile.dag_factory", None)
    bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    assert "airflow_reconcile.dag_factory" not in sys.modules
    assert set(bag.dag_ids) == OWNERSHIP_DAGS


def test_the_trigger_forms_approval_timeout_refuses_an_overflowing_number():
    import re

    from airflow_reconcile.core.spec import load_spec
    from airflow_reconcile.provider.dag_factory import _params

    pattern = _params(load_spec(REPO / "dags" / "specs" / "ticket_ownership.yaml"))["approval_timeout"].schema[
        "pattern"
    ]
    assert re.match(pattern, "24h")
    assert not re.match(pattern, "99999999999999999999d")


def test_the_trigger_forms_approval_timeout_takes_what_the_spec_takes():
    """One duration grammar: every approval timeout the spec accepts, the form accepts, and the other way round
    (beyond the year the task refuses, saying so)."""
    import re

    from airflow_reconcile.core.spec import approval_timeout, load_spec
    from airflow_reconcile.provider.dag_factory import _params
    from tests.conftest import SPEC as SHIPPED

    pattern = _params(load_spec(SHIPPED))["approval_timeout"].schema["pattern"]
    for text in ("30m", "1.5h", "4 h", " 2d ", "90s", "1w", "10", "h", "-1h", "367d", "0.5d"):
        try:
            approval_timeout(text)
            spec_takes = True
        except ValueError as exc:
            spec_takes = "longer than a year" in str(exc) or "too short" in str(exc)  # a range, not the grammar
        assert bool(re.match(pattern, text)) == spec_takes, text
