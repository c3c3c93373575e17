"""What each target system and each of its actions is: one record per action, read by everything.

A target (``jira``, ``slack``, or one a user registers) is a module with a ``TARGET`` record: its
actions and its executor. An action record says what the action needs and how it behaves: the
params a rule must give, whether it acts on an existing item (``needs_ref``), whether it must never
be sent twice (``once_only``), whether given params close the item (``closes``, which needs
``limits.allow_closures``), and how to undo it from the prior state the ledger recorded (``undo``),
or why it cannot be undone. The spec's validation, the ledger, replay and revert, and the executor
factory read these records; nothing else knows an action's facts.

Adding a target system: a module ``airflow_reconcile.core.actions.<name>`` (or your own) with an
executor (``ActionExecutor``) and ``TARGET = TargetRecord(...)``, and one registration: a line in
``_TARGETS`` here, or ``register_target(TARGET)`` for your own (it wins over a built-in of the same
name). The Airflow layer then needs a client for it from a connection
(``airflow_reconcile.provider.hooks.register_client``). Its settings in a spec (``targets.<name>``: the
connection, the column naming its item) are the record's ``settings`` model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.registry import Registry

NO_ACTION = "none"  # a rule that only classifies drift (it plans nothing for a target)

Undo = Callable[[Mapping[str, Any]], tuple[str, dict[str, Any]] | None]


@dataclass(frozen=True)
class ActionRecord:
    name: str
    params: tuple[str, ...] = ()  # the params a rule must give (a rule without them is a spec error)
    needs_ref: bool = True  # acts on an existing item: the drift row must name it (the target_ref)
    once_only: bool = False  # once the ledger says done, never sent again (a search may not show it yet)
    closes: Callable[[Mapping[str, Any]], str | None] | None = None  # the param whose value closes the item
    undo: Undo | None = None  # (undo action, its params) from the recorded prior state; None: cannot here
    not_undone: str = ""  # why it cannot be undone (when ``undo`` is None)
    in_rules: bool = True  # False: only replay and revert use it (an undo step, e.g. set_labels)
    # param -> the markup the target renders it in (core.markup.ESCAPERS): values a rule inserts into it
    # are escaped for that markup
    markup: Mapping[str, str] = field(default_factory=dict)
    # param -> the most characters the target's field takes (a longer rendered value goes to review)
    max_length: Mapping[str, int] = field(default_factory=dict)
    optional: tuple[str, ...] = ()  # params a rule may give besides the required ones
    param_prefixes: tuple[str, ...] = ()  # open families of params (``field.<name>``)

    def unknown_params(self, given: Iterable[str]) -> list[str]:
        """The params this action does not take (a typo beside the real one is a spec error, not ignored)."""
        known = (*self.params, *self.optional)
        return [p for p in given if p not in known and not p.startswith(self.param_prefixes or ("\0",))]

    @property
    def known_params(self) -> list[str]:
        return [*self.params, *self.optional, *(f"{prefix}<name>" for prefix in self.param_prefixes)]

    def closing(self, params: Mapping[str, Any]) -> str | None:
        """The name of the param whose value closes the item (None: these params do not close it)."""
        return self.closes(params) if self.closes else None


class TargetSettings(BaseModel):
    """A target's settings in a spec (``targets.<name>``): a target's record names its own subclass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection_id: str = Field(description="The Airflow connection the target's client is built from.")


@dataclass(frozen=True)
class TargetRecord:
    name: str
    actions: tuple[ActionRecord, ...]
    executor: str  # "module:Class" of the core executor; the Airflow layer gives it a client
    item: str = "item"  # what an action acts on, in messages ("issue")
    rate: float = 10.0  # default limits.rate_per_second (calls per second during apply)
    title: str = ""  # the system's name in messages ("Jira"); the record's name when empty
    # The setting of ``targets.<name>`` that names the actual side's column holding the item an action acts
    # on (its reference, e.g. Jira's issue key): every action with ``needs_ref`` reads it.
    ref_setting: str | None = None
    # Other settings of ``targets.<name>`` that name a column the target reads -> the side that must have it
    # ("actual", "desired" or "either"), e.g. Slack's team_column.
    column_settings: Mapping[str, str] = field(default_factory=dict)
    # What to do about an operation the target refused, by the HTTP status it answered (over HINTS).
    hints: Mapping[int, str] = field(default_factory=dict)
    # The model of ``targets.<name>`` in a spec (its connection and the settings below); None: it takes none.
    settings: type[TargetSettings] | None = None

    def action(self, name: str) -> ActionRecord | None:
        return next((a for a in self.actions if a.name == name), None)

    def rule_actions(self) -> list[str]:
        return [a.name for a in self.actions if a.in_rules]

    @property
    def label(self) -> str:
        return self.title or self.name

    def hint(self, http_status: int | None) -> str | None:
        """What an operator should do about an operation this target refused with ``http_status``."""
        if http_status is None:
            return None
        found = self.hints.get(http_status) or HINTS.get(http_status)
        return found.format(target=self.label, item=self.item) if found else None


# What to do about a refused operation, by the HTTP status the target answered ({target}, {item} filled in).
HINTS = {
    401: "the connection's credentials were refused: check the Airflow connection's login and token",
    403: "the connection's user may not do this: grant it the permission in {target}, then replay",
    404: "the {item} does not exist (deleted or moved?): check it in {target}, then replay or drop the operation",
    400: "{target} rejected the request (an unknown user or field value?): fix the data or the rule, then replay",
}


_TARGETS: Registry[TargetRecord] = Registry(
    "target",
    "targets",
    {"jira": "airflow_reconcile.core.actions.jira:TARGET", "slack": "airflow_reconcile.core.actions.slack:TARGET"},
    error=SpecError,
)


def register_target(record: TargetRecord) -> TargetRecord:
    """Register a target system; it wins over a built-in of the same name."""
    return _TARGETS.register(record.name, record)


def unregister_target(name: str) -> None:
    """Remove a registered target (a built-in of that name comes back)."""
    _TARGETS.unregister(name)


def target_names() -> list[str]:
    return sorted(_TARGETS.names())


def target(name: str) -> TargetRecord:
    return _TARGETS.get(name)


def action(target_name: str, name: str) -> ActionRecord:
    found = target(target_name).action(name)
    if found is None:
        raise SpecError(f"unknown action {name!r} for target {target_name!r}")
    return found


def offering(name: str) -> list[str]:
    """The targets whose rules may name action ``name``."""
    return [t for t in target_names() if (record := target(t).action(name)) is not None and record.in_rules]


def executor_class(target_name: str) -> Any:
    module_name, _, class_name = target(target_name).executor.partition(":")
    return getattr(import_module(module_name), class_name)


def all_actions() -> Mapping[str, list[str]]:
    """Target -> the actions rules may name (for errors and docs)."""
    return {name: target(name).rule_actions() for name in target_names()}
