"""One redaction step for every error text that leaves a try.

An error a client raises can carry what must never be stored: python-jira's ``JIRAError`` prints the
request's and the response's headers (``Authorization``, ``Set-Cookie: JSESSIONID=...``), a
requests error prints the URL (which may hold ``user:password@`` or ``?token=...``), a driver error
may print a connection string. Every text that reaches the ledger, the audit trail, the plugin, a
task log line of ours or the lineage goes through ``redact`` (or ``error_text`` for an exception)
first; the sinks (``Ledger.finish``, ``AuditStore.append``) apply it again, so a new caller that
forgets cannot leak.

The connections' own secret values are masked wherever they appear: the hooks ``remember`` them
when they read a connection (and register them with Airflow's secrets masker for its logs).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "***"
MAX_ERROR_CHARS = 2000
_MIN_SECRET = 4  # shorter values ("a", "no") would mask ordinary words

_known: set[str] = set()
_lock = threading.Lock()

# A name that holds a secret: the header and parameter names clients print (Authorization, Cookie), and any
# name with token, secret, password, api key or credential in it (X-Atlassian-Token, X-Vault-Token, api_token,
# client_secret, aws_secret_access_key, private_key, sessionid...).
_SECRET_NAMES = (
    r"authorization|proxy-authorization|cookie|set-cookie|pwd|sessionid|session_id|signature|sig"
    r"|[\w-]{0,40}(?:token|secret|passw(?:or)?d|api[-_]?key|apikey|private[-_]?key|credentials?)[\w-]{0,40}"
)
# A header dump as python-jira prints it: one line per dump, dropped whole (headers, request bodies).
_DUMP_LINE = re.compile(r"(?im)^[ \t]*(?:request|response)[ \t]+(?:headers|text)[ \t]*=.*$\n?")
# 'Name': 'value' / "Name": "value" (dict reprs and JSON)
_QUOTED = re.compile(rf"(?i)(['\"])({_SECRET_NAMES})\1(\s*[:=]\s*)(['\"])((?:\\.|(?!\4)[^\\\n])*)(\4|$)", re.MULTILINE)
# Name='value' / name="value" (a driver's DSN: password='s3 cret'), quoted values that may hold spaces and
# escaped characters (a value ending in a backslash: 'ab\\'); a quote never closed (a cut message): to the line's end
_ASSIGNED_QUOTED = re.compile(
    rf"(?i)(?<![\w-])({_SECRET_NAMES})(\s*[:=]\s*)(['\"])(?!\*\*\*)((?:\\.|(?!\3)[^\\\n])*)(\3|$)", re.MULTILINE
)
# Name: value / Name=value in free text or header lines, up to the end of the line (or a separator)
_PLAIN = re.compile(rf"(?i)(?<![\w-])({_SECRET_NAMES})(\s*[:=]\s*)(?!\*\*\*)([^\s,;&'\"}}]+)")
# A cookie header carries several name=value pairs: everything up to the end of the line goes.
_COOKIE_LINE = re.compile(r"(?im)(?<![\w-])((?:set-)?cookie)(\s*:\s*)[^\r\n'\"]+")
_SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|basic|token|bot)\s+([A-Za-z0-9._~+/=-]{8,})")
# user:password@host — the password up to the last @ before the host (a password may hold @ itself)
_URL_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]*):([^\s/'\"]+)@(?=[^@\s/'\"]*(?:[/?#\s'\"]|$))")
_SLACK_TOKEN = re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+")


def remember(*values: object) -> None:
    """Secret values to mask in every later ``redact`` (a connection's password, token, header values)."""
    with _lock:
        _known.update(str(v) for v in values if v is not None and len(str(v)) >= _MIN_SECRET)


def redact(text: object, *, secrets: Iterable[str] = (), limit: int = MAX_ERROR_CHARS) -> str | None:
    """``text`` with header dumps dropped, credentials masked and its length capped at ``limit``."""
    if text is None:
        return None
    # Only what can be kept is searched (the rest is cut anyway): a huge text costs no more than a long one.
    out = _DUMP_LINE.sub("", str(text)[: limit * 4])
    out = _QUOTED.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{MASK}{m[6]}", out)
    out = _URL_USERINFO.sub(rf"\1:{MASK}@", out)
    out = _SCHEME_TOKEN.sub(rf"\1 {MASK}", out)
    out = _COOKIE_LINE.sub(rf"\1\2{MASK}", out)
    out = _ASSIGNED_QUOTED.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{MASK}{m[5]}", out)
    out = _PLAIN.sub(rf"\1\2{MASK}", out)
    out = _SLACK_TOKEN.sub(f"xox?-{MASK}", out)
    with _lock:
        values = {*_known, *(s for s in secrets if s and len(s) >= _MIN_SECRET)}
    for value in sorted(values, key=len, reverse=True):  # a secret that contains another goes first
        out = out.replace(value, MASK)
    out = out.rstrip()
    if len(out) > limit:
        out = f"{out[:limit]}... ({len(out) - limit} more characters)"
    return out


def error_text(exc: BaseException, *, limit: int = MAX_ERROR_CHARS) -> str:
    """``Type: message`` of an exception, redacted. A client error that carries an HTTP response is
    told by its status, URL and the server's message, never by its request or response dump."""
    status = getattr(exc, "status_code", None)
    text = getattr(exc, "text", None)
    if isinstance(status, int) and isinstance(text, str):  # python-jira's JIRAError (its str dumps headers)
        url = getattr(exc, "url", None)
        message = f"HTTP {status}{f' {url}' if url else ''}: {text}"
    else:
        message = str(exc)
    return redact(f"{type(exc).__name__}: {message}" if message else type(exc).__name__, limit=limit) or ""
