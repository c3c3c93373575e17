"""The reconciliation spec: a typed, validated model of one YAML file.

Importing this module is cheap (pydantic and PyYAML only): DAG files load specs at parse time.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_reconcile.core import catalog
from airflow_reconcile.core.catalog import NO_ACTION, ActionRecord
from airflow_reconcile.core.conditions import condition_ops
from airflow_reconcile.core.target_settings import JiraSettings, SlackSettings
from airflow_reconcile.core.values import NormalizeStep, Tolerance, check_cron, parse_duration
from airflow_reconcile.core.vocabulary import SIDES, Autonomy, DagId, DriftKind, Mode

_NAME_RE = r"^[a-z][a-z0-9_]{0,62}$"


def _builtin_rule_actions() -> list[str]:
    return [*dict.fromkeys(a for actions in catalog.all_actions().values() for a in actions), NO_ACTION]


def _known_action(rule: Rule) -> ActionRecord | None:
    """The catalog's record of the action a rule names on its target (None: none, or not one a rule may name)."""
    if rule.target not in catalog.target_names():
        return None
    record = catalog.target(rule.target).action(rule.action)
    return record if record is not None and record.in_rules else None


def _fail_at(loc: tuple[str | int, ...], message: str, value: Any) -> None:
    """A validation error at a field of the spec (so the message names its line), from a model check."""
    _fail_all([(loc, message, value)])


def _fail_all(problems: list[tuple[tuple[str | int, ...], str, Any]]) -> None:
    """Validation errors at fields of the spec, one per problem (each names its own line)."""
    from pydantic_core import InitErrorDetails, PydanticCustomError

    details = [
        InitErrorDetails(type=PydanticCustomError("spec_rule", message), loc=loc, input=value)
        for loc, message, value in problems
    ]  # fmt: skip
    if details:
        raise ValidationError.from_exception_data("Spec", details)


def check_time_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone; write an IANA name such as UTC or Europe/Berlin") from None
    return value


def _constant(text: str) -> str:
    """A param as it reads when it is made of literals only (``{{ 'Done' }}`` is ``Done``); else as written
    (the rules check what it renders to for each row). Nothing is evaluated: only constant nodes are read."""
    from jinja2 import TemplateSyntaxError, nodes

    from airflow_reconcile.core.templates import template_env

    try:
        tree = template_env().parse(text)
    except TemplateSyntaxError:  # the template check reports it
        return text
    parts: list[str] = []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return text
        for node in statement.nodes:
            if isinstance(node, nodes.TemplateData) or (isinstance(node, nodes.Const) and isinstance(node.value, str)):
                parts.append(str(node.data if isinstance(node, nodes.TemplateData) else node.value))
            else:
                return text
    return "".join(parts)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Freshness(_Model):
    """The source is stale when its newest ``column`` value (or file mtime, or the result of
    ``query`` for a sql source) is older than ``max_age``."""

    max_age: str
    column: str | None = None
    query: str | None = Field(
        default=None, description="sql sources: a query returning the newest timestamp, e.g. select max(updated_at) ..."
    )
    on_stale: Literal["review", "wait"] = "review"

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def max_age_seconds(self) -> int:
        return parse_duration(self.max_age)

    def is_stale(self, newest: datetime | None, now: datetime) -> bool:
        """Older than ``max_age`` — or unknown (no timestamp at all): stale context never drives a write."""
        return newest is None or (now - newest).total_seconds() > self.max_age_seconds


# What a file source's options may hold (anything else is a mistake, not something to ignore).
FILE_OPTIONS = ("path", "format", "delimiter", "encoding", "na_values", "date_columns", "date_format", "dayfirst")


class Expectation(_Model):
    """Any Great Expectations expectation by name, with its arguments."""

    expectation: str = Field(
        pattern=r"^(expect_[a-z0-9_]+|Expect[A-Za-z0-9]+)$",
        description="e.g. expect_column_values_to_match_regex (or ExpectColumnValuesToMatchRegex)",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict)
    on_failure: Literal["fail", "warn"] = "fail"


