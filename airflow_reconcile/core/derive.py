"""Derived sides: one SELECT over a spec's named inputs, run in process by DuckDB, in a sandbox.

The sandbox (docs/adr/0003): an in-memory database whose only tables are the run's input snapshots,
registered before anything else runs; external access (files, URLs, ``ATTACH``, ``COPY``, extensions) off
and the configuration locked, so no statement can turn it back on; the query must be one ``SELECT``;
threads and memory from ``limits.derive``; interrupted past its time limit. Both the derive task and
``reconcile plan`` / ``reconcile validate`` run it through here.

Importing this module is cheap; DuckDB is imported when a derive runs or is checked.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import ReconcileError

if TYPE_CHECKING:
    from pathlib import Path

    import duckdb
    import pandas as pd
    import pyarrow as pa

    from airflow_reconcile.core.spec import Spec


class DeriveError(ReconcileError):
    """A derive that cannot run: its SQL, what it reads, or what it produces (one line, naming the spec line)."""


@dataclass(frozen=True)
class DeriveLimits:
    threads: int = 2
    memory: str = "1GB"
    seconds: float = 300.0


@dataclass(frozen=True)
class Where:
    """Where a derive's SQL is written: the spec file, the field, and the spec line of the SQL's first line
    (a literal block ``sql: |`` keeps lines, so DuckDB's ``LINE n`` maps to a line of the spec)."""

    origin: str
    field: str
    first_line: int | None = None

    def at(self, sql_line: int | None = None) -> str:
        if self.first_line is None:
            return f"{self.origin}: {self.field}"
        line = self.first_line + (sql_line - 1 if sql_line else 0)
        return f"{self.origin}:{line}: {self.field}" + (f" (line {sql_line} of the SQL)" if sql_line else "")


_LINE_RE = re.compile(r"^LINE (\d+):")


def _message(exc: Exception, where: Where) -> str:
    """DuckDB's message on one line, placed at the spec line its ``LINE n`` points to."""
    text = str(exc)
    sql_line = None
    kept = []
    for line in text.splitlines():
        found = _LINE_RE.match(line.strip())
        if found:
            sql_line = int(found.group(1))
            continue
        if line.strip() and set(line.strip()) != {"^"}:
            kept.append(line.strip())
    said = " ".join(kept) or type(exc).__name__
    return f"{where.at(sql_line)}: {said}"


def _connect(limits: DeriveLimits, files: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory database with the sandbox on before any of the spec's SQL runs: no extension loaded or
    installed, external access off (no file, URL, ATTACH, COPY TO, INSTALL or LOAD) but for the inputs' own
    snapshot ``files`` (DuckDB's ``allowed_paths``: read in place, only the columns the query needs), then the
    configuration locked (no SET or PRAGMA can lift it)."""
    import duckdb

    con = duckdb.connect(
        ":memory:",
        config={
            "threads": limits.threads,
            "memory_limit": limits.memory,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
        },
    )
    try:
        if files:
            con.execute("SET allowed_paths = ?", [list(files)])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _one_select(con: duckdb.DuckDBPyConnection, sql: str, where: Where) -> None:
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise DeriveError(_message(exc, where)) from None
    kinds = [str(s.type).removeprefix("StatementType.") for s in statements]
    if kinds != ["SELECT"]:
        found = ", ".join(kinds) or "nothing"
        raise DeriveError(
            f"{where.at()}: a derive is one SELECT query over its inputs; found {found}. Nothing outside the "
            "inputs can be read or written from it (files, URLs, ATTACH, COPY, INSTALL and LOAD are refused)"
        )


def _as_arrow(frame: pd.DataFrame | pa.Table) -> pa.Table:
    import pyarrow as pa

    return frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)


def run_derive(
    sql: str,
    tables: Mapping[str, pd.DataFrame | pa.Table | str | Path],
    where: Where,
    limits: DeriveLimits = DeriveLimits(),
    progress: Callable[[str], None] = lambda _: None,
) -> pa.Table:
    """The derived table: ``sql`` over ``tables`` (each a table of its input's name: a frame, or the path of
    its Parquet snapshot, which DuckDB reads in place), sandboxed."""
    from pathlib import Path

    import duckdb

    files = {name: str(Path(t).resolve()) for name, t in tables.items() if isinstance(t, str | Path)}
    con = _connect(limits, list(files.values()))
    try:
        _one_select(con, sql, where)
        for name, frame in tables.items():
            if name in files:  # a snapshot file: read in place by the query (allowed_paths), never loaded whole
                path = files[name].replace("'", "''")
                # Never columns from the folder names (a workspace under ".../env=prod/" is no partition).
                con.execute(
                    f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}', hive_partitioning = false)"
                )
            else:
                con.register(name, _as_arrow(frame))
        try:  # bound first: DuckDB's errors then name the line of the SQL
            con.execute("DESCRIBE " + sql).fetchall()
        except duckdb.Error as exc:
            raise DeriveError(_message(exc, where)) from None
        timer = threading.Timer(limits.seconds, con.interrupt)
        timer.start()
        try:
            result = con.sql(sql).to_arrow_table()
        except duckdb.InterruptException:
            raise DeriveError(
                f"{where.at()}: the derive ran longer than limits.derive.seconds ({limits.seconds:g} s) and was "
                "stopped; make the query cheaper or raise the limit"
            ) from None
        except duckdb.OutOfMemoryException as exc:
            raise DeriveError(
                f"{_message(exc, where)} (limits.derive.memory is {limits.memory}: raise it, or reduce the inputs)"
            ) from None
        except duckdb.Error as exc:
            raise DeriveError(_message(exc, where)) from None
        finally:
            timer.cancel()
    finally:
        con.close()
    if result is None:  # a SELECT always has a result
        raise DeriveError(f"{where.at()}: the derive returned no result; it must be one SELECT query")
    result = _integers_as_integers(result)
    progress(f"derived {result.num_rows} rows x {result.num_columns} columns from {', '.join(tables)}")
    return result


def _integers_as_integers(table: pa.Table) -> pa.Table:
    """DuckDB's ``sum`` of integers is a HUGEINT, which reaches Arrow as ``decimal128(38, 0)`` and pandas as
    Python ``Decimal`` objects (exact, but slow to diff): a scale-0 decimal column whose values fit in 64 bits
    becomes ``int64``; one that does not fit stays exact."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type) and field.type.scale == 0:
            try:
                column = table.column(index).cast(pa.int64())  # safe: refuses values out of range
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            table = table.set_column(index, pa.field(field.name, pa.int64()), column)
    return table


def describe(sql: str, columns: Mapping[str, list[str]], where: Where) -> list[str] | None:
    """The columns ``sql`` would produce over inputs with the given columns, found without running it (the
    inputs are empty tables of untyped values). None when DuckDB cannot tell without the inputs' types (the
    run checks the result); a syntax error, or a table or column that does not exist, is a ``DeriveError``."""
    import duckdb

    con = _connect(DeriveLimits(threads=1, memory="256MB"))
    try:
        _one_select(con, sql, where)
        for name, names in columns.items():
            listed = ", ".join(f'NULL AS "{c.replace(chr(34), chr(34) * 2)}"' for c in names)
            con.execute(f'CREATE VIEW "{name}" AS SELECT {listed} WHERE false')
        try:
            return [str(row[0]) for row in con.execute("DESCRIBE " + sql).fetchall()]
        except (duckdb.CatalogException, duckdb.PermissionException) as exc:  # no such table; outside the sandbox
            raise DeriveError(_message(exc, where)) from None
        except duckdb.BinderException as exc:
            if any(words in str(exc) for words in ("not found", "does not exist", "does not have a column")):
                raise DeriveError(_message(exc, where)) from None
            return None  # a type question (an untyped NULL column): answered by the run
        except duckdb.Error:
            return None
    finally:
        con.close()


def spec_limits(spec: Spec) -> DeriveLimits:
    derive = spec.limits.derive
    return DeriveLimits(threads=derive.threads, memory=derive.memory, seconds=derive.seconds)


def spec_where(spec_path: str, side: str) -> Where:
    """Where ``sources.<side>.derive.sql`` is in the spec file (its first line, when it can be read)."""
    from airflow_reconcile.core.spec.load import sql_line

    return Where(spec_path, f"sources.{side}.derive.sql", sql_line(spec_path, side))


def check_derive(spec: Spec, spec_path: str, side: str) -> list[str]:
    """``reconcile validate``'s check of a derived side: the SQL parses, is one SELECT, reads only its
    inputs' declared columns, and produces every column the diff and the rules use there (when every input
    it reads lists its columns). Returns notes (what could not be checked without data)."""
    from airflow_reconcile.core.spec.columns import gate_columns

    derive = spec.derive_of(side)
    assert derive is not None
    where = spec_where(spec_path, side)
    inputs = spec.input_specs()
    open_inputs = [name for name in derive.inputs if inputs[name].columns is None]
    declared = {name: list(dict.fromkeys([*inputs[name].key, *(inputs[name].columns or [])])) for name in derive.inputs}
    if open_inputs:
        describe_syntax_only(derive.sql, where)
        return [f"{where.at()}: columns not checked before a run: input(s) {', '.join(open_inputs)} list no columns"]
    produced = describe(derive.sql, declared, where)
    if produced is None:
        return [f"{where.at()}: columns not checked before a run: DuckDB needs the inputs' types to bind this query"]
    side_decl = spec.side(side)
    needed = [*side_decl.key, *(side_decl.columns or []), *gate_columns(spec, side)]
    missing = [c for c in dict.fromkeys(needed) if c not in produced]
    if missing:
        raise DeriveError(
            f"{where.at()}: the derive produces no column {', '.join(map(repr, missing))}, which the spec uses for "
            f"sources.{side} (key, columns, drift.compare or the rules); it produces {', '.join(produced) or 'none'}"
        )
    return []


def describe_syntax_only(sql: str, where: Where) -> None:
    """The SQL parses and is one SELECT (nothing about its tables)."""
    con = _connect(DeriveLimits(threads=1, memory="64MB"))
    try:
        _one_select(con, sql, where)
    finally:
        con.close()


def derive_frame(
    spec: Spec, spec_path: str, side: str, tables: Mapping[str, Any], progress: Callable[[str], None]
) -> pd.DataFrame:
    """A derived side as the diff reads it: the derive's result, its declared columns kept (``finish``)."""
    from airflow_reconcile.core.sources.base import finish

    derive = spec.derive_of(side)
    assert derive is not None
    where = spec_where(spec_path, side)
    table = run_derive(derive.sql, {n: tables[n] for n in derive.inputs}, where, spec_limits(spec), progress)
    return finish(table.to_pandas(), spec.side(side), f"the derive of sources.{side}", where.at())
