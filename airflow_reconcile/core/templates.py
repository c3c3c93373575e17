"""Rule params are Jinja templates over a drift row: the sandbox they render in and what they read.

Only ``desired.<column>`` and ``actual.<column>`` may be named (``TEMPLATE_NAMES``); the spec checks
that when it loads, the column check finds the columns they read, and the rules render them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from airflow_reconcile.core.vocabulary import SIDES

TEMPLATE_NAMES = SIDES  # the only names a rule's params may use


@lru_cache(maxsize=8)
def template_env(markup: str | None = None) -> Any:
    """The sandbox rule params render in: an undefined name is an error, never an empty string, and a
    null value renders empty (never the text ``None``), so the empty-value check sees it.

    ``markup``: the markup the param is rendered into (``core.markup.ESCAPERS``); every value a
    template inserts is escaped for it, the template's own text is not."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from airflow_reconcile.core.markup import ESCAPERS

    escape = ESCAPERS[markup] if markup else str

    def finalize(value: Any) -> str:
        return "" if value is None else escape(value)

    return ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined, finalize=finalize)


@lru_cache(maxsize=1024)
def template_refs(text: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(``(side, column)`` pairs, other top-level names) a template reads; raises Jinja's syntax error."""
    from jinja2 import meta, nodes

    tree = template_env().parse(text)
    pairs: list[tuple[str, str]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node
        if isinstance(base, nodes.Name) and base.name in TEMPLATE_NAMES:
            if isinstance(node, nodes.Getattr):
                pairs.append((base.name, node.attr))
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                pairs.append((base.name, node.arg.value))
    others = sorted(meta.find_undeclared_variables(tree) - set(TEMPLATE_NAMES))
    return tuple(pairs), tuple(others)
