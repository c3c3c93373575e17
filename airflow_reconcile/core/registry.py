"""One shape for every extension point: named entries, built-ins loaded on first use, user entries first.

Sources (``sources.base``), target systems (``catalog``) and condition operators (``conditions``) are
each a ``Registry``: the built-ins are given as objects or as ``"module:attribute"`` paths imported
when first asked for (so a spec that never names Jira never imports the Jira client); ``register``
adds a user entry, which wins over a built-in of the same name; ``unregister`` removes it again (the
built-in, if any, comes back).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any, Generic, TypeVar

from airflow_reconcile.core.errors import ReconcileError

T = TypeVar("T")


class Registry(Generic[T]):
    """``what`` names an entry in errors ("source kind"), ``plural`` the list of them ("kinds")."""

    def __init__(
        self,
        what: str,
        plural: str,
        builtin: Mapping[str, T | str],
        *,
        error: type[ReconcileError] = ReconcileError,
        load: Callable[[Any], T] = lambda found: found,
    ) -> None:
        self.what, self.plural, self.error, self._load = what, plural, error, load
        self._builtin = dict(builtin)  # documented order
        self._loaded: dict[str, T] = {}
        self._user: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        self._user[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._user.pop(name, None)

    def names(self) -> list[str]:
        """The built-ins in their documented order, then the user's own."""
        return [*self._builtin, *(n for n in self._user if n not in self._builtin)]

    def get(self, name: str) -> T:
        if name in self._user:
            return self._user[name]
        if name not in self._builtin:
            raise self.error(
                f"unknown {self.what} {name!r}; registered {self.plural}: {', '.join(sorted(self.names()))}"
            )
        if name not in self._loaded:
            entry = self._builtin[name]
            if isinstance(entry, str):
                module_name, _, attribute = entry.partition(":")
                entry = getattr(import_module(module_name), attribute)
            self._loaded[name] = self._load(entry)
        return self._loaded[name]

    def entries(self) -> dict[str, T]:
        return {name: self.get(name) for name in self.names()}
