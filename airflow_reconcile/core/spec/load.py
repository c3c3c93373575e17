"""Reading a spec file: the checked ``Spec`` (its fields, and every column it names declared) and the
loaders that give each error its file and line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.spec.columns import problems
from airflow_reconcile.core.spec.model import SpecModel, _fail_all


# A reconciliation spec, checked: its fields (SpecModel) and that every column it names is declared for
# its side (columns.problems). No docstring: it would become the JSON Schema's description.
class Spec(SpecModel):
    @model_validator(mode="after")
    def _columns_declared(self) -> Spec:
        _fail_all(problems(self))
        return self


# A spec is a page or two of YAML (the example: 5 KB). Parsing is pure Python, about 0.6 s per MB and
# pass: a cap keeps a stray or hostile file from stalling the DAG processor, which parses every spec.
MAX_SPEC_BYTES = 256 * 1024


def _too_big(size: int, origin: str) -> SpecError:
    return SpecError(
        f"{origin}: the spec is {size:,} bytes; a spec may be at most {MAX_SPEC_BYTES:,} bytes. Is this the right "
        "file? Split a very large reconciliation into several specs"
    )


def _line_of(node: Any, loc: tuple[int | str, ...]) -> int | None:
    """Line (1-based) of the YAML node at ``loc`` (under the composed document ``node``), or of its
    closest existing parent."""
    best: int | None = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = None
            for key_node, value_node in node.value:
                if key_node.value == part:
                    found = (key_node, value_node)
                    break
            if found is None:
                break
            best = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            break
    return best


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    if error["type"] in ("literal_error", "enum"):
        allowed = error.get("ctx", {}).get("expected", "")
        return f"{error['input']!r} is not one of {allowed.replace(chr(39), '').replace(' or ', ', ')}"
    if error["type"] == "extra_forbidden":
        return "unknown field; remove it or check its spelling"
    if error["type"] == "missing":
        return "required field is missing"
    return str(error["msg"]).removeprefix("Value error, ")


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML, stricter: a key given twice is an error naming both lines (never "last one wins"),
    and aliases are refused (a few lines of anchors must not expand into a huge document)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem=f"alias *{event.anchor} is not allowed in a spec; write the value out where it is used",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.MarkedYAMLError(
                        problem=f"{key!r} is given twice in one mapping (lines {seen[key]} and {line}); keep one",
                        problem_mark=key_node.start_mark,
                    )
                if isinstance(key, str | int | float | bool) or key is None:
                    seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_spec(text: str, origin: str = "<spec>") -> Spec:
    """Validate YAML text; errors read ``origin:line: field: what is wrong``."""
    if len(text) > MAX_SPEC_BYTES:  # characters: at least as many bytes
        raise _too_big(len(text.encode()), origin)
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{origin}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{origin}:1: a spec is a YAML mapping with version, name, sources, drift, rules")
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        lines = []
        document = yaml.compose(text, Loader=_SpecLoader)  # it loaded above: composing succeeds
        for error in exc.errors():
            loc = tuple(error["loc"])
            lineno = _line_of(document, loc)
            where = f"{origin}:{lineno}" if lineno else origin
            lines.append(f"{where}: {_field_path(loc)}: {_describe(dict(error))}")
        raise SpecError("\n".join(lines)) from None


def sql_line(path: str | os.PathLike[str], side: str) -> int | None:
    """The spec line of the first line of ``sources.<side>.derive.sql`` (a literal block ``|`` starts on the
    line after its key), or None when the file or the field cannot be read."""
    try:
        document = yaml.compose(spec_text(path), Loader=_SpecLoader)
    except (SpecError, yaml.YAMLError):
        return None
    node = document
    for part in ("sources", side, "derive", "sql"):
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((value for key, value in node.value if key.value == part), None)
    if not isinstance(node, yaml.ScalarNode):
        return None
    return node.start_mark.line + (2 if node.style in ("|", ">") else 1)


def specs_in(directory: str | os.PathLike[str]) -> list[Path]:
    """The spec files of a folder (``*.yaml``), in name order."""
    return sorted(Path(directory).glob("*.yaml"))


def load_specs(directory: str | os.PathLike[str], skipped: Any = None) -> list[Spec]:
    """The valid specs of a folder, in name order. An invalid one is left out and reported to ``skipped``
    (one line naming its file, line and field): its own DAG shows the error, the others are served."""
    specs = []
    for path in specs_in(directory):
        try:
            specs.append(load_spec(path))
        except SpecError as exc:
            if skipped is not None:
                skipped(str(exc))
    return specs


def spec_text(path: str | os.PathLike[str]) -> str:
    """A spec file's text (a ``SpecError`` naming the file when it cannot be read)."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_SPEC_BYTES:  # told before the file is read
            raise _too_big(size, str(path))
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec: {exc.strerror}") from None


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and validate a spec file."""
    return parse_spec(spec_text(path), origin=str(path))


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str, origin: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` at run time (never at DAG parse time)."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise SpecError(f"{origin}: environment variable {name} is not set; set it or write ${{{name}:-default}}")

    return _ENV_RE.sub(repl, value)
