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
    """(``(side, column)`` pairs, what else the template names) a template reads; raises Jinja's syntax error.

    Anything but ``desired.<column>`` / ``actual.<column>`` is in the second part: another name, a Jinja
    global (``range``, ``lipsum``, ``self``...), and a side named whole (``{{ desired }}`` would render the
    whole row) or with a computed column. Names the template sets itself (a ``for`` or ``set``) are its own.
    """
    from jinja2 import nodes

    tree = template_env().parse(text)
    pairs: list[tuple[str, str]] = []
    bases: set[int] = set()  # the Name nodes that are read as side.<column>
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node
        if isinstance(base, nodes.Name) and base.name in TEMPLATE_NAMES:
            if isinstance(node, nodes.Getattr):
                pairs.append((base.name, node.attr))
                bases.add(id(base))
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                pairs.append((base.name, node.arg.value))
                bases.add(id(base))
    names = list(tree.find_all(nodes.Name))
    own = {n.name for n in names if n.ctx in ("store", "param")}
    others = {n.name for n in names if n.ctx == "load" and n.name not in TEMPLATE_NAMES and n.name not in own}
    others |= {f"{n.name} (a whole side: name one column, {n.name}.<column>)" for n in names
               if n.ctx == "load" and n.name in TEMPLATE_NAMES and id(n) not in bases}  # fmt: skip
    return tuple(pairs), tuple(sorted(others))
