"""Jira REST API v2 stand-in: the subset the ``jira`` library uses (Server deployment type)."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import time
from datetime import UTC, datetime
from typing import Any

from devkit.http import Reply, StandIn

API = r"/rest/api/(?:2|latest)"
# The custom text fields the examples use, by the name the flat seed form gives them: the ticket-ownership
# example's Service, the stale-incident-groups example's Incident and Assignment group.
CUSTOM_FIELDS = {"service": ("customfield_10100", "Service"), "incident": ("customfield_10101", "Incident"),
                 "assignment_group": ("customfield_10102", "Assignment group")}  # fmt: skip


def _custom_field(field_id: str, name: str) -> dict[str, Any]:
    return {"id": field_id, "name": name, "custom": True, "clauseNames": [f"cf[{field_id.rsplit('_', 1)[1]}]", name],
            "schema": {"type": "string", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield"}}  # fmt: skip


SYSTEM_FIELDS = ["summary", "description", "project", "issuetype", "status", "priority", "assignee", "labels",
                 "updated", "created", "comment", "reporter"]  # fmt: skip
STATUSES = ["Open", "In Progress", "Done", "Won't Do", "Released"]
# Each status's workflow category, as Jira reports it (``statusCategory.key``): "done" closes the issue
# ("Released": a closing status by its category only, as teams' own workflows name them).
CATEGORIES = {"Open": "new", "In Progress": "indeterminate", "Done": "done", "Won't Do": "done", "Released": "done"}
LINK_TYPES = [
    {"id": "10000", "name": "Relates", "inward": "relates to", "outward": "relates to"},
    {"id": "10001", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _jira_error(status: int, message: str) -> Reply:
    return Reply(status, {"errorMessages": [message], "errors": {}})


_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\(|\)|,|!=|=|[A-Za-z0-9_.\-\[\]@]+)')


def _tokens(jql: str) -> list[tuple[str, bool]]:
    """(token, was_quoted) pairs."""
    out, pos = [], 0
    while pos < len(jql):
        if jql[pos:].strip() == "":
            break
        match = _TOKEN.match(jql, pos)
        if not match:
            raise _jira_error(400, f"Error in the JQL Query: unexpected character at position {pos}.")
        if match.group(1) is not None:
            out.append((re.sub(r"\\(.)", r"\1", match.group(1)), True))
        else:
            out.append((match.group(0).strip(), False))
        pos = match.end()
    return out


class JiraStandIn(StandIn):
    name = "jira"

    def __init__(self, user: str = "reconcile-bot", password: str = "stand-in-token", cloud: bool = False) -> None:
        """``cloud``: answer as Jira Cloud does — users by ``accountId`` only (no names), user search by
        ``query``, and issue search only through ``/search/jql`` with page tokens (``/search`` is gone)."""
        self.credentials = (user, password)
        self.cloud = cloud
        super().__init__()
        self.route("GET", f"{API}/serverInfo", self.server_info)
        self.route("GET", f"{API}/field", lambda **_: self.fields)
        self.route("GET", f"{API}/myself", lambda **_: self._user(self.credentials[0]))
        self.route("GET", f"{API}/search", self.search)
        self.route("POST", f"{API}/search", lambda body, **_: self.search(query=body or {}))
        self.route("GET", f"{API}/user/search", self.user_search)
        self.route("GET", f"{API}/user", self.get_user)
        self.route("GET", f"{API}/search/jql", self.search_jql)
        self.route("POST", f"{API}/search/jql", lambda body, **_: self.search_jql(query=body or {}))
        self.route("POST", f"{API}/issue", self.create_issue)
        self.route("GET", f"{API}/issue/(?P<key>[^/]+)", self.get_issue)
        self.route("PUT", f"{API}/issue/(?P<key>[^/]+)", self.edit_issue)
        self.route("PUT", f"{API}/issue/(?P<key>[^/]+)/assignee", self.assign)
        self.route("GET", f"{API}/issue/(?P<key>[^/]+)/transitions", self.transitions)
        self.route("POST", f"{API}/issue/(?P<key>[^/]+)/transitions", self.do_transition)
        self.route("GET", f"{API}/issue/(?P<key>[^/]+)/comment", self.comments)
        self.route("POST", f"{API}/issue/(?P<key>[^/]+)/comment", self.add_comment)
        self.route("GET", f"{API}/issueLinkType", lambda **_: {"issueLinkTypes": LINK_TYPES})
        self.route("POST", f"{API}/issueLink", self.link)
        self.route("DELETE", f"{API}/issueLink/(?P<link_id>[^/]+)", self.unlink)

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        self.issues: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.fields = [_custom_field(*f) for f in CUSTOM_FIELDS.values()] + [
            {"id": f, "name": f.capitalize(), "custom": False, "clauseNames": [f]} for f in SYSTEM_FIELDS
        ]
        self.next_id = 10000
        self.writes: list[dict[str, Any]] = []
        # Jira's search index lags its writes: JQL sees each issue as it was ``search_lag`` seconds ago
        # (a just-created issue is not found yet); GET /issue/<key> and its comments are always current.
        self.search_lag = 0.0
        self.indexed: dict[str, list[tuple[float, dict[str, Any]]]] = {}

    def seed(self, data: dict[str, Any]) -> None:
        """Users and issues (seeded issues are in the search index at once); ``search_lag`` in seconds."""
        for user in data.get("users", []):
            self.users[user["name"]] = {"active": True, "displayName": user["name"], **user}
        if "search_lag" in data:
            self.search_lag = float(data["search_lag"])
        for issue in data.get("issues", []):
            stored = self._store(issue)
            if self.search_lag:
                self._index(stored, at=0.0)

    def _index(self, issue: dict[str, Any], at: float | None = None) -> None:
        """Record the issue as it is now; the search sees it once ``search_lag`` has passed (only while
        a lag is set: without one the search reads the issues themselves)."""
        if self.search_lag or at is not None:
            self.indexed.setdefault(issue["key"], []).append((time.time() if at is None else at, copy.deepcopy(issue)))

    def _searchable(self) -> list[dict[str, Any]]:
        """The issues as the search index shows them now (``search_lag`` seconds behind the writes)."""
        if not self.search_lag:
            return list(self.issues.values())
        horizon = time.time() - self.search_lag
        shown = []
        for key in self.issues:
            versions = [issue for at, issue in self.indexed.get(key, []) if at <= horizon]
            if versions:
                shown.append(versions[-1])
        return shown

    def state(self) -> dict[str, Any]:
        return {"issues": list(self.issues.values()), "users": list(self.users.values()), "writes": list(self.writes)}

    def assignees(self) -> dict[str, str | None]:
        """Service -> the user name its ownership ticket is assigned to (None: unassigned)."""
        return {
            i["fields"]["customfield_10100"]: (i["fields"]["assignee"] or {}).get("name") for i in self.issues.values()
        }

    def authorised(self, headers: Any) -> bool:
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return (user, password) == self.credentials
        return auth == f"Bearer {self.credentials[1]}"

    def _store(self, issue: dict[str, Any]) -> dict[str, Any]:
        """Accept the flat seed form {key, service, assignee, status, priority, labels, summary}."""
        self.next_id += 1
        key = issue.get("key") or f"{issue.get('project', 'OPS')}-{self.next_id}"
        assignee = issue.get("assignee")
        stored = {
            "id": str(self.next_id),
            "key": key,
            "fields": {
                "summary": issue.get("summary", key),
                "description": issue.get("description", ""),
                "project": {"key": key.split("-")[0]},
                "issuetype": {"name": issue.get("issuetype", "Task")},
                "status": {"name": issue.get("status", "Open")},
                "priority": {"name": issue.get("priority", "Medium")},
                "assignee": self._user_ref(assignee) if assignee else None,
                "labels": list(issue.get("labels", [])),
                "updated": issue.get("updated", _now()),
                "created": issue.get("created", issue.get("updated", _now())),
                **{field_id: issue.get(name) for name, (field_id, _) in CUSTOM_FIELDS.items()},
                "comment": {"comments": [], "total": 0},
                "issuelinks": [],
            },
        }
        self.issues[key] = stored
        return stored

    def _user_ref(self, name: str) -> dict[str, Any]:
        user = self.users.setdefault(name, {"name": name, "displayName": name, "active": True})
        if self.cloud:  # Cloud exposes no user names: an account id, and the e-mail if visible
            return {"self": f"{self.base_url}/rest/api/2/user?accountId={self.account_id(name)}",
                    "accountId": self.account_id(name), "displayName": user["displayName"], "active": user["active"],
                    **({"emailAddress": user["email"]} if user.get("email") else {})}  # fmt: skip
        return {"self": f"{self.base_url}/rest/api/2/user?username={user['name']}", "name": user["name"],
                "key": user["name"], "displayName": user["displayName"], "active": user["active"]}  # fmt: skip

    @staticmethod
    def account_id(name: str) -> str:
        return "5b10ac8d82e05b22cc7d" + hashlib.sha256(name.encode()).hexdigest()[:4]

    def _by_account(self, account: str) -> str | None:
        return next((n for n in self.users if self.account_id(n) == account), None)

    def get_user(self, query: dict[str, Any], **_: Any) -> dict[str, Any]:
        if self.cloud:
            return self._user(self._by_account(str(query.get("accountId", ""))) or "")
        return self._user(query.get("username", ""))

    def _user(self, name: str) -> dict[str, Any]:
        if name not in self.users:
            raise _jira_error(404, f"The user named '{name}' does not exist")
        return self._user_ref(name)

    def _issue(self, key_or_id: str) -> dict[str, Any]:
        """Issues are addressed by key (``OPS-1``) or id (``10001``), as in Jira."""
        if key_or_id in self.issues:
            return self.issues[key_or_id]
        for issue in self.issues.values():
            if issue["id"] == key_or_id:
                return issue
        raise _jira_error(404, "Issue Does Not Exist")

    def _touch(self, issue: dict[str, Any], kind: str, **detail: Any) -> None:
        issue["fields"]["updated"] = _now()
        self._index(issue)
        self.writes.append({"kind": kind, "key": issue["key"], **detail})

    # -- API ---------------------------------------------------------------------------------
    def server_info(self, **_: Any) -> dict[str, Any]:
        return {"baseUrl": self.base_url, "version": "9.12.0", "versionNumbers": [9, 12, 0],
                "deploymentType": "Cloud" if self.cloud else "Server", "buildNumber": 912000, "serverTitle": "Jira stand-in"}  # fmt: skip

    def _self(self, issue: dict[str, Any]) -> str:
        return f"{self.base_url}/rest/api/2/issue/{issue['id']}"

    def _project(self, issue: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        if not fields or "*all" in fields or "*navigable" in fields:
            return {"id": issue["id"], "key": issue["key"], "self": self._self(issue), "fields": dict(issue["fields"])}
        return {
            "id": issue["id"],
            "key": issue["key"],
            "self": self._self(issue),
            "fields": {f: issue["fields"].get(f) for f in fields if f in issue["fields"]},
        }

    @staticmethod
    def _field_list(raw: Any) -> list[str] | None:
        if raw is None:
            return None
        items = raw if isinstance(raw, list) else [raw]
        return [f.strip() for item in items for f in str(item).split(",") if f.strip()]

    def get_issue(self, key: str, query: dict[str, Any], **_: Any) -> dict[str, Any]:
        return self._project(self._issue(key), self._field_list(query.get("fields")))

    def search(self, query: dict[str, Any], **_: Any) -> dict[str, Any]:
        if self.cloud:
            raise Reply(410, {"errorMessages": ["The requested API has been removed. Please use /search/jql."]})
        # Server/DC validates the query (strict) unless told to warn or not to: a key that does not exist fails
        # the whole strict search, and is a warning of a "warn" one.
        mode = str(query.get("validateQuery", "true")).casefold()
        warnings: list[str] = []
        matches = self._run_jql(str(query.get("jql", "")), validate=mode in ("true", "strict"),
                                warnings=warnings if mode == "warn" else None)  # fmt: skip
        start = int(query.get("startAt", 0))
        size = min(int(query.get("maxResults", 50)), 100)
        fields = self._field_list(query.get("fields"))
        page = matches[start : start + size]
        return {"startAt": start, "maxResults": size, "total": len(matches),
                "issues": [self._project(i, fields) for i in page],
                **({"warningMessages": warnings} if warnings else {})}  # fmt: skip

    def user_search(self, query: dict[str, Any], **_: Any) -> list[dict[str, Any]]:
        term = str(query.get("query" if self.cloud else "username", "")).casefold()
        return [
            self._user_ref(n) for n in sorted(self.users)
            if term and (term in n.casefold() or term in str(self.users[n].get("email", "")).casefold())
        ]  # fmt: skip

    def search_jql(self, query: dict[str, Any], **_: Any) -> dict[str, Any]:
        """Cloud's enhanced search: pages by ``nextPageToken``; no total."""
        if not self.cloud:
            raise _jira_error(404, "search/jql is a Jira Cloud API")
        matches = self._run_jql(str(query.get("jql", "")))
        start = int(query.get("nextPageToken") or 0)
        size = min(int(query.get("maxResults", 50)), 100)
        page = matches[start : start + size]
        last = start + size >= len(matches)
        return {"issues": [self._project(i, self._field_list(query.get("fields"))) for i in page], "isLast": last,
                **({} if last else {"nextPageToken": str(start + size)})}  # fmt: skip

    def create_issue(self, body: dict[str, Any], **_: Any) -> tuple[int, dict[str, Any]]:
        fields = (body or {}).get("fields", {})
        missing = [f for f in ("project", "summary", "issuetype") if not fields.get(f)]
        if missing:
            raise Reply(400, {"errorMessages": [], "errors": {f: f"{f} is required." for f in missing}})
        projects = {"OPS"} | {i["fields"]["project"]["key"] for i in self.issues.values()}
        if fields["project"].get("key") not in projects:
            raise Reply(400, {"errorMessages": [], "errors": {"project": "valid project is required"}})
        issue = self._store(
            {
                "project": fields["project"].get("key"),
                "summary": fields["summary"],
                "description": fields.get("description", ""),
                "issuetype": fields["issuetype"].get("name"),
                "labels": fields.get("labels", []),
                **{name: fields.get(field_id) for name, (field_id, _) in CUSTOM_FIELDS.items()},
                "assignee": (fields.get("assignee") or {}).get("name"),
            }
        )
        self._index(issue)
        self.writes.append({"kind": "create", "key": issue["key"], "labels": issue["fields"]["labels"],
                            "summary": fields["summary"]})  # fmt: skip
        return 201, {"id": issue["id"], "key": issue["key"], "self": self._self(issue)}

    def edit_issue(self, key: str, body: dict[str, Any], **_: Any) -> tuple[int, None]:
        issue = self._issue(key)
        for name, value in (body or {}).get("fields", {}).items():
            issue["fields"][name] = value
        for name, ops in (body or {}).get("update", {}).items():
            for op in ops:
                current = issue["fields"].setdefault(name, [])
                if "add" in op:
                    current.append(op["add"])
                if "remove" in op and op["remove"] in current:
                    current.remove(op["remove"])
                if "set" in op:
                    issue["fields"][name] = op["set"]
        self._touch(issue, "edit", fields=sorted({**(body or {}).get("fields", {}), **(body or {}).get("update", {})}))
        return 204, None

    def assign(self, key: str, body: dict[str, Any], **_: Any) -> tuple[int, None]:
        issue = self._issue(key)
        name = (body or {}).get("name")
        if self.cloud:
            account = (body or {}).get("accountId")
            name = None if account in (None, "-1") else (self._by_account(str(account)) or f"unknown:{account}")
        if name in (None, "-1"):
            issue["fields"]["assignee"] = None
        else:
            user = self.users.get(name)
            if user is None or not user.get("active", True):
                raise Reply(
                    400, {"errorMessages": [], "errors": {"assignee": f"User '{name}' cannot be assigned issues."}}
                )
            issue["fields"]["assignee"] = self._user_ref(name)
        self._touch(issue, "assign", assignee=name)
        return 204, None

    def transitions(self, key: str, **_: Any) -> dict[str, Any]:
        current = self._issue(key)["fields"]["status"]["name"]
        return {"transitions": [{"id": str(i + 11), "name": s,
                                 "to": {"name": s, "statusCategory": {"key": CATEGORIES[s]}}}
                                for i, s in enumerate(STATUSES) if s != current]}  # fmt: skip

    def do_transition(self, key: str, body: dict[str, Any], **_: Any) -> tuple[int, None]:
        issue = self._issue(key)
        wanted = str(((body or {}).get("transition") or {}).get("id"))
        for i, status in enumerate(STATUSES):
            if str(i + 11) == wanted:
                issue["fields"]["status"] = {"name": status}
                self._touch(issue, "transition", status=status)
                return 204, None
        raise Reply(400, {"errorMessages": [f"Transition id '{wanted}' is not valid for this issue."]})

    def comments(self, key: str, **_: Any) -> dict[str, Any]:
        return self._issue(key)["fields"]["comment"]

    def add_comment(self, key: str, body: dict[str, Any], **_: Any) -> tuple[int, dict[str, Any]]:
        issue = self._issue(key)
        thread = issue["fields"]["comment"]
        comment = {"id": str(10000 + len(thread["comments"])), "body": (body or {}).get("body", ""),
                   "author": self._user_ref(self.credentials[0]), "created": _now()}  # fmt: skip
        thread["comments"].append(comment)
        thread["total"] = len(thread["comments"])
        self._touch(issue, "comment", body=comment["body"])
        return 201, comment

    def link(self, body: dict[str, Any], **_: Any) -> tuple[int, None]:
        body = body or {}
        kind = next((t for t in LINK_TYPES if t["name"] == (body.get("type") or {}).get("name")), None)
        if kind is None:
            raise _jira_error(404, f"No issue link type with name '{(body.get('type') or {}).get('name')}' found.")
        inward, outward = self._issue(body["inwardIssue"]["key"]), self._issue(body["outwardIssue"]["key"])
        self.next_id += 1
        link_id = str(self.next_id)
        inward["fields"]["issuelinks"].append({"id": link_id, "type": kind, "outwardIssue": {"key": outward["key"]}})
        outward["fields"]["issuelinks"].append({"id": link_id, "type": kind, "inwardIssue": {"key": inward["key"]}})
        self._touch(inward, "link", to=outward["key"], type=kind["name"])
        return 201, None

    def unlink(self, link_id: str, **_: Any) -> tuple[int, None]:
        found = False
        for issue in self.issues.values():
            links = issue["fields"].get("issuelinks", [])
            kept = [link for link in links if link["id"] != link_id]
            if len(kept) != len(links):
                issue["fields"]["issuelinks"], found = kept, True
                self._touch(issue, "unlink", link=link_id)
        if not found:
            raise _jira_error(404, f"No issue link with id '{link_id}' exists.")
        return 204, None

    # -- JQL subset: clauses joined by AND, then ORDER BY -------------------------------------
    def _value_of(self, issue: dict[str, Any], field: str) -> Any:
        f = field.casefold()
        fields = issue["fields"]
        if f == "key":
            return issue["key"]
        if f == "project":
            return fields["project"]["key"]
        for field_id, name in CUSTOM_FIELDS.values():
            if f in (name.casefold(), f"cf[{field_id.rsplit('_', 1)[1]}]"):
                return fields.get(field_id)
        if f in ("issuetype", "type", "status", "priority"):
            value = fields.get("issuetype" if f == "type" else f)
            return value["name"] if value else None
        if f == "assignee":
            ref = fields.get("assignee")
            return (ref.get("name") or self._by_account(ref.get("accountId", ""))) if ref else None
        if f == "labels":
            return fields.get("labels", [])
        if f in ("updated", "created"):
            return fields.get(f)
        raise _jira_error(400, f"Field '{field}' does not exist or you do not have permission to view it.")

    def _run_jql(self, jql: str, validate: bool = False, warnings: list[str] | None = None) -> list[dict[str, Any]]:
        tokens = _tokens(jql)
        order: list[tuple[str, bool]] = []
        lowered = [t.casefold() if not q else None for t, q in tokens]
        if "order" in lowered:
            at = lowered.index("order")
            tail = [t for t, _ in tokens[at + 2 :]]
            tokens = tokens[:at]
            for part in " ".join(tail).split(","):
                words = part.split()
                if words:
                    order.append((words[0], len(words) > 1 and words[1].casefold() == "desc"))
        clauses: list[list[tuple[str, bool]]] = [[]]
        # Grouping parentheses mean nothing with AND only: dropped (those of an ``in (...)`` list are kept).
        kept, in_list = [], False
        for tok, quoted in tokens:
            if not quoted and tok == "(" and kept and not kept[-1][1] and kept[-1][0].casefold() == "in":
                in_list = True
            elif not quoted and tok in ("(", ")") and not in_list:
                continue
            elif not quoted and tok == ")":
                in_list = False
            kept.append((tok, quoted))
        tokens = kept
        for tok, quoted in tokens:
            if not quoted and tok.casefold() == "and":
                clauses.append([])
            elif not quoted and tok.casefold() == "or":
                raise _jira_error(400, "This stand-in supports AND only.")
            else:
                clauses[-1].append((tok, quoted))
        if validate or warnings is not None:
            for clause in clauses:
                if len(clause) > 2 and clause[0][0].casefold() == "key" and clause[1][0].casefold() in ("in", "="):
                    named = [t for t, q in clause[2:] if q or t not in ("(", ")", ",")]
                    absent = [f"An issue with key '{k}' does not exist for field 'key'."
                              for k in named if k.upper() not in self.issues]  # fmt: skip
                    if absent and warnings is None:
                        raise _jira_error(400, absent[0])
                    (warnings if warnings is not None else []).extend(absent)
                if len(clause) > 2 and clause[0][0].casefold() == "status":  # a status no workflow has
                    named = [t for t, q in clause[2:] if q or t not in ("(", ")", ",", "in", "not")]
                    unknown = [f"The value '{v}' does not exist for the field 'status'."
                               for v in named if v.casefold() not in {x.casefold() for x in STATUSES}]  # fmt: skip
                    if unknown and warnings is None:
                        raise _jira_error(400, unknown[0])
                    (warnings if warnings is not None else []).extend(unknown)
        tests = [self._clause(c) for c in clauses if c]
        result = [i for i in self._searchable() if all(t(i) for t in tests)]
        for field, desc in reversed(order or [("key", False)]):
            result.sort(key=lambda i, f=field: self._sort_key(i, f), reverse=desc)
        return result

    def _sort_key(self, issue: dict[str, Any], field: str) -> Any:
        if field.casefold() == "key":
            project, _, number = issue["key"].partition("-")
            return (project, int(number) if number.isdigit() else 0)
        value = self._value_of(issue, field)
        return (value is None, str(value))

    def _clause(self, clause: list[tuple[str, bool]]) -> Any:
        field = clause[0][0]
        op = clause[1][0].casefold() if len(clause) > 1 else ""
        rest = clause[2:]
        if op == "is":
            negate = bool(rest) and rest[0][0].casefold() == "not"
            empty = lambda i: self._value_of(i, field) in (None, "", [])  # noqa: E731
            return (lambda i: not empty(i)) if negate else empty
        if op in ("=", "!="):
            if not rest:
                raise _jira_error(400, f"Error in the JQL Query: expecting a value after '{op}'.")
            value = rest[0][0]

            def eq(i: dict[str, Any]) -> bool:
                actual = self._value_of(i, field)
                if isinstance(actual, list):
                    return value in actual
                return actual is not None and str(actual).casefold() == value.casefold()

            return eq if op == "=" else (lambda i: not eq(i))
        if op in ("in", "not"):
            values = {t.casefold() for t, q in rest if q or t not in ("(", ")", ",", "in")}
            inside = lambda i: str(self._value_of(i, field)).casefold() in values  # noqa: E731
            return inside if op == "in" else (lambda i: not inside(i))
        raise _jira_error(400, f"Error in the JQL Query: unsupported clause {' '.join(t for t, _ in clause)!r}.")
