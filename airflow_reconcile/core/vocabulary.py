"""The words the package uses for the same things everywhere: operation statuses, modes, task ids.

One fact, one place: the ledger, the apply loop, replay and revert, the approval flow, the DAG
factory, the watchdog, the audit store, the plugin and the tests read them from here. They are
``StrEnum``s, so each member *is* its text (``Status.APPLIED == "applied"``, in JSON, SQL and Parquet);
task ids are plain text constants.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Status(StrEnum):
    """An operation's status in the ledger (and an outcome's in a run's result)."""

    PLANNED = "planned"
    IN_FLIGHT = "in_flight"
    APPLIED = "applied"
    SKIPPED = "skipped"  # the target was already in the desired state
    DEAD_LETTERED = "dead_lettered"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    IN_REVIEW = "in_review"
    RECOMMENDED = "recommended"
    OBSERVED = "observed"
    REVERTED = "reverted"
    # Outcomes only (never stored): shadow mode plans and writes nothing, and asks no one.
    SHADOW = "shadow"
    NEEDS_APPROVAL = "needs_approval"


# Done for good: a re-run or the next run never repeats these without asking the target first.
FINAL = (Status.APPLIED, Status.SKIPPED, Status.REVERTED, Status.REJECTED)
# A person's decision: a later plan of the same operation does not put it back to waiting.
DECIDED = (*FINAL, Status.APPROVED, Status.IN_FLIGHT)
# Approved by a person, not applied (completely) yet.
APPROVED = (Status.APPROVED, Status.IN_FLIGHT)
# Waiting for a person.
REVIEW_QUEUE = (Status.IN_REVIEW, Status.AWAITING_APPROVAL)
# The target has the desired state (this run's write, or it was there already).
DONE = (Status.APPLIED, Status.SKIPPED)

# What each autonomy level means for a planned action that is not applied.
NOT_APPLIED = {
    "observe": Status.OBSERVED,
    "recommend": Status.RECOMMENDED,
    "approve": Status.AWAITING_APPROVAL,
    "review": Status.IN_REVIEW,
}


SIDES = ("desired", "actual")  # the source of record and the target system, in that order everywhere


class Mode(StrEnum):
    SHADOW = "shadow"  # read, check, diff and plan; write nothing
    APPLY = "apply"


class TaskId:
    """The task ids of the DAGs the factory builds (the audit store, watchdog and plugin look tasks up
    by them). Plain text constants: Airflow keeps a task id as given."""

    CHECK_FRESHNESS: Final = "check_freshness"
    READ_DESIRED: Final = "read_desired"
    READ_ACTUAL: Final = "read_actual"
    VALIDATE_DESIRED: Final = "validate_desired"
    VALIDATE_ACTUAL: Final = "validate_actual"
    DETECT_DRIFT: Final = "detect_drift"
    EVALUATE_RULES: Final = "evaluate_rules"
    APPLY_CORRECTIONS: Final = "apply_corrections"
    REQUEST_APPROVAL: Final = "request_approval"
    APPLY_APPROVED: Final = "apply_approved"
    REPLAY: Final = "replay_operations"
    REVERT: Final = "revert_run"
    POST_DIGEST: Final = "post_digest"
    WATCH: Final = "watch"

    @staticmethod
    def read(side: str) -> str:
        return {"desired": TaskId.READ_DESIRED, "actual": TaskId.READ_ACTUAL}[side]

    @staticmethod
    def validate(side: str) -> str:
        return {"desired": TaskId.VALIDATE_DESIRED, "actual": TaskId.VALIDATE_ACTUAL}[side]
