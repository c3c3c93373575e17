"""Jira executor through the ``jira`` library; every write is preceded by a read of the current state."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from airflow_reconcile.core.actions.base import BeforeWrite, no_record
from airflow_reconcile.core.catalog import ActionRecord, TargetRecord
from airflow_reconcile.core.errors import PersistentError
from airflow_reconcile.core.plan import Outcome
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.core.target_settings import JiraSettings
from airflow_reconcile.core.vocabulary import Status

T = TypeVar("T")
OP_LABEL_PREFIX = "reconcile-op-"
# Statuses that close an issue: a transition to one needs limits.allow_closures (spec, plan, replay, revert).
# By name where no Jira is at hand (the spec, the plan); when a transition is sent, Jira's own workflow
# decides: a status in the "done" category closes, whatever its name.
CLOSING_STATUSES = ("done", "closed", "resolved", "cancelled", "canceled", "won't do", "wont do", "rejected",
                    "declined", "won't fix", "wont fix", "duplicate", "completed")  # fmt: skip
CLOSING_CATEGORY = "done"


def _closes(params: Any) -> str | None:
    return "status" if str(params.get("status") or "").strip().casefold() in CLOSING_STATUSES else None


TARGET = TargetRecord(
    name="jira",
    executor="airflow_reconcile.core.actions.jira:JiraExecutor",
    item="issue",
    title="Jira",
    ref_setting="issue_key_column",
    settings=JiraSettings,
    actions=(
        ActionRecord("assign", ("assignee",),
                     undo=lambda prior: ("assign", {"assignee": prior.get("assignee") or ""})),
        ActionRecord("transition", ("status",), closes=_closes,
                     undo=lambda prior: ("transition", {"status": prior["status"]}) if prior.get("status") else None),
        ActionRecord("comment", ("body",), once_only=True, markup={"body": "jira_wiki"}, max_length={"body": 32_767},
                     not_undone="a comment stays in the issue's history; delete it in Jira if it must go"),
        ActionRecord("label", ("label",),
                     undo=lambda prior: ("set_labels", {"labels": list(prior.get("labels") or [])})),
        ActionRecord("unlabel", ("label",),
                     undo=lambda prior: ("set_labels", {"labels": list(prior.get("labels") or [])})),
        ActionRecord("set_field", ("field", "value"),
                     undo=lambda prior: ("set_field", {"field": prior["field"], "value": prior.get("value") or ""})
                     if prior.get("field") else None),
        ActionRecord("create_issue", ("project", "summary"), needs_ref=False, once_only=True,
                     markup={"description": "jira_wiki"},  # the summary is plain text in Jira: never rendered
                     max_length={"summary": 255, "description": 32_767},
                     optional=("description", "issuetype", "assignee"), param_prefixes=("field.",),
                     not_undone="a created issue is not deleted automatically; close it in Jira if it must go"),
        ActionRecord("link", ("type", "to"),
                     undo=lambda prior: ("unlink", {"type": prior["type"], "to": prior["to"]})
                     if prior.get("type") else None),
        # Undo steps (revert only).
        ActionRecord("set_labels", ("labels",), in_rules=False),
        ActionRecord("unlink", ("type", "to"), in_rules=False),
    ),
)  # fmt: skip


def jql_string(value: str) -> str:
    """A JQL string literal: data inside it can never end the string or add a clause."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


USER_IDS = ("name", "key", "accountId", "emailAddress")


def _name(user: Any) -> str | None:
    """A user as the snapshot shows it: name (Server/DC); e-mail if visible, else account id (Cloud)."""
    if user is None:
        return None
    return getattr(user, "name", None) or getattr(user, "emailAddress", None) or getattr(user, "accountId", None)


def _is(user: Any, wanted: str | None) -> bool:
    """Whether a Jira user (or nobody) is the wanted one, by any of its identifiers."""
    if user is None or not wanted:
        return user is None and not wanted
    return wanted.casefold() in {str(getattr(user, a, None) or "").casefold() for a in USER_IDS} - {""}