class QualitySpec(_Model):
    min_rows: int = Field(
        default=1, ge=0,
        description="Fewer rows fail the gate. Default 1: an empty snapshot (a header-only export, a query that "
        "found nothing) never reads as 'the target matches'; set 0 where an empty side is expected.",
    )  # fmt: skip
    max_rows: int | None = Field(default=None, ge=0)
    required_columns: list[str] = Field(default_factory=list)
    key_problems: Literal["fail", "review"] = Field(
        default="fail",
        description="Null or repeated keys: fail the gate, or let them through to the drift report as "
        "duplicate_key / null_key rows for rules to route to review.",
    )
    expectations: list[Expectation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> QualitySpec:
        if self.max_rows is not None and self.max_rows < self.min_rows:
            _fail_at(("max_rows",), f"max_rows {self.max_rows} is less than min_rows {self.min_rows}: no snapshot "
                     "could pass; swap them or raise max_rows", self.max_rows)  # fmt: skip
        return self


_INPUT_NAME_RE = r"^[a-z][a-z0-9_]{0,40}$"
SIDE_FIELDS = ("input", "derive")  # how a side names its snapshot besides an inline source


class _SourceFields(_Model):
    """What every snapshot the diff can compare declares: its key, columns and limits."""

    columns: list[str] | None = None
    timezone: str | None = Field(
        default=None,
        description="The IANA time zone (e.g. Europe/Berlin, UTC) this source writes times in when they carry no "
        "offset. Without it a naive time stops the diff, and a condition or freshness check on one goes to review: "
        "never taken as UTC in silence.",
    )
    max_rows: int = Field(
        default=5_000_000, ge=1,
        description="Reading stops with an error past this many rows: a source that grew by mistake (a "
        "query without its WHERE) fails clearly instead of exhausting the worker's memory.",
    )  # fmt: skip
    max_bytes: int = Field(
        default=2 * 1024**3, ge=1,
        description="Reading stops with an error past this many bytes (a file's size, HTTP response bodies).",
    )  # fmt: skip

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_time_zone(value)


def _known_kind(kind: str) -> str:
    from airflow_reconcile.core.source_kinds import registered_kinds

    kinds = registered_kinds()
    if kind not in kinds:
        close = difflib.get_close_matches(kind, kinds, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown source kind {kind!r}{hint}; registered kinds: {', '.join(kinds)}")
    return kind


class SourceSpec(_SourceFields):
    """A snapshot read from a system: an entry of ``inputs``, or a side given inline (``sources.desired``)."""

    kind: str = Field(description="A registered snapshot source: file, sql, http, jira, or your own.")
    options: dict[str, Any] = Field(default_factory=dict)
    connection_id: str | None = None
    key: list[str] = Field(min_length=1)
    freshness: Freshness | None = None
    quality: QualitySpec | None = Field(
        default=None,
        description="inputs only: this input's quality gate (a side given inline has its gate in quality.<side>).",
    )
    scope_column: str | None = Field(
        default=None,
        description="inputs a derive reads: the column holding the side's key, so a scoped run reads only the rows "
        "of its keys (an input that is a side is narrowed by its key; one with neither is read whole). Set it only "
        "where a key's derived row depends on this input's rows of that key alone: a derive that counts or ranks "
        "across keys (a team's load) must read the input whole.",
    )

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        return _known_kind(value)

    @model_validator(mode="after")
    def _credentials_stay_home(self) -> SourceSpec:
        url = str(self.options.get("url") or "")
        if self.kind == "http" and self.connection_id and "://" in url:
            raise ValueError(
                f"options.url {url!r} is an absolute URL, but the source takes credentials from connection "
                f"{self.connection_id!r}: they go to the connection's host only. Give a path on that host "
                "(e.g. /api/owners), or drop connection_id for a public URL"
            )
        return self


class Derive(_Model):
    """A side computed by SQL over named inputs (DuckDB, in process, sandboxed; docs/adr/0003)."""

    inputs: list[Annotated[str, Field(pattern=_INPUT_NAME_RE)]] = Field(
        min_length=1, description="The inputs the SQL reads, each a table of that name (and nothing else)."
    )
    sql: str = Field(min_length=1, description="One SELECT query (DuckDB SQL) over the inputs.")


class SideSpec(SourceSpec):
    """A compared side: a source given inline (as in 0.2), ``input: NAME`` (an entry of ``inputs``), or
    ``derive: {inputs, sql}`` with the derived table's ``key`` and ``columns``."""

    kind: str = Field(default="", description="A registered snapshot source (a side given inline).")
    key: list[str] = Field(default_factory=list, description="The key (a side given inline, or a derived one).")
    input: str | None = Field(default=None, pattern=_INPUT_NAME_RE, description="The entry of inputs this side is.")
    derive: Derive | None = None

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        return value and _known_kind(value)

    @model_validator(mode="after")
    def _one_form(self) -> SideSpec:
        given = self.model_fields_set
        if self.input is not None:
            extra = sorted(given - {"input"})
            if extra:
                _fail_at((extra[0],), f"a side given as input: {self.input} takes nothing else; declare "
                         f"{extra[0]} on inputs.{self.input}", getattr(self, extra[0]))  # fmt: skip
            return self
        if self.derive is not None:
            extra = sorted(given & {"kind", "options", "connection_id", "freshness", "quality"})
            if extra:
                _fail_at((extra[0],), f"a derived side reads no system: {extra[0]} belongs on the inputs it "
                         "derives from", getattr(self, extra[0]))  # fmt: skip
            if not self.key:
                _fail_at(("key",), "a derived side needs key: the columns that identify one of its rows", self.key)
            return self
        if not self.kind:
            _fail_at(("kind",), "give kind (a source given inline), input: NAME (an entry of inputs) or derive: "
                     "{inputs: [...], sql: ...}", None)  # fmt: skip
        if not self.key:
            _fail_at(("key",), "required field is missing", None)
        if self.quality is not None:
            _fail_at(("quality",), "a side given inline has its gate in quality.<side>; move it there", None)
        return self

    def as_source(self) -> SourceSpec:
        """The side as the snapshot it declares (a derived side: kind ``derive``, no options)."""
        fields = {name: getattr(self, name) for name in SourceSpec.model_fields if name != "kind"}
        return SourceSpec.model_construct(**fields, kind=self.kind or "derive")


class Sources(_Model):
    desired: SideSpec
    actual: SideSpec


class Quality(_Model):
    desired: QualitySpec = QualitySpec()
    actual: QualitySpec = QualitySpec()


class DriftSpec(_Model):
    compare: list[str] | None = Field(default=None, description="Default: every column both sides have.")
    exclude: list[str] = Field(default_factory=list, description="Not compared; kept in the report as context.")
    context: list[str] = Field(default_factory=list)
    normalize: dict[str, list[NormalizeStep]] = Field(default_factory=dict)
    tolerances: dict[str, str | float] = Field(
        default_factory=dict, description="Per column: 0.01 (absolute), '1%' (relative), '5m' / '90s' (timestamps)."
    )
    column_map: dict[str, str] = Field(default_factory=dict, description="desired column -> actual column")
    authority: dict[str, Literal["desired", "actual"]] = Field(
        default_factory=dict,
        description="Per compared column, which side is authoritative (default: desired, the source of record). "
        "Drift only in columns the target owns is never written to the target automatically.",
    )
    unhandled: Literal["review", "report", "fail"] = Field(
        default="review",
        description="Drift no rule handles (a row, or a changed column no rule names): 'review' (default) puts each "
        "such row in the review queue and the run succeeds; 'report' lists it in the plan, the audit record and the "
        "digest only; 'fail' ends evaluate_rules failed, before anything is applied. Never reported as matching.",
    )

    @field_validator("tolerances", mode="before")
    @classmethod
    def _tolerances(cls, value: Any) -> Any:
        """Text, as written: an unquoted ``0.01`` is the same tolerance as ``"0.01"``; a negative one is refused."""
        if not isinstance(value, dict):
            return value
        out = {}
        for column, given in value.items():
            if isinstance(given, bool) or not isinstance(given, str | int | float):
                raise ValueError(f"tolerances.{column}: {given!r} is not a tolerance; write 0.01, '1%' or '5m'")
            text = str(given)
            Tolerance.parse(text)
            out[column] = text
        return out


class Condition(_Model):
    """A test over a drift row, or a tree of them.

    A leaf is ``{field: desired.<col> | actual.<col>, op, value}``, or ``{column: <col>, op: changed}``
    (the column drifted). A tree is ``{all: [...]}``, ``{any: [...]}`` or ``{not: {...}}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str | None = Field(default=None, pattern=r"^(desired|actual)\.[A-Za-z_][A-Za-z0-9_]*$")
    column: str | None = Field(default=None, description="For op: changed, the compared column.")
    op: str | None = Field(
        default=None,
        description="A condition operator (its record in airflow_reconcile.core.conditions).",
        json_schema_extra=lambda schema: schema.update(anyOf=[{"type": "string", "enum": cast(Any, list(condition_ops()))},
                                                              {"type": "null"}]),
    )  # fmt: skip
    value: Any = None
    unparseable: Literal["review", "false"] = Field(
        default="review",
        description="A value that cannot be read as the number or timestamp the op compares: the row goes to "
        "review with the reason (default), or the condition is false for it ('false', only when you say so).",
    )
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    @field_validator("op")
    @classmethod
    def _known_op(cls, value: str | None) -> str | None:
        ops = condition_ops()
        if value is not None and value not in ops:
            raise ValueError(f"{value!r} is not one of {', '.join(ops)}")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        forms = [name for name in ("op", "all", "any", "not_") if getattr(self, name) is not None]
        if len(forms) != 1:
            raise ValueError("a condition is one of {field, op, value}, {column, op: changed}, {all: [...]}, "
                             "{any: [...]} or {not: {...}}")  # fmt: skip
        if self.op is None:
            if self.field or self.column or self.value is not None:
                raise ValueError("all / any / not take only conditions; put field, op and value inside them")
            return self
        record = condition_ops()[self.op]  # the op's own validator checked it is one
        if record.value == "column":
            if not self.column or self.field:
                raise ValueError(f"op {self.op!r} needs column (the compared column), not field")
            return self
        if not self.field:
            raise ValueError(f"op {self.op!r} needs field: desired.<column> or actual.<column>")
        record.check(self.value)
        return self


class Match(_Model):
    kind: DriftKind
    column: str | None = None
    when: list[Condition] = Field(default_factory=list, description="All must hold (a list is an implicit all).")


class Rule(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    match: Match
    action: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="An action of the rule's target (its record in airflow_reconcile.core.catalog), or none. "
        "The schema lists the built-in targets' actions; `reconcile validate` also knows targets you register.",
        json_schema_extra=lambda schema: schema.update(enum=cast(Any, _builtin_rule_actions())),
    )
    target: str = Field(default="jira", description="A registered target system: jira, slack, or your own.")
    params: dict[str, str] = Field(default_factory=dict)
    autonomy: Autonomy = Autonomy.RECOMMEND
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    allow_clear: bool = Field(
        default=False,
        description="Let a param render empty (an empty value in the source of record that would clear or "
        "unassign a field in the target). Without it such an operation goes to review, never to the target.",
    )


class Targets(BaseModel):
    """The targets' settings, each a model of its target's record (``catalog.TargetRecord.settings``): the
    built-in ones by name, a registered target's under its own name."""

    model_config = ConfigDict(extra="allow", frozen=True)

    jira: JiraSettings = JiraSettings()
    slack: SlackSettings = SlackSettings()

    @model_validator(mode="before")
    @classmethod
    def _registered(cls, given: Any) -> Any:
        if not isinstance(given, dict):
            return given
        out = dict(given)
        for name, value in given.items():
            if name in cls.model_fields:
                continue
            known = [n for n in catalog.target_names() if catalog.target(n).settings is not None]
            if name not in catalog.target_names():
                raise ValueError(f"targets.{name}: no target {name!r} is registered; targets with settings: "
                                 f"{', '.join(known)}")  # fmt: skip
            model = catalog.target(name).settings
            if model is None:
                raise ValueError(f"targets.{name}: the {name} target takes no settings")
            try:
                out[name] = value if isinstance(value, model) else model.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"targets.{name}{'.' + where if where else ''}: {first['msg']}") from None
        return out


def _default_rates() -> dict[str, float]:
    return {name: catalog.target(name).rate for name in catalog.target_names()}


class Watchdog(_Model):
    """When the watchdog DAG raises an alert for this spec (silence is as loud as an error)."""

    max_silence: str = Field(default="1d", description="Alert when no run has applied successfully for this long.")
    max_dead_letters: int = Field(
        default=0, ge=0, description="Alert when more operations than this are dead-lettered."
    )
    max_review_queue: int = Field(
        default=100, ge=0, description="Alert when more operations than this wait for a person."
    )
    stale_runs: int = Field(
        default=3, ge=1, description="Alert when the source of record was stale this many runs in a row."
    )
    max_run_duration: str | None = Field(
        default="2h",
        description="A run still going this long after it was queued (plus approval.timeout when actions wait "
        "for approval) misses its Airflow deadline: a Slack message to the digest channel. null: no deadline.",
    )

    @field_validator("max_silence", "max_run_duration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class Retries(_Model):
    """How every call to a target or source is tried again after a transient failure (429, 5xx, a timeout,
    a dropped connection): exponential backoff with full jitter, never sooner than the service's Retry-After."""

    attempts: int = Field(default=4, ge=1, le=10, description="Tries per request or operation, the first included.")
    base_delay_seconds: float = Field(
        default=0.5, ge=0, le=60, description="The longest wait before the second try; it doubles for each further try."
    )
    max_delay_seconds: float = Field(default=30, ge=0, le=600, description="The longest backoff between two tries.")
    max_retry_after_seconds: float = Field(
        default=120, ge=0, le=3600, description="The longest Retry-After a service may ask for (a longer one is cut)."
    )
    search_settle_seconds: float = Field(
        default=10, ge=0, le=600,
        description="How long a target's search may lag behind a write (Jira's index): a create or post whose reply "
        "was lost is not sent again before the search had this long to show it.",
    )  # fmt: skip


class DeriveLimitsSpec(_Model):
    """What a derived side's SQL may use (DuckDB, in the task's process)."""

    threads: int = Field(default=2, ge=1, le=64, description="DuckDB threads for the derive.")
    memory: str = Field(
        default="1GB", pattern=r"^\d{1,6}(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory limit for the derive (e.g. 512MB, 2GB); past it the derive fails, saying so.",
    )  # fmt: skip
    seconds: float = Field(default=300, gt=0, le=86_400, description="The derive is stopped after this long.")


class Limits(_Model):
    retries: Retries = Field(default_factory=Retries)
    derive: DeriveLimitsSpec = Field(default_factory=DeriveLimitsSpec)
    max_scope_keys: int = Field(
        default=1000, ge=1, le=100_000,
        description="The most keys a scoped run may name (run parameter keys); more are refused before anything is read.",
    )  # fmt: skip
    max_actions: int = Field(default=500, ge=0)
    max_changed_fraction: float = Field(default=0.5, gt=0, le=1)
    rate_per_second: dict[str, float] = Field(
        default_factory=_default_rates,
        description="Most calls per second per target during apply (Slack allows about one message a second).",
    )
    concurrency: int = Field(default=4, ge=1, le=32, description="Operations applied at once (bounded).")
    partition_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="The most rows of a snapshot a task holds at once: beyond it a file or SQL source is read, the "
        "quality gate checks and the diff compares in chunks of about this many rows (docs/production.md, sizing).",
    )
    pool: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.-]+$",
        description="The Airflow pool whose slot every task that writes to the targets takes (apply, apply "
        "approved, replay, revert). rate_per_second holds per task: give the reconciliations that write to one "
        "Jira or Slack the same pool with one slot, and it holds across all workers (docs/production.md).",
    )  # fmt: skip
    allow_closures: bool = Field(
        default=False, description="Allow transitions that close or resolve issues (Done, Closed, Resolved...)."
    )
    max_rendered_chars: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="The longest value a rule's params may render to (a target field's own, shorter limit, such as "
        "a Jira summary's 255 characters, applies too); a longer one sends its row to review.",
    )  # fmt: skip
    fail_on_dead_letter: bool = Field(
        default=True,
        description="End the apply task failed when any operation was dead-lettered, so the UI shows it "
        "(the other operations are applied either way).",
    )

    @property
    def rates(self) -> dict[str, float]:
        """``rate_per_second`` keyed by target name (what the rate limiter takes)."""
        return {str(target): rate for target, rate in self.rate_per_second.items()}

    @field_validator("rate_per_second")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for target, rate in value.items():
            if target not in catalog.target_names():
                raise ValueError(f"unknown target {target!r}; registered targets: {', '.join(catalog.target_names())}")
            if rate <= 0:
                raise ValueError(f"{target}: a rate must be more than 0 calls per second")
        return value


