"""Data stays data: escaping for every markup a value from a snapshot is written into.

A value read from a source of record or a target (an owner's name, a ticket summary, a column name)
is untrusted. Where it lands in markup — a Jira comment or description (wiki markup), a Slack
message (mrkdwn), the approval request (Markdown) — it is escaped here, so it can never mention
(``[~admin]``, ``<!channel>``), link (``<http://x|click>``, ``[click|http://x]``, a bare
``http://2130706433/x``, ``www.x.io`` or ``bob@x.io``, which renderers link by themselves), embed
(``!http://x/i.png!``) or format (``*b*``, backticks). Control characters go; a very long value is
cut. The literal text of a spec's template is the spec author's and is not escaped: only the values
it inserts (``{{ desired.owner }}``) are (``airflow_reconcile.core.templates``).

Which param of which action is markup is the action's record (``catalog.ActionRecord.markup``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_VALUE_CHARS = 1000  # one inserted value; a message or comment of many values stays readable

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")  # and bidi overrides
_ZWSP = "\u200b"


def _clean(value: Any, *, newlines: bool) -> str:
    text = _CONTROL.sub("", str(value))
    if not newlines:
        text = " ".join(text.split())
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "…"
    return text


# What makes a bare value a link where it is shown (GitHub-flavoured Markdown's autolinks, Jira's and Slack's
# linking of bare URLs, e-mail addresses and domains): a scheme's "://", "www.", an "@", a dot before a letter.
# A zero-width space after each keeps the text as it reads and makes it no link anywhere.
_LINKABLE = re.compile(r"(?i)(?<=[a-z0-9+.-]:)(?=//)|(?<=\bmailto:)|(?<=\bwww)(?=\.)|(?<=@)|(?<=[\w-]\.)(?=[^\W\d_])")


def unlinked(text: str) -> str:
    """``text`` that no renderer turns into a link (a zero-width space breaks each link-forming spot)."""
    return _LINKABLE.sub(_ZWSP, text)


_MRKDWN_ENTITY = re.compile(r"&(?!(?:amp|lt|gt);)")


# A formatting character that can open or close bold, italics, strike or code: one at a word's edge
# (``snake_case`` inside a word formats nothing and stays as it is, so ids can be copied).
_MRKDWN_EDGE = re.compile(r"(?<![A-Za-z0-9])([*_~`])|([*_~`])(?![A-Za-z0-9])")


def escape_mrkdwn(value: Any) -> str:
    """Slack mrkdwn: ``& < >`` as entities (no mention, channel ping or link can form; an entity
    already escaped stays as it is), a zero-width space after ``* _ ~ ` `` at a word's edge (Slack has
    no escape character: the space stops a value from opening or closing bold, italics, strike or code)."""
    text = mrkdwn_entities(unlinked(_clean(value, newlines=True)))
    return _MRKDWN_EDGE.sub(lambda m: f"{m[0]}{_ZWSP}", text)


def mrkdwn_entities(text: str) -> str:
    """Only ``& < >`` as entities, idempotently: what the Slack executor applies to a whole message
    (values were escaped when the rule rendered them; a message from before that was not)."""
    return _MRKDWN_ENTITY.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_code(value: Any) -> str:
    """A value shown as inline code in mrkdwn (between backticks): entities, no backtick to end the
    span early, and no zero-width spaces (code is not formatted, and is copied as it is)."""
    return mrkdwn_entities(_clean(value, newlines=False).replace("`", "'"))


_WIKI = re.compile(r"([\\\[\]{}!*_~^+\-?|#`@])")
_WIKI_LINE_START = re.compile(r"^(h[1-6]|bq)\.", re.IGNORECASE)


def escape_jira_wiki(value: Any) -> str:
    """Jira wiki markup: every markup character behind a backslash (no mention ``[~user]``, link,
    image ``!url!``, macro ``{code}``, table or text effect), one line (a value cannot start a
    heading or list), and a leading ``h1.`` / ``bq.`` broken by a zero-width space."""
    text = _WIKI.sub(r"\\\1", unlinked(_clean(value, newlines=False)))
    return _WIKI_LINE_START.sub(lambda m: f"{m[1]}{_ZWSP}.", text)


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def escape_markdown(value: Any) -> str:
    """Markdown (the approval request in Airflow's UI): no links, images, HTML or table breaks."""
    return _MARKDOWN.sub(r"\\\1", unlinked(_clean(value, newlines=False)))


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet opens as text, never as a formula: text that begins with ``= + - @`` (or a
    tab or carriage return) gets a leading apostrophe, as OWASP advises; other values stay as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA) and not _NUMBER.match(value):
        return "'" + value
    return value


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # -5, +2.5: numbers, never formulas


ESCAPERS: dict[str, Callable[[Any], str]] = {
    "jira_wiki": escape_jira_wiki,
    "slack_mrkdwn": escape_mrkdwn,
    "markdown": escape_markdown,
}