def _shown(value: Any) -> str | None:
    """A field's current value as the text a rule compares with (option, user, number or list)."""
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(filter(None, map(_shown, value)))
    for attr in ("value", "name", "accountId"):
        inner = getattr(value, attr, None) if not isinstance(value, dict) else value.get(attr)
        if inner is not None:
            return str(inner)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class JiraExecutor:
    target = "jira"

    def __init__(
        self, client: Any, project: str | None = None, retry: RetryPolicy | None = None, allow_closures: bool = False
    ) -> None:
        self.client = client
        self.project = project
        self.allow_closures = allow_closures  # limits.allow_closures: fail closed without it
        # Reads (the probe before a write, lookups) are tried again on their own; a write is tried again
        # by the operation's retry, which reads first.
        self.retry = retry or RetryPolicy()
        self._users: dict[str, str] = {}
        self._fields: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    @property
    def _cloud(self) -> bool:
        return bool(getattr(self.client, "_is_cloud", False))

    def _field(self, name: str) -> dict[str, Any]:
        """Jira's description of a field, by id (``customfield_10100``), name (``Service``) or JQL clause."""
        with self._lock:
            if self._fields is None:
                fields: dict[str, dict[str, Any]] = {}
                for field in self._read(self.client.fields, "GET /field"):
                    for alias in (field["id"], field.get("name"), *field.get("clauseNames", [])):
                        if alias:
                            fields.setdefault(str(alias).casefold(), field)
                self._fields = fields
        found = self._fields.get(name.casefold())
        if found is None:
            raise PersistentError(f"Jira has no field {name!r} (give its name as Jira shows it, or its id)")
        return found

    def _user_ref(self, wanted: str) -> dict[str, str]:
        ident = self._user_id(wanted)
        return {"accountId": ident} if self._cloud else {"name": ident}

    def _field_value(self, field: dict[str, Any], value: str) -> Any:
        """A rule's text value in the shape Jira expects for the field's type."""
        kind = (field.get("schema") or {}).get("type", "string")
        if kind == "number":
            try:
                return float(value)
            except ValueError:
                raise PersistentError(f"field {field.get('name')!r} is a number; {value!r} is not") from None
        if kind == "option":
            return {"value": value}
        if kind == "user":
            return self._user_ref(value)
        if kind in ("priority", "issuetype", "status", "resolution", "version", "component"):
            return {"name": value}
        if kind == "array":
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def apply(
        self, action: str, target_ref: str | None, params: dict[str, Any], operation_id: str,
        before_write: BeforeWrite = no_record,
    ) -> Outcome:  # fmt: skip
        record = TARGET.action(action)
        if record is None:
            raise PersistentError(f"the jira target does not support action {action!r}")
        if record.needs_ref and not target_ref:
            raise PersistentError(f"action {action!r} needs an issue key, and the drift row has none")
        handler = getattr(self, f"_{action}")  # every action of TARGET has its handler (a test checks)
        result: Outcome = handler(target_ref, params, operation_id, before_write)
        return result

    def _read(self, call: Callable[[], T], what: str) -> T:
        return self.retry.call(call, f"Jira {what}")

    def _issue(self, key: str, fields: str) -> Any:
        return self._read(partial(self.client.issue, key, fields=fields), f"GET issue {key}")

    def _user_id(self, wanted: str) -> str:
        """The Jira id of exactly this user (name, key, account id or e-mail), looked up once per run.

        Jira's user search is fuzzy (``ann`` finds ``anna``): a write must never go to a near match.
        """
        cached = self._users.get(wanted.casefold())
        if cached is not None:
            return cached
        cloud = self._cloud
        found = self._read(partial(self.client.search_users, **({"query": wanted} if cloud else {"user": wanted}),
                                   maxResults=50), "user search")  # fmt: skip
        if cloud and not found and "@" not in wanted:  # an account id (a revert's prior state) is not searchable
            from jira.exceptions import JIRAError

            try:
                found = [self._read(partial(self.client.user, wanted), "GET user")]
            except JIRAError as exc:
                if exc.status_code != 404:
                    raise
        for user in found:
            if _is(user, wanted):
                ident = str(getattr(user, "accountId", None) if cloud else getattr(user, "name", None))
                with self._lock:
                    self._users[wanted.casefold()] = ident
                return ident
        raise PersistentError(f"no Jira user is exactly {wanted!r} (the search found {len(found)} near matches)")

    def _assign(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        wanted = params.get("assignee") or None
        user = self._issue(key, "assignee").fields.assignee
        prior = {"assignee": _name(user)}
        if _is(user, wanted):
            return Outcome(op, Status.SKIPPED, prior=prior)
        ident = self._user_id(wanted) if wanted else None
        if user is not None and ident == (getattr(user, "accountId", None) or getattr(user, "name", None)):
            return Outcome(op, Status.SKIPPED, prior=prior)  # e.g. wanted by e-mail, Cloud hides the e-mail
        cloud = self._cloud
        # The client's assign_issue() would search the user again on every call and turn any HTTP
        # error of that search into a status-less JIRAError (a 503 would look persistent); this is
        # the same REST call with the user we already resolved exactly.
        url = self.client._get_latest_url(f"issue/{key}/assignee")
        before_write(prior)
        self.client._session.put(url, data=json.dumps({"accountId": ident} if cloud else {"name": ident}))
        return Outcome(op, Status.APPLIED, prior=prior)

    def _comment(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        marker = f"[reconcile:{op}]"
        for comment in self._read(partial(self.client.comments, key), f"GET comments of {key}"):
            if marker in (comment.body or ""):
                return Outcome(op, Status.SKIPPED)
        before_write({})
        self.client.add_comment(key, f"{params.get('body', '')}\n\n{marker}")
        return Outcome(op, Status.APPLIED)

    def _label(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        label = params["label"]
        issue = self._issue(key, "labels")
        labels = list(issue.fields.labels or [])
        if label in labels:
            return Outcome(op, Status.SKIPPED, prior={"labels": labels})
        before_write({"labels": labels})
        issue.update(fields={"labels": [*labels, label]})
        return Outcome(op, Status.APPLIED, prior={"labels": labels})

    def _unlabel(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        label = params["label"]
        issue = self._issue(key, "labels")
        labels = list(issue.fields.labels or [])
        if label not in labels:
            return Outcome(op, Status.SKIPPED, prior={"labels": labels})
        before_write({"labels": labels})
        issue.update(update={"labels": [{"remove": label}]})
        return Outcome(op, Status.APPLIED, prior={"labels": labels})

    def _set_labels(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        """Exactly these labels (a revert of ``label``)."""
        wanted = list(params.get("labels") or [])
        issue = self._issue(key, "labels")
        labels = list(issue.fields.labels or [])
        if sorted(labels) == sorted(wanted):
            return Outcome(op, Status.SKIPPED, prior={"labels": labels})
        before_write({"labels": labels})
        issue.update(fields={"labels": wanted})
        return Outcome(op, Status.APPLIED, prior={"labels": labels})

    def _transition(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        wanted = params["status"]
        current = self._issue(key, "status").fields.status.name
        if current.casefold() == wanted.casefold():
            return Outcome(op, Status.SKIPPED, prior={"status": current})
        for transition in self._read(partial(self.client.transitions, key), f"GET transitions of {key}"):
            if (
                transition["to"]["name"].casefold() == wanted.casefold()
                or transition["name"].casefold() == wanted.casefold()
            ):
                to = transition["to"]
                category = str((to.get("statusCategory") or {}).get("key") or "")
                if not self.allow_closures and (category == CLOSING_CATEGORY or _closes({"status": to["name"]})):
                    raise PersistentError(
                        f"{key}: the transition to {to['name']!r} closes the issue (Jira's status category "
                        f"{category or 'done'!r}) and limits.allow_closures is false; nothing was sent"
                    )
                before_write({"status": current})
                self.client.transition_issue(key, transition["id"])
                return Outcome(op, Status.APPLIED, prior={"status": current})
        raise PersistentError(f"{key}: no transition leads from {current!r} to {wanted!r}")

    def _create_issue(self, key: str | None, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        label = OP_LABEL_PREFIX + op
        project = params.get("project") or self.project
        if not project:
            raise PersistentError("create_issue needs params.project")
        jql = f"project = {jql_string(project)} AND labels = {jql_string(label)}"
        found = self._read(partial(self.client.search_issues, jql, maxResults=1), "search")
        if found:
            return Outcome(op, Status.SKIPPED, prior={"created": found[0].key})
        fields: dict[str, Any] = {
            "project": {"key": project},
            "summary": params.get("summary", "Reconciliation finding"),
            "description": params.get("description", ""),
            "issuetype": {"name": params.get("issuetype", "Task")},
            "labels": [label],
        }
        if params.get("assignee"):
            fields["assignee"] = self._user_ref(params["assignee"])
        for name, value in params.items():  # ``field.<name>: value`` sets any other field
            if name.startswith("field."):
                field = self._field(name.removeprefix("field."))
                fields[field["id"]] = self._field_value(field, value)
        before_write({})
        issue = self.client.create_issue(fields=fields)
        return Outcome(op, Status.APPLIED, prior={"created": issue.key})

    def _link_type(self, wanted: str) -> dict[str, Any]:
        """The link type by name or either description (``Blocks``, ``blocks``, ``is blocked by``)."""
        with self._lock:
            if not hasattr(self, "_link_types"):
                self._link_types = [t.raw for t in self._read(self.client.issue_link_types, "GET issueLinkType")]
        for kind in self._link_types:
            if wanted.casefold() in {str(kind.get(a, "")).casefold() for a in ("name", "outward", "inward")}:
                return kind
        names = ", ".join(sorted(str(t.get("name")) for t in self._link_types))
        raise PersistentError(f"Jira has no issue link type {wanted!r} (it has: {names})")

    def _links(self, key: str, kind: dict[str, Any], other: str) -> list[dict[str, Any]]:
        """This issue's links of ``kind`` with ``other``, in either direction."""
        raw = self._issue(key, "issuelinks").raw.get("fields", {}).get("issuelinks") or []
        return [
            link for link in raw
            if (link.get("type") or {}).get("name") == kind["name"]
            and other.casefold() in {str((link.get(side) or {}).get("key", "")).casefold()
                                     for side in ("inwardIssue", "outwardIssue")}
        ]  # fmt: skip

    def _link(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        """Link this issue to ``params.to`` with ``params.type``; skipped when that link exists."""
        kind, other = self._link_type(params["type"]), str(params["to"])
        prior = {"type": kind["name"], "to": other}
        if self._links(key, kind, other):
            return Outcome(op, Status.SKIPPED, prior=prior)
        body = {"type": {"name": kind["name"]}, "inwardIssue": {"key": key}, "outwardIssue": {"key": other}}
        before_write(prior)
        self.client._session.post(self.client._get_url("issueLink"), data=json.dumps(body))
        return Outcome(op, Status.APPLIED, prior=prior)

    def _unlink(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        """Remove this issue's ``params.type`` links with ``params.to`` (a revert of ``link``)."""
        kind, other = self._link_type(params["type"]), str(params["to"])
        links = self._links(key, kind, other)
        if links:
            before_write({"type": kind["name"], "to": other})
        for link in links:
            self.client.delete_issue_link(str(link["id"]))
        return Outcome(op, Status.APPLIED if links else "skipped", prior={"type": kind["name"], "to": other})

    def _set_field(self, key: str, params: dict[str, Any], op: str, before_write: BeforeWrite) -> Outcome:
        """Set one field (``params.field`` by name or id) to ``params.value``; skipped when it already is."""
        if "field" not in params:
            raise PersistentError("set_field needs params.field (a field name or id) and params.value")
        field = self._field(params["field"])
        wanted = params.get("value")
        issue = self._issue(key, field["id"])
        shown = _shown(getattr(issue.fields, field["id"], None))
        prior = {"field": field["id"], "value": shown}
        if (shown or "") == (wanted or ""):
            return Outcome(op, Status.SKIPPED, prior=prior)
        value = self._field_value(field, wanted) if wanted else None
        before_write(prior)
        issue.update(fields={field["id"]: value})
        return Outcome(op, Status.APPLIED, prior=prior)
