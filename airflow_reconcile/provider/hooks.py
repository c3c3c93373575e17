"""Hooks: clients built from Airflow connections (the only place credentials come from).

Part of the Airflow layer, like ``operators``, ``sensors``, ``plugins`` and ``dag_factory``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_reconcile.core import catalog
from airflow_reconcile.core.errors import ReconcileError, SourceError
from airflow_reconcile.core.locations import absolute, default_audit_db
from airflow_reconcile.core.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow_reconcile.core.actions import ActionExecutor
    from airflow_reconcile.core.sources import SourceContext
    from airflow_reconcile.core.spec import SourceSpec, Spec

DEFAULT_AUDIT_CONN_ID = "reconcile_audit"
DEFAULT_JIRA_CONN_ID = "reconcile_jira"
DEFAULT_SLACK_CONN_ID = "reconcile_slack"


def base_url(conn: Any) -> str:
    """``https://host[:port]`` from a connection whose host may or may not carry the scheme and port."""
    host = conn.host or ""
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    return str(host.rstrip("/"))


_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "password", "cookie", "session", "signature")


def guard_secrets(conn: Any) -> Any:
    """Register a connection's secret values (password, credential headers and storage options in its
    extra) with our error redaction and with Airflow's secrets masker (its task logs); returns ``conn``."""
    from airflow.sdk.log import mask_secret

    from airflow_reconcile.core.redact import remember

    extra = conn.extra_dejson if conn.extra else {}
    named = {**dict(extra.get("headers") or {}), **dict(extra.get("storage_options") or {})}
    values = [conn.password, extra.get("sqlalchemy_url") and _password_of(str(extra["sqlalchemy_url"]))]
    values += [v for k, v in named.items() if isinstance(v, str) and any(w in k.lower() for w in _CREDENTIAL_WORDS)]
    for value in values:
        if value:
            remember(value)
            mask_secret(value)
    return conn


def _password_of(url: str) -> str | None:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).password
    except sa.exc.ArgumentError:
        return None


def _connection_or_none(conn_id: str) -> Any:
    from airflow.exceptions import AirflowNotFoundException

    try:
        return guard_secrets(BaseHook.get_connection(conn_id))
    except AirflowNotFoundException:
        return None


class JiraClientHook(BaseHook):
    """A ``jira.JIRA`` client from a connection: host = server URL, login = user, password = API token.

    Extra: ``{"auth": "basic" | "token", "verify": true, "timeout": 30}``. ``basic`` (default) is
    user + API token (Cloud) or user + password (Server/Data Center); ``token`` is a personal access
    token (Server/Data Center) in the password field.
    """

    conn_name_attr = "jira_conn_id"
    default_conn_name = DEFAULT_JIRA_CONN_ID
    conn_type = "reconcile_jira"
    hook_name = "Jira (reconcile)"

    def __init__(self, jira_conn_id: str = DEFAULT_JIRA_CONN_ID) -> None:
        super().__init__()
        self.jira_conn_id = jira_conn_id

    @staticmethod
    def get_ui_field_behaviour() -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"host": "Jira URL", "login": "User / e-mail", "password": "API token or password"},
            "placeholders": {"extra": '{"auth": "basic", "verify": true, "timeout": 30}'},
        }

    def server_url(self) -> str:
        return base_url(self.get_connection(self.jira_conn_id))

    def get_conn(self, retry: RetryPolicy | None = None) -> Any:
        """The client; its first call (``serverInfo``) is tried again on a transient failure, and a
        failure is a clean error (status, URL, message; never the response's headers)."""
        from jira.exceptions import JIRAError

        from airflow_reconcile.core.errors import TransientError, classify, source_failure
        from airflow_reconcile.core.redact import error_text

        try:
            return (retry or RetryPolicy()).call(self._connect, "Jira connect")
        except JIRAError as exc:
            kind = "is unavailable" if classify(exc) is TransientError else "refused the connection"
            raise source_failure(exc, f"Jira at {self.server_url()} {kind}: {error_text(exc)}") from None

    def _connect(self) -> Any:
        from jira import JIRA

        conn = guard_secrets(self.get_connection(self.jira_conn_id))
        extra = conn.extra_dejson
        auth: dict[str, Any]
        if extra.get("auth") == "token":
            auth = {"token_auth": conn.password}
        else:
            auth = {"basic_auth": (conn.login, conn.password)}
        return JIRA(
            server=self.server_url(),
            options={"verify": extra.get("verify", True), "rest_api_version": "2"},
            timeout=int(extra.get("timeout", 30)),
            max_retries=0,
            get_server_info=True,
            **auth,
        )


