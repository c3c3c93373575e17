"""The reconciliation spec: a typed, validated model of one YAML file (``model``), the static column
check (``columns``) and the loaders (``load``). Import from here.

Importing it is cheap (pydantic and PyYAML only): DAG files load specs at parse time.
"""

from __future__ import annotations

from airflow_reconcile.core.spec.load import (
    Spec,
    expand_env,
    load_spec,
    load_specs,
    parse_spec,
    spec_text,
    specs_in,
)
from airflow_reconcile.core.spec.model import (
    FILE_OPTIONS,
    Condition,
    DriftSpec,
    Expectation,
    QualitySpec,
    Rule,
    SourceSpec,
    SpecModel,
    approval_timeout,
)

__all__ = [
    "FILE_OPTIONS", "Condition", "DriftSpec", "Expectation", "QualitySpec", "Rule", "SourceSpec", "Spec",
    "SpecModel", "approval_timeout", "expand_env", "load_spec", "load_specs", "parse_spec", "spec_text", "specs_in",
]  # fmt: skip
