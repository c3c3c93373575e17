"""Jira executor through the ``jira`` library; every write is preceded by a read of the current state."""

from __future__ import annotations

import json
import threading
from typing import Any

from airflow_reconcile.actions.base import Outcome
from airflow_reconcile.errors import PersistentError

OP_LABEL_PREFIX = "reconcile-op-"


def jql_string(value: str) -> str:
    """A JQL string literal: data inside it can never end the string or add a clause."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name(user: Any) -> str | None:
    if user is None:
        return None
    return getattr(user, "name", None) or getattr(user, "accountId", None)


class JiraExecutor:
    target = "jira"

    def __init__(self, client: Any, project: str | None = None) -> None:
        self.client = client
        self.project = project
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def apply(self, action: str, target_ref: str | None, params: dict[str, Any], operation_id: str) -> Outcome:
        handler = getattr(self, f"_{action}", None)
        if handler is None:
            raise PersistentError(f"the jira target does not support action {action!r}")
        if action != "create_issue" and not target_ref:
            raise PersistentError(f"action {action!r} needs an issue key, and the drift row has none")
        result: Outcome = handler(target_ref, params, operation_id)
        return result

    def _issue(self, key: str, fields: str) -> Any:
        return self.client.issue(key, fields=fields)

    def _user_id(self, wanted: str) -> str:
        """The Jira id of exactly this user (name, key, account id or e-mail), looked up once per run.

        Jira's user search is fuzzy (``ann`` finds ``anna``): a write must never go to a near match.
        """
        cached = self._users.get(wanted.casefold())
        if cached is not None:
            return cached
        cloud = bool(getattr(self.client, "_is_cloud", False))
        found = self.client.search_users(**({"query": wanted} if cloud else {"user": wanted}), maxResults=50)
        for user in found:
            names = (getattr(user, a, None) for a in ("name", "key", "accountId", "emailAddress"))
            if wanted.casefold() in {str(n).casefold() for n in names if n}:
                ident = str(getattr(user, "accountId", None) if cloud else getattr(user, "name", None))
                with self._lock:
                    self._users[wanted.casefold()] = ident
                return ident
        raise PersistentError(f"no Jira user is exactly {wanted!r} (the search found {len(found)} near matches)")

    def _assign(self, key: str, params: dict[str, Any], op: str) -> Outcome:
        wanted = params.get("assignee") or None
        current = _name(self._issue(key, "assignee").fields.assignee)
        prior = {"assignee": current}
        if (current or "").casefold() == (wanted or "").casefold():
            return Outcome(op, "skipped", prior=prior)
        ident = self._user_id(wanted) if wanted else None
        cloud = bool(getattr(self.client, "_is_cloud", False))
        # The client's assign_issue() would search the user again on every call and turn any HTTP
        # error of that search into a status-less JIRAError (a 503 would look persistent); this is
        # the same REST call with the user we already resolved exactly.
        url = self.client._get_latest_url(f"issue/{key}/assignee")
        self.client._session.put(url, data=json.dumps({"accountId": ident} if cloud else {"name": ident}))
        return Outcome(op, "applied", prior=prior)

    def _comment(self, key: str, params: dict[str, Any], op: str) -> Outcome:
        marker = f"[reconcile:{op}]"
        for comment in self.client.comments(key):
            if marker in (comment.body or ""):
                return Outcome(op, "skipped")
        self.client.add_comment(key, f"{params.get('body', '')}\n\n{marker}")
        return Outcome(op, "applied")

    def _label(self, key: str, params: dict[str, Any], op: str) -> Outcome:
        label = params["label"]
        issue = self._issue(key, "labels")
        labels = list(issue.fields.labels or [])
        if label in labels:
            return Outcome(op, "skipped", prior={"labels": labels})
        issue.update(fields={"labels": [*labels, label]})
        return Outcome(op, "applied", prior={"labels": labels})

    def _unlabel(self, key: str, params: dict[str, Any], op: str) -> Outcome:
        label = params["label"]
        issue = self._issue(key, "labels")
        labels = list(issue.fields.labels or [])
        if label not in labels:
            return Outcome(op, "skipped", prior={"labels": labels})
        issue.update(update={"labels": [{"remove": label}]})
        return Outcome(op, "applied", prior={"labels": labels})

    def _set_labels(self, key: str, params: dict[str, Any], op: str) -> Outcome:
        """Exactly these labels (a revert of ``label``)."""
        wanted = list(params.get("labels") or [])
        issue = self._issue(key, "labels")
        labels = list(issue.fields.labels or [])
        if sorted(labels) == sorted(wanted):
            return Outcome(op, "skipped", prior={"labels": labels})
        issue.update(fields={"labels": wanted})
        return Outcome(op, "applied", prior={"labels": labels})

    def _transition(self, key: str, params: dict[str, Any], op: str) -> Outcome:
        wanted = params["status"]
        current = self._issue(key, "status").fields.status.name
        if current.casefold() == wanted.casefold():
            return Outcome(op, "skipped", prior={"status": current})
        for transition in self.client.transitions(key):
            if (
                transition["to"]["name"].casefold() == wanted.casefold()
                or transition["name"].casefold() == wanted.casefold()
            ):
                self.client.transition_issue(key, transition["id"])
                return Outcome(op, "applied", prior={"status": current})
        raise PersistentError(f"{key}: no transition leads from {current!r} to {wanted!r}")

    def _create_issue(self, key: str | None, params: dict[str, Any], op: str) -> Outcome:
        label = OP_LABEL_PREFIX + op
        project = params.get("project") or self.project
        if not project:
            raise PersistentError("create_issue needs params.project")
        found = self.client.search_issues(
            f"project = {jql_string(project)} AND labels = {jql_string(label)}", maxResults=1
        )
        if found:
            return Outcome(op, "skipped", prior={"created": found[0].key})
        fields = {
            "project": {"key": project},
            "summary": params.get("summary", "Reconciliation finding"),
            "description": params.get("description", ""),
            "issuetype": {"name": params.get("issuetype", "Task")},
            "labels": [label],
        }
        issue = self.client.create_issue(fields=fields)
        return Outcome(op, "applied", prior={"created": issue.key})