class Approval(_Model):
    """How actions at autonomy ``approve`` wait for a person in Airflow's Required Actions."""

    timeout: str = Field(
        default="24h",
        description="How long a request waits for an answer; unanswered, its operations go to review (e.g. 4h, 2d).",
    )
    assigned_users: list[str] = Field(
        default_factory=list,
        description="Airflow user ids who may answer (empty: anyone who may edit the DAG's runs).",
    )
    notify_channel: str | None = Field(
        default=None, description="A Slack channel told when a request is waiting, with a link to answer it."
    )

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        approval_timeout(value)
        return value


MIN_APPROVAL_TIMEOUT = 30
MAX_APPROVAL_TIMEOUT = 366 * 86400  # a year: longer is a typo (and past what a timedelta or a deadline holds)


def approval_timeout(text: str) -> int:
    """Seconds of an approval timeout; at least 30 s (a shorter wait would race the task's own parking), at
    most a year."""
    seconds = parse_duration(text)
    if seconds < MIN_APPROVAL_TIMEOUT:
        raise ValueError(f"{text!r} is too short for a person to answer; give at least {MIN_APPROVAL_TIMEOUT}s")
    if seconds > MAX_APPROVAL_TIMEOUT:
        raise ValueError(f"{text!r} is longer than a year; give at most 366d (e.g. 4h, 2d, 1w)")
    return seconds


