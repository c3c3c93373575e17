"""The words the package uses for the same things everywhere: operation statuses and the ledger's
transitions between them, autonomy levels, approval decisions, drift kinds, modes, task ids.

One fact, one place: the ledger, the apply loop, replay and revert, the approval flow, the DAG
factory, the watchdog, the audit store, the plugin and the tests read them from here. They are
``StrEnum``s, so each member *is* its text (``Status.APPLIED == "applied"``, in JSON, SQL and Parquet);
task ids are plain text constants.
"""

from __future__ import annotations

from collections.abc import Mapping
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
# Approved by a person, not applied (completely) yet.
APPROVED = (Status.APPROVED, Status.IN_FLIGHT)
# Waiting for a person.
REVIEW_QUEUE = (Status.IN_REVIEW, Status.AWAITING_APPROVAL)
# The target has the desired state (this run's write, or it was there already).
DONE = (Status.APPLIED, Status.SKIPPED)


class Autonomy(StrEnum):
    """What a rule may do with the drift it matches (``rules[].autonomy``)."""

    OBSERVE = "observe"  # record it
    RECOMMEND = "recommend"  # propose the action, write nothing
    AUTO = "auto"  # apply it (in apply mode)
    APPROVE = "approve"  # ask a person first (Required Actions)
    REVIEW = "review"  # put it in the review queue


# Autonomy levels that write (the rest never reach a target).
ACTING = (Autonomy.AUTO, Autonomy.APPROVE)
# What each autonomy level means for a planned action that is not applied.
NOT_APPLIED: Mapping[str, Status] = {
    Autonomy.OBSERVE: Status.OBSERVED,
    Autonomy.RECOMMEND: Status.RECOMMENDED,
    Autonomy.APPROVE: Status.AWAITING_APPROVAL,
    Autonomy.REVIEW: Status.IN_REVIEW,
}


class Decision(StrEnum):
    """A person's answer to an approval request (the options the Required Action offers), or none in time."""

    APPROVE = "Approve"
    REJECT = "Reject"
    TIMEOUT = "timeout"


# The ledger status each answer leads to.
DECISIONS = {Decision.APPROVE: Status.APPROVED, Decision.REJECT: Status.REJECTED, Decision.TIMEOUT: Status.IN_REVIEW}


class DriftKind(StrEnum):
    """How a keyed row differs between the source of record and the target."""

    MISSING = "missing"  # in the source of record, not in the target
    UNEXPECTED = "unexpected"  # in the target, not in the source of record
    CHANGED = "changed"  # in both, with different values in compared columns
    DUPLICATE_KEY = "duplicate_key"  # a key that appears more than once on a side
    NULL_KEY = "null_key"  # a row without a key


# Drift a rule can act on (the key problems are reported apart from it).
DRIFT = (DriftKind.MISSING, DriftKind.UNEXPECTED, DriftKind.CHANGED)

# The ledger's state machine: for each status, the statuses an operation may come from. The ledger
# makes every write conditional on it (an UPDATE ... WHERE status IN (...)), so a transition it does
# not list never happens, whatever writes concurrently.
#   a decided write (auto, approved, a replay) -> in_flight -> applied | skipped | dead_lettered
#   not decided -> awaiting_approval | in_review | recommended | observed
#   awaiting_approval -> approved | rejected | in_review (no answer in time);  applied | skipped | dead_lettered -> reverted
UNDECIDED = frozenset(
    {Status.PLANNED, Status.DEAD_LETTERED, Status.AWAITING_APPROVAL, Status.IN_REVIEW, Status.RECOMMENDED,
     Status.OBSERVED}
)  # fmt: skip
STORED = frozenset(Status) - {Status.SHADOW, Status.NEEDS_APPROVAL}
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.PLANNED: frozenset(),
    # The ledger's own check (Ledger.begin) keeps once-only actions from being sent twice.
    Status.IN_FLIGHT: STORED,
    Status.APPLIED: frozenset({Status.IN_FLIGHT}),
    Status.SKIPPED: frozenset({Status.IN_FLIGHT}),
    Status.DEAD_LETTERED: frozenset({Status.IN_FLIGHT}),
    Status.AWAITING_APPROVAL: UNDECIDED,
    Status.IN_REVIEW: UNDECIDED,
    Status.RECOMMENDED: UNDECIDED,
    Status.OBSERVED: UNDECIDED,
    Status.APPROVED: frozenset({Status.AWAITING_APPROVAL}),
    Status.REJECTED: frozenset({Status.AWAITING_APPROVAL}),
    # A revert undoes what its run applied, also when a later run found it in place (skipped) or a later
    # try failed (dead_lettered: the applying run's write still stands).
    Status.REVERTED: frozenset({Status.APPLIED, Status.SKIPPED, Status.DEAD_LETTERED}),
}
# The statuses a new ledger row may start in.
INITIAL = frozenset({Status.PLANNED, Status.IN_FLIGHT, *NOT_APPLIED.values()})


def may_move(before: str, after: str) -> bool:
    """Whether the ledger may move an operation from ``before`` to ``after``."""
    return before in TRANSITIONS.get(Status(after), frozenset())


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
    def read(input_name: str) -> str:
        """The read task of an input (``read_desired`` / ``read_actual`` for a side given inline)."""
        return f"read_{input_name}"

    @staticmethod
    def validate(name: str) -> str:
        """The quality gate of an input, or of a derived side."""
        return f"validate_{name}"

    @staticmethod
    def derive(side: str) -> str:
        """The task that computes a derived side from its inputs (``derive_desired``)."""
        return f"derive_{side}"


class DagId:
    """The DAG ids the package builds: one reconciliation per spec with its replay and revert DAGs, and
    the shared digest and watchdog DAGs (the plugin, the watchdog's messages and the tests use these)."""

    DIGEST: Final = "reconcile_drift_digest"
    WATCHDOG: Final = "reconcile_watchdog"
    RECOVERY_SUFFIXES: Final = ("_replay", "_revert")

    @staticmethod
    def of(spec_name: str) -> str:
        return f"reconcile_{spec_name}"

    @staticmethod
    def replay(dag_id: str) -> str:
        return f"{dag_id}_replay"

    @staticmethod
    def revert(dag_id: str) -> str:
        return f"{dag_id}_revert"

    @staticmethod
    def is_recovery(dag_id: str) -> bool:
        return dag_id.endswith(DagId.RECOVERY_SUFFIXES)
