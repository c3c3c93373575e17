"""What every task of ours shares (provider.audited): the run's mode, read once, the same way."""

from __future__ import annotations

import pytest

from airflow_reconcile.core.spec import load_spec
from airflow_reconcile.core.vocabulary import Mode, TaskId
from airflow_reconcile.provider.audited import AuditDraft, run_mode
from airflow_reconcile.provider.compat import AirflowFailException
from airflow_reconcile.provider.operators.apply import ApplyCorrectionsOperator
from tests.conftest import SPEC


def test_the_mode_is_one_of_the_vocabulary_or_the_task_fails_saying_what_to_give():
    assert run_mode("apply") is Mode.APPLY
    assert run_mode(Mode.SHADOW) is Mode.SHADOW
    with pytest.raises(AirflowFailException, match="mode must be 'shadow' or 'apply', got 'Apply'"):
        run_mode("Apply")


def test_an_apply_task_with_a_bad_mode_fails_before_reading_anything():
    task = ApplyCorrectionsOperator(
        task_id=TaskId.APPLY_CORRECTIONS, spec_path=str(SPEC), mode="dry-run", plan_task_id=TaskId.EVALUATE_RULES
    )
    with pytest.raises(AirflowFailException, match="got 'dry-run'"):
        task.run({}, load_spec(SPEC), AuditDraft())  # an empty context: nothing is pulled before the check