class AssetRef(_Model):
    name: str
    uri: str | None = None


class Schedule(_Model):
    """When the DAG runs: a cron expression, or a fixed interval, and/or when assets are updated."""

    cron: str | None = None
    every: str | None = Field(default=None, description="A fixed interval instead of cron, e.g. 30m, 6h, 1d")
    timezone: str = Field(default="UTC", description="The time zone cron is read in, e.g. Europe/Berlin (IANA name)")
    assets: list[AssetRef] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_time_zone(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        """Checked as Airflow's CronTriggerTimetable checks it (croniter; ``values.check_cron``)."""
        if value is not None:
            check_cron(value)
        return value

    @field_validator("every")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_clock(self) -> Schedule:
        if self.cron and self.every:
            raise ValueError("give cron or every, not both")
        return self


class SpecModel(_Model):
    """A spec's fields and every check that needs only them (``Spec`` adds the column check)."""

    version: Literal[1]
    name: Annotated[str, Field(pattern=_NAME_RE)]
    description: str = ""
    owner: str = "ops"
    schedule: Schedule = Schedule()
    mode: Mode = Mode.SHADOW
    inputs: dict[Annotated[str, Field(pattern=_INPUT_NAME_RE)], SourceSpec] = Field(
        default_factory=dict,
        description="Named snapshots (each read, gated and recorded as a side given inline is) that a side is "
        "(sources.<side>.input) or is derived from (sources.<side>.derive). Names: lower case, not desired or actual.",
    )
    sources: Sources
    quality: Quality = Quality()
    drift: DriftSpec
    rules: list[Rule] = Field(default_factory=list)
    targets: Targets = Targets()
    limits: Limits = Limits()
    approval: Approval = Approval()
    watchdog: Watchdog = Watchdog()

    @model_validator(mode="after")
    def _inputs_are_used(self) -> SpecModel:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        for name in self.inputs:
            if name in SIDES:
                problems.append((("inputs", name), f"{name!r} names a side; give the input another name (e.g. "
                                 f"{name}_export) and write sources.{name}: {{input: <name>}}", name))  # fmt: skip
        known = sorted(self.inputs)
        for side in SIDES:
            given: SideSpec = getattr(self.sources, side)
            names: list[tuple[tuple[str | int, ...], str]] = (
                [(("sources", side, "input"), given.input)] if given.input else []
            )
            if given.derive:
                names += [(("sources", side, "derive", "inputs", i), n) for i, n in enumerate(given.derive.inputs)]
            for loc, name in names:
                if name not in self.inputs:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    problems.append((loc, f"{name!r} is not an entry of inputs{hint}; declared inputs: "
                                     f"{', '.join(known) or 'none'}", name))  # fmt: skip
        for side in SIDES:
            name = getattr(self.sources, side).input
            if name in self.inputs and self.inputs[name].quality is not None and side in self.quality.model_fields_set:
                problems.append((("quality", side), f"sources.{side} is input {name}, which has its own quality; give "
                                 f"the gate once (in inputs.{name}.quality)", side))  # fmt: skip
        for name, source in self.inputs.items():
            column = source.scope_column
            if column and source.columns is not None and column not in [*source.key, *source.columns]:
                problems.append((("inputs", name, "scope_column"), f"{column!r} is not a column of inputs.{name} "
                                 f"(its key and columns: {', '.join([*source.key, *source.columns])})", column))  # fmt: skip
        used = {n for side in SIDES for n in self.side_inputs(side)}
        for name in self.inputs:
            if name not in used and name not in SIDES:
                problems.append((("inputs", name), f"input {name!r} is used by neither side; name it in "
                                 "sources.<side>.input or a derive's inputs, or remove it", name))  # fmt: skip
        _fail_all(problems)
        return self

    def input_specs(self) -> dict[str, SourceSpec]:
        """Every snapshot a run reads, by name: a side given inline is the input named after it (``desired``,
        ``actual``: the 0.2 task ids and workspace names); ``desired`` first, then ``inputs`` in the order
        written, then ``actual``."""
        inline = {side: getattr(self.sources, side).as_source() for side in SIDES if self.is_inline(side)}
        first = {name: inline[name] for name in ("desired",) if name in inline}
        return {**first, **self.inputs, **{name: s for name, s in inline.items() if name not in first}}

    def is_inline(self, side: str) -> bool:
        given: SideSpec = getattr(self.sources, side)
        return given.input is None and given.derive is None

    def target_setting(self, target: str, setting: str) -> Any:
        """A setting of ``targets.<target>``: as the spec gives it, else its default in the target's settings
        model (None where the target has no such setting, or no default for it)."""
        given = getattr(self.targets, target, None)
        if given is None:
            model = catalog.target(target).settings
            try:
                given = model.model_validate({}) if model is not None else None
            except ValidationError:  # a setting without a default: the spec must give targets.<target>
                return None
        return getattr(given, setting, None)

    def ref_column(self, target: str) -> str | None:
        """The actual side's column naming the item an action of ``target`` acts on (its ``ref_setting``:
        Jira's ``issue_key_column``); None for a target whose actions act on no existing item (Slack). A
        registered target that acts on items but names no ``ref_setting`` reads Jira's, as before 0.3."""
        record = catalog.target(target)
        if record.ref_setting:
            return cast("str | None", self.target_setting(target, record.ref_setting))
        if any(a.needs_ref for a in record.actions):
            return self.targets.jira.issue_key_column
        return None

    def side(self, side: str) -> SourceSpec:
        """What the side's snapshot declares (key, columns, time zone, freshness), whichever form it has."""
        given: SideSpec = getattr(self.sources, side)
        if given.input is not None and given.input in self.inputs:
            return self.inputs[given.input]
        return given.as_source()

    def quality_of(self, name: str) -> QualitySpec:
        """The declared gate of an input or a derived side: ``quality.<side>`` for a side given inline or
        derived, an input's own ``quality`` (or, for an input that is a side, that side's ``quality.<side>``)."""
        if name in SIDES:
            return cast(QualitySpec, getattr(self.quality, name))
        own = self.inputs[name].quality
        if own is not None:
            return own
        sides = [side for side in SIDES if self.side_input(side) == name]
        return cast(QualitySpec, getattr(self.quality, sides[0])) if sides else QualitySpec()

    def checked(self) -> list[str]:
        """What the run's quality gates check, in order: every input, then every derived side."""
        return [*self.input_specs(), *(side for side in SIDES if self.derive_of(side))]

    def derive_of(self, side: str) -> Derive | None:
        return cast(SideSpec, getattr(self.sources, side)).derive

    def side_input(self, side: str) -> str | None:
        """The input the side is (its own name for a side given inline), None for a derived side."""
        given: SideSpec = getattr(self.sources, side)
        return None if given.derive else (given.input or side)

    def side_inputs(self, side: str) -> list[str]:
        """The inputs the side's snapshot comes from: the one it is, or those its derive reads."""
        derive = self.derive_of(side)
        return list(derive.inputs) if derive else [cast(str, self.side_input(side))]

    def inputs_of(self, name: str) -> list[str]:
        """The sides an input feeds (as itself or through a derive)."""
        return [side for side in SIDES if name in self.side_inputs(side)]

    @model_validator(mode="after")
    def _closures_need_opt_in(self) -> SpecModel:
        if self.limits.allow_closures:
            return self
        for index, rule in enumerate(self.rules):
            record = _known_action(rule)
            closing = record.closing({k: _constant(v) for k, v in rule.params.items()}) if record else None
            if closing:
                item = catalog.target(rule.target).item
                value = rule.params[closing]
                _fail_at(("rules", index, "params", closing),
                         f"{value!r} closes {item}s; set limits.allow_closures: true to allow closing automatically",
                         value)  # fmt: skip
        return self

    @model_validator(mode="after")
    def _actions_have_their_params(self) -> SpecModel:
        for index, rule in enumerate(self.rules):
            if rule.target not in catalog.target_names():
                _fail_at(("rules", index, "target"), f"unknown target {rule.target!r}; registered targets: "
                         f"{', '.join(catalog.target_names())}", rule.target)  # fmt: skip
            if rule.action == NO_ACTION:
                continue
            record = _known_action(rule)
            if record is None:
                owners = catalog.offering(rule.action)
                if owners:
                    _fail_at(("rules", index, "target"), f"{rule.action!r} is a {owners[0]} action; set target: "
                             f"{owners[0]}", rule.target)  # fmt: skip
                known = [*catalog.target(rule.target).rule_actions(), NO_ACTION]
                close = difflib.get_close_matches(rule.action, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                _fail_at(("rules", index, "action"), f"{rule.action!r} is not an action of target {rule.target}{hint}; "
                         f"its actions: {', '.join(known)}", rule.action)  # fmt: skip
                continue
            missing = [p for p in record.params if p not in rule.params]
            if missing:
                _fail_at(("rules", index, "params"),
                         f"{rule.action!r} needs params {', '.join(missing)}", rule.params)  # fmt: skip
            for name in record.unknown_params(rule.params):
                close = difflib.get_close_matches(name, [*record.params, *record.optional], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                _fail_at(("rules", index, "params", name), f"{rule.action!r} takes no param {name!r}{hint}; it takes "
                         f"{', '.join(record.known_params)}", name)  # fmt: skip
        return self

    @model_validator(mode="after")
    def _compare_is_not_key_or_excluded(self) -> SpecModel:
        keyed = [c for c in self.drift.compare or () if c in self.side("desired").key]
        if keyed:
            _fail_at(("drift", "compare"), f"{', '.join(keyed)} is the key: rows are matched by it, never compared; "
                     "leave it out of compare", self.drift.compare)  # fmt: skip
        both = [c for c in self.drift.compare or () if c in self.drift.exclude]
        if both:
            _fail_at(("drift", "exclude"), f"{', '.join(both)} is both compared and excluded; give each column to "
                     "one of them", self.drift.exclude)  # fmt: skip
        return self

    @model_validator(mode="after")
    def _keys_meet(self) -> SpecModel:
        """The diff joins the actual key to the desired one through ``drift.column_map``: they must name the
        same columns, or every row would be missing and unexpected (or the diff would fail mid-run)."""
        desired, actual = self.side("desired").key, self.side("actual").key
        wanted = [self.drift.column_map.get(c, c) for c in desired]
        if actual != wanted:
            mapping = ", ".join(f"{d}: {a}" for d, a in zip(desired, actual, strict=False) if d != a)
            hint = (f"add drift.column_map {{{mapping}}} if the target calls the key differently" if mapping and
                    len(actual) == len(desired) else "give both sides the same key")  # fmt: skip
            where = (
                ("sources", "actual", "key") if self.sources.actual.input is None else ("sources", "actual", "input")
            )
            _fail_at(where, f"the actual key {actual} does not meet the desired key {desired} (through "
                     f"drift.column_map: {wanted}); {hint}", actual)  # fmt: skip
        return self

    @model_validator(mode="after")
    def _unique_rule_names(self) -> SpecModel:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                _fail_at(("rules", index, "name"), f"{rule.name!r} is used twice; rule names must be unique", rule.name)
            seen.add(rule.name)
        return self

    @model_validator(mode="after")
    def _templates_parse(self) -> SpecModel:
        """Templates are parsed when the spec is loaded: a syntax error or an unknown name is a spec error."""
        from jinja2 import TemplateSyntaxError

        from airflow_reconcile.core.templates import TEMPLATE_NAMES, template_refs

        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        for index, rule in enumerate(self.rules):
            for name, text in rule.params.items():
                loc = ("rules", index, "params", name)
                try:
                    _, others = template_refs(text)
                except TemplateSyntaxError as exc:
                    problems.append((loc, f"template {text!r} does not parse: {exc.message}", text))
                    continue
                if others:
                    allowed = " and ".join(f"{n}.<column>" for n in TEMPLATE_NAMES)
                    problems.append((loc, f"template {text!r} uses {', '.join(others)}; it may read {allowed}", text))
        _fail_all(problems)
        return self

    @model_validator(mode="after")
    def _file_options_known(self) -> SpecModel:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        places = {name: ("sources", name) if name in SIDES else ("inputs", name) for name in self.input_specs()}
        for name, source in self.input_specs().items():
            if source.kind == "file":
                for option in sorted(set(source.options) - set(FILE_OPTIONS)):
                    problems.append(((*places[name], "options", option), f"unknown file option {option!r}; a file "
                                     f"source takes {', '.join(FILE_OPTIONS)}", option))  # fmt: skip
        _fail_all(problems)
        return self

    @property
    def needs_approval(self) -> bool:
        """Some rule acts only after a person approves (the DAG gets approval tasks)."""
        return any(rule.autonomy == Autonomy.APPROVE and rule.action != NO_ACTION for rule in self.rules)

    @property
    def dag_id(self) -> str:
        return DagId.of(self.name)

    @property
    def policy_version(self) -> str:
        """Content hash of the normalised spec: every manifest and audit record carries it."""
        data = self.model_dump(mode="json")
        # Fields added in 0.3 count only when given: a spec written for 0.2 keeps its version (and its
        # pinned runs, ledger rows and audit records keep matching it).
        if not data["inputs"]:
            del data["inputs"]
        if data["limits"]["derive"] == DeriveLimitsSpec().model_dump(mode="json"):
            del data["limits"]["derive"]
        if data["limits"]["max_scope_keys"] == Limits.model_fields["max_scope_keys"].default:
            del data["limits"]["max_scope_keys"]
        for side in SIDES:
            for name in ("input", "derive", "quality", "scope_column"):
                if data["sources"][side].get(name) is None:
                    data["sources"][side].pop(name, None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
