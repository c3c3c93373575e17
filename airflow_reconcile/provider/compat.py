"""What differs between the Airflow versions this package supports: 3.1, 3.2 and 3.3 (Airflow layer).

Every version check of the package lives here; the rest imports these names and behaves the same
on every supported version. Where a feature is newer than the running Airflow, the same behaviour
is had by other means; a feature that cannot be had is left out with one log line, never an
import error:

- **Retry policy** (``ExceptionRetryPolicy``, 3.3): on 3.1 and 3.2 the same classes decide inside
  the task — a failure that retrying cannot fix is re-raised as ``AirflowFailException`` (no
  retry); a transient one uses the task's retries (see ``errors.retry_decision``).
- **Task exceptions** moved from ``airflow.exceptions`` (3.1) to ``airflow.sdk.exceptions`` (3.2).
- **Timetables** (``CronTriggerTimetable``, ``DeltaTriggerTimetable``, ``AssetOrTimeSchedule``) are in
  ``airflow.sdk`` from 3.2, in ``airflow.timetables`` on 3.1.
- **Deadline alerts**: ``airflow.sdk.DeadlineAlert`` from 3.2; 3.1 has them (experimental) without
  a name.
- **Metrics**: ``airflow.sdk.observability.stats`` from 3.2, ``airflow.stats.Stats`` on 3.1.
- **Human in the loop**: 3.3 parks the task (``awaiting_input``, ``TaskAwaitingInput``); 3.1 and 3.2
  defer it to a trigger.
- **``dag.test()``** (``airflow dags test``) needs two fixes, in ``ReconcileDAG.test``; see there.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import airflow
from airflow.sdk import DAG

from airflow_reconcile.core.errors import FINAL_FAILURES, TRANSIENT_FAILURES, retry_decision

log = logging.getLogger(__name__)


AIRFLOW_VERSION = tuple(int(p) for p in re.findall(r"\d+", airflow.__version__)[:3])
"""The running Airflow's version as numbers, e.g. ``(3, 2, 2)`` (for messages; features are detected)."""

try:  # Airflow >= 3.2
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSkipException,
        DownstreamTasksSkipped,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSkipException,
        DownstreamTasksSkipped,
        TaskDeferred,
    )

try:  # Airflow >= 3.3: a human-in-the-loop task parks in awaiting_input
    from airflow.sdk.exceptions import TaskAwaitingInput

    HITL_PARKS = True
except ImportError:  # Airflow < 3.3 defers human-in-the-loop tasks to a trigger instead
    TaskAwaitingInput = TaskDeferred  # type: ignore[misc,assignment]
    HITL_PARKS = False

try:  # Airflow >= 3.2
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, DeltaTriggerTimetable
except ImportError:  # Airflow 3.1
    from airflow.timetables.assets import AssetOrTimeSchedule  # type: ignore[assignment]
    from airflow.timetables.trigger import CronTriggerTimetable, DeltaTriggerTimetable  # type: ignore[assignment]

__all__ = [
    "AIRFLOW_VERSION",
    "AirflowFailException",
    "AirflowRescheduleException",
    "AirflowSkipException",
    "AssetOrTimeSchedule",
    "CronTriggerTimetable",
    "DeltaTriggerTimetable",
    "DownstreamTasksSkipped",
    "ReconcileDAG",
    "TaskAwaitingInput",
    "TaskDeferred",
]


# -- retries ---------------------------------------------------------------------------------------
def retry_policy_args() -> dict[str, Any]:
    """Operator arguments for Airflow's retry policy (3.3); nothing before, see ``final_failure``."""
    try:
        from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule
    except ImportError:
        return {}
    return {
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception=list(TRANSIENT_FAILURES),
                    action=RetryAction.RETRY,
                    reason="transient failure: the source, target or audit store may recover",
                ),
                RetryRule(
                    exception=list(FINAL_FAILURES),
                    action=RetryAction.FAIL,
                    reason="bad spec, bad data or a policy stop: retrying the same input cannot help",
                ),
            ]
        )
    }


RETRY_POLICY_IN_AIRFLOW = bool(retry_policy_args())


def final_failure(exc: BaseException) -> BaseException | None:
    """Before 3.3, the exception that fails the task at once (no retry) in place of ``exc``, or None.

    On 3.3 Airflow's retry policy makes the same decision from the same classes, so this is None.
    """
    if RETRY_POLICY_IN_AIRFLOW or isinstance(exc, AirflowFailException):
        return None
    if retry_decision(exc) == "fail":
        return AirflowFailException(f"{type(exc).__name__}: {exc} (not retried: the same input fails again)")
    return None


# -- deadline alerts -------------------------------------------------------------------------------
def deadline_alert(interval: timedelta, callback: Callable[..., Any], kwargs: dict[str, Any], name: str) -> Any:
    """A deadline alert ``interval`` after the run was queued, its callback run by the triggerer.

    ``name`` (shown in the UI) needs 3.3; 3.1 keeps deadline alerts in ``airflow.sdk.definitions``.
    """
    import inspect

    try:
        from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference  # type: ignore[attr-defined]
    except ImportError:  # Airflow 3.1
        from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

    named = {"name": name} if "name" in inspect.signature(DeadlineAlert).parameters else {}
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=interval,
        callback=AsyncCallback(callback, kwargs=kwargs),
        **named,
    )