class AuditStoreHook(BaseHook):
    """The audit store's SQLAlchemy URL from a connection; a SQLite file under AIRFLOW_HOME by default.

    Connection: type ``sqlite`` with host = file path, or any type with extra ``{"sqlalchemy_url": ...}``,
    or a database connection whose URI SQLAlchemy understands (``postgresql://...``).
    """

    conn_name_attr = "audit_conn_id"
    default_conn_name = DEFAULT_AUDIT_CONN_ID
    conn_type = "reconcile_audit"
    hook_name = "Reconcile audit store"

    def __init__(self, audit_conn_id: str = DEFAULT_AUDIT_CONN_ID) -> None:
        super().__init__()
        self.audit_conn_id = audit_conn_id

    def url(self) -> str:
        conn = _connection_or_none(self.audit_conn_id)
        if conn is None:
            remote = remote_executors()
            if remote:  # fail closed: a per-host ledger cannot stop a second worker repeating a write
                raise ReconcileError(
                    f"no Airflow connection {self.audit_conn_id!r} and the executor is {', '.join(remote)}: each "
                    "worker would keep its own audit store and ledger, so an operation could be written twice. "
                    f"Create the connection {self.audit_conn_id!r} for a database every worker reaches (e.g. "
                    "postgresql+psycopg://user@db-host/reconcile); see the README, Deploy"
                )
            path = default_audit_db()
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{path}"
        return sqlalchemy_url(conn)

    @property
    def key_conn_id(self) -> str:
        """The connection that holds the audit key (its password): ``<audit connection id>_key``."""
        return f"{self.audit_conn_id}_key"

    def signer(self) -> Any:
        """The audit key from its connection (never from the audit store); unkeyed without one."""
        from airflow_reconcile.core.integrity import Signer

        conn = _connection_or_none(self.key_conn_id)
        return Signer.from_text(conn.password if conn else None, origin=f"connection {self.key_conn_id!r}")

    @cached_property
    def store(self) -> Any:
        from airflow_reconcile.core.audit import AuditStore

        return AuditStore(self.url(), self.signer())

    def get_conn(self) -> Any:
        return self.store


LOCAL_EXECUTORS = ("LocalExecutor", "SequentialExecutor", "DebugExecutor")


def remote_executors() -> list[str]:
    """The configured executors (``[core] executor``, a comma-separated list in Airflow 3) that run
    tasks on other hosts than the scheduler's: Celery, Kubernetes, Edge, ..."""
    from airflow.configuration import conf

    names = [entry.strip() for entry in str(conf.get("core", "executor", fallback="LocalExecutor")).split(",")]
    classes = [name.split(":")[-1].rsplit(".", 1)[-1] for name in names if name]
    return [name for name in classes if name not in LOCAL_EXECUTORS]


def sqlalchemy_url(conn: Any) -> str:
    """A connection's SQLAlchemy URL: ``extra.sqlalchemy_url``, a sqlite file, or the connection URI."""
    extra = conn.extra_dejson
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    if conn.conn_type == "sqlite":
        path = conn.host or conn.schema  # sqlite:////srv/x.db gives the path as the URI's path (schema)
        if not path:
            raise ReconcileError(f"connection {conn.conn_id!r} (type sqlite): set host to the database file's path")
        return f"sqlite:///{absolute(path)}"
    uri = str(conn.get_uri())
    for scheme in ("postgres://", "postgresql://"):
        if uri.startswith(scheme):  # psycopg 3 is the driver this package ships with
            return "postgresql+psycopg://" + uri[len(scheme) :]
    return uri


def _required_connection(conn_id: str) -> Any:
    conn = _connection_or_none(conn_id)
    if conn is None:
        raise SourceError(f"Airflow connection {conn_id!r} does not exist; create it or fix connection_id")
    return conn


def workspace_path(uri: str) -> Any:
    """The Airflow layer's workspace opener (``core.workspace``): a local path as a :class:`~pathlib.Path`,
    any other URL as Airflow's ``ObjectStoragePath``, whose filesystem is built from the Airflow connection
    named in the URL (``s3://aws_conn@bucket/prefix``; without one, the scheme's default credentials)."""
    from airflow_reconcile.core.workspace import is_local, storage_path

    if is_local(uri):
        return storage_path(uri)
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri)


def storage_options(conn_id: str) -> dict[str, Any]:
    """fsspec storage options for file sources on object storage: the connection's ``extra.storage_options``,
    plus login/password as ``key``/``secret`` (the names s3fs and most fsspec filesystems use)."""
    conn = _required_connection(conn_id)
    options = dict(conn.extra_dejson.get("storage_options") or {})
    if conn.login:
        options.setdefault("key", conn.login)
    if conn.password:
        options.setdefault("secret", conn.password)
    return options


def http_connection(conn_id: str) -> dict[str, Any]:
    """Base URL and headers for http sources: host (with schema/port) and a bearer token in the password."""
    conn = _required_connection(conn_id)
    headers = dict(conn.extra_dejson.get("headers") or {})
    if conn.password:
        headers["Authorization"] = f"Bearer {conn.password}"
    return {"base_url": base_url(conn), "headers": headers}


def _jira_executor(spec: Spec) -> ActionExecutor:
    executor: ActionExecutor = catalog.executor_class("jira")(
        JiraClientHook(spec.targets.jira.connection_id).get_conn(RetryPolicy.of(spec)),
        allow_closures=spec.limits.allow_closures,
    )
    return executor


def slack_client(conn_id: str) -> Any:
    """A ``slack_sdk`` WebClient from the Slack connection, with no retry handlers of its own.

    slack_sdk's default handler sends a request again after a connection error, so a post whose reply
    was lost would be posted twice; every retry goes through the package's retry policy instead, whose
    every try looks for the message first (``SlackExecutor.post_once``).
    """
    from airflow.providers.slack.hooks.slack import SlackHook

    guard_secrets(BaseHook.get_connection(conn_id))
    return SlackHook(slack_conn_id=conn_id, retry_handlers=[]).client


def _slack_executor(spec: Spec) -> ActionExecutor:
    client = slack_client(spec.targets.slack.connection_id)
    executor: ActionExecutor = catalog.executor_class("slack")(client, spec.targets.slack.digest_channel)
    return executor


# How each target's executor gets its client from an Airflow connection (the core's catalog says what
# the target and its actions are; this is the one thing about a target that needs Airflow).
_CLIENTS: dict[str, Callable[[Spec], ActionExecutor]] = {"jira": _jira_executor, "slack": _slack_executor}


def register_client(target: str, build: Callable[[Spec], ActionExecutor]) -> None:
    """Build ``target``'s executor (with its client from a connection) for a spec; wins over a built-in."""
    _CLIENTS[target] = build


class LazyExecutors(Mapping[str, "ActionExecutor"]):
    """Executors for the spec's targets, each built from its Airflow connection on first use only."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.built: dict[str, ActionExecutor] = {}
        self.lock = threading.Lock()

    @property
    def targets(self) -> list[str]:
        return [name for name in catalog.target_names() if name in _CLIENTS]

    def __getitem__(self, target: str) -> ActionExecutor:
        if target not in self.targets:
            raise KeyError(target)
        with self.lock:
            if target not in self.built:
                self.built[target] = _CLIENTS[target](self.spec)
            return self.built[target]

    def __iter__(self) -> Iterator[str]:
        return iter(self.targets)

    def __len__(self) -> int:
        return len(self.targets)


def _sql_context(conn_id: str, context: Callable[..., SourceContext]) -> SourceContext:
    """A sql source's database: through the connection's own hook where its provider has one with an engine
    (``get_hook().get_sqlalchemy_engine()``: that provider's authentication and options, e.g. IAM tokens),
    else the connection's URL. An explicit ``extra.sqlalchemy_url`` always wins."""
    from airflow_reconcile.provider.compat import hook_registered

    conn = _required_connection(conn_id)
    url = sqlalchemy_url(conn)
    if conn.extra_dejson.get("sqlalchemy_url") or not hook_registered(conn.conn_type):
        return context(connection={"url": url})
    hook = conn.get_hook()
    engine = getattr(hook, "get_sqlalchemy_engine", None)
    if not callable(engine):  # a hook that is no database's (http, ...)
        return context(connection={"url": url})
    return context(connection={"url": url, "hook": type(hook).__name__}, engine_factory=engine)


def _jira_context(conn_id: str | None, context: Callable[..., SourceContext], retry: RetryPolicy) -> SourceContext:
    hook = JiraClientHook(conn_id or JiraClientHook.default_conn_name)
    return context(client_factory=partial(hook.get_conn, retry), connection={"server": hook.server_url()})


# How a source kind reaches its system through an Airflow connection (kind -> builder of its context); a
# source of your own registers its builder with ``register_source_connection``. A kind not listed, or a
# source without connection_id (but jira, whose connection has a default), reads without one.
SOURCE_CONNECTIONS: dict[str, Callable[[str | None, Callable[..., SourceContext], RetryPolicy], SourceContext]] = {
    "jira": _jira_context,
    "sql": lambda conn_id, context, _: _sql_context(str(conn_id), context),
    "file": lambda conn_id, context, _: context(connection={"storage_options": storage_options(str(conn_id))}),
    "http": lambda conn_id, context, _: context(connection=http_connection(str(conn_id))),
}
NEEDS_NO_CONNECTION_ID = frozenset({"jira"})  # its connection has a default name


def register_source_connection(
    kind: str, build: Callable[[str | None, Callable[..., SourceContext], RetryPolicy], SourceContext]
) -> None:
    """How sources of ``kind`` get their connection: ``build(connection_id, context, retry)`` returns the
    ``SourceContext`` (call ``context(connection=..., client_factory=...)``)."""
    SOURCE_CONNECTIONS[kind] = build


def source_context(spec_path: str, source: SourceSpec, log: Any, retry: RetryPolicy) -> SourceContext:
    """Credentials for a source come from its Airflow connection, never from the spec."""
    from airflow_reconcile.core.sources import SourceContext

    context = partial(SourceContext, origin=spec_path, progress=log.info, retry=retry)
    build = SOURCE_CONNECTIONS.get(source.kind)
    if build is None or (not source.connection_id and source.kind not in NEEDS_NO_CONNECTION_ID):
        return context()
    return build(source.connection_id, context, retry)