# -- metrics ---------------------------------------------------------------------------------------
def stats() -> Any:
    """Airflow's metrics client (StatsD or OpenTelemetry, as ``[metrics]`` configures it): something
    with ``incr``, ``gauge`` and ``timing``."""
    try:
        from airflow.sdk.observability import stats as sdk_stats
    except ImportError:  # Airflow 3.1
        from airflow.stats import Stats

        return Stats
    return sdk_stats if hasattr(sdk_stats, "incr") else sdk_stats.Stats  # module functions from 3.3


def metric_name(name: str) -> str:
    """A metric name Airflow's backends accept (Airflow's own normaliser where it has one)."""
    try:
        from airflow.sdk.observability.stats import normalize_name_for_stats
    except ImportError:  # Airflow 3.1: the same rule (allowed characters, 250 at most)
        return re.sub(r"[^a-zA-Z0-9_.-]", "_", name)[:250]
    return str(normalize_name_for_stats(name, log_warning=False))


# -- dag.test() ------------------------------------------------------------------------------------
class ReconcileDAG(DAG):
    """Airflow's DAG, with ``test()`` (``airflow dags test``) made to finish on every supported version.

    - ``dag.test()`` crashes at the end of a successful run for a DAG with a deadline alert
      (apache/airflow#73428: its in-memory serialization round trip leaves ``dag.deadline`` holding
      dicts, which ``DagRun.update_state`` looks up as ids). A test run is never queued, so its
      deadline is never armed anyway (Airflow logs that it skips it): the alert is left out of the
      test run only. Scheduled and triggered runs keep it (the scheduler never calls ``test()``).
    - On 3.3 a human-in-the-loop task parks in ``awaiting_input`` and only the scheduler times it
      out; ``dag.test()`` runs no scheduler, so an unanswered approval waited forever. While the
      test runs, the same timeout sweep runs beside it, so the run's ``approval_timeout`` holds.
    - On 3.1 and 3.2 a human-in-the-loop task defers to a trigger, which ``dag.test()`` runs inline,
      but its in-process test supervisor does not answer the trigger's request for the response (the
      log says "Unhandled request GetHITLDetailResponse" and the task fails). There the approval
      cannot wait: ``approvals_cannot_wait()`` is true while the test runs, and the request ends as
      on a timeout (its actions go to review).

    An answer given in Required Actions (an API server on the same metadata DB) is taken as usual.
    """

    def test(self, *args: Any, **kwargs: Any) -> Any:
        global _approvals_cannot_wait
        deadline = self.deadline
        if deadline:
            log.info(
                "airflow dags test: the run-duration deadline alert is left out of this test run "
                "(apache/airflow#73428); scheduled and triggered runs keep it"
            )
            self.deadline = None
        stop = threading.Event()
        sweeper = None
        if HITL_PARKS and any(_is_hitl(task) for task in self.tasks):
            sweeper = threading.Thread(target=_sweep_awaiting_input, args=(stop,), daemon=True)
            sweeper.start()
        _approvals_cannot_wait = not HITL_PARKS and not kwargs.get("use_executor")
        try:
            return super().test(*args, **kwargs)
        finally:
            _approvals_cannot_wait = False
            self.deadline = deadline
            stop.set()
            if sweeper is not None:
                sweeper.join(timeout=10)


_approvals_cannot_wait = False


def approvals_cannot_wait() -> bool:
    """True under ``dag.test()`` on Airflow 3.1 and 3.2, where an approval request cannot wait for an answer."""
    return _approvals_cannot_wait


def _is_hitl(task: Any) -> bool:
    from airflow.providers.standard.operators.hitl import HITLOperator

    return isinstance(task, HITLOperator)


def _sweep_awaiting_input(stop: threading.Event, every: float = 2.0) -> None:
    """Resolve approvals past their timeout, as Airflow 3.3's scheduler does, until ``stop`` is set."""
    from types import SimpleNamespace

    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    runner = SimpleNamespace(log=log)  # the sweep uses nothing of the runner but its logger
    while not stop.wait(every):
        try:
            SchedulerJobRunner.check_awaiting_input_timeouts(runner)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again; the test run goes on
            log.warning("approval timeout sweep failed (next try in %.0fs): %s", every, exc)


def hook_registered(conn_type: str) -> bool:
    """Whether an installed provider gives connections of ``conn_type`` a hook (``Connection.get_hook``)."""
    try:  # Airflow >= 3.3: the task runtime's registry
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:  # Airflow 3.1, 3.2
        from airflow.providers_manager import ProvidersManager as Manager  # type: ignore[assignment]
    return Manager().hooks.get(conn_type) is not None
