"""``reconcile``: command-line tools that run without Airflow.

Exit codes: 0 ok, 1 a finding (drift, broken chain), 2 an error in the input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import ReconcileError
from airflow_reconcile.core.redact import redact
from airflow_reconcile.core.vocabulary import DRIFT, DagId, DriftKind

if TYPE_CHECKING:
    from airflow_reconcile.core.drift import DriftReport


def _validate(args: argparse.Namespace) -> int:
    from airflow_reconcile.core.spec import load_spec

    failed = False
    for path in args.specs:
        try:
            spec = load_spec(path)
            notes = _check_derives(spec, path)
        except ReconcileError as exc:
            print(exc, file=sys.stderr)
            failed = True
        else:
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            print(f"{path}: ok ({spec.dag_id}, policy version {spec.policy_version})")
    return 2 if failed else 0


def _check_derives(spec: Any, path: str) -> list[str]:
    """A derived side's SQL, checked as far as it can be without data (DuckDB is imported only for it)."""
    if not any(spec.derive_of(side) for side in ("desired", "actual")):
        return []
    from airflow_reconcile.core.derive import check_derive

    return [note for side in ("desired", "actual") if spec.derive_of(side) for note in check_derive(spec, path, side)]


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ReconcileError(f"{flag} {item!r}: write {'NAME=FILE' if flag == '--input' else 'COLUMN=VALUE'}")
        out[name.strip()] = value.strip()
    return out


def _columns(given: str | list[str] | None) -> list[str] | None:
    """Columns from a comma-separated option, given once or repeated (``--compare a --compare b,c``)."""
    texts = [given] if isinstance(given, str) else list(given or [])
    columns = [c.strip() for text in texts for c in text.split(",") if c.strip()]
    return list(dict.fromkeys(columns)) or None


def report_table(report: DriftReport, desired: str, actual: str, key: list[str]) -> str:
    """The human summary `reconcile diff` prints by default."""
    lines = [
        f"desired: {desired} ({report.desired_rows} rows)",
        f"actual:  {actual} ({report.actual_rows} rows)",
        f"key:     {', '.join(key)}",
        "",
        f"{'missing':<16}{report.missing:>10}   in desired, not in actual",
        f"{'unexpected':<16}{report.unexpected:>10}   in actual, not in desired",
        f"{'changed':<16}{report.changed:>10}",
        f"{'unchanged':<16}{report.unchanged:>10}",
        f"{'duplicate keys':<16}{sum(report.duplicate_keys.values()):>10}   "
        f"desired {report.duplicate_keys['desired']}, actual {report.duplicate_keys['actual']}",
        f"{'null keys':<16}{sum(report.null_keys.values()):>10}   "
        f"desired {report.null_keys['desired']}, actual {report.null_keys['actual']}",
    ]
    changed = {c: n for c, n in report.columns.items() if n}
    if changed:
        lines += ["", "changed per column:"]
        width = max(len(c) for c in changed)
        lines += [f"  {c:<{width}}  {n:>8}" for c, n in sorted(changed.items(), key=lambda kv: (-kv[1], kv[0]))]
    if report.near_key_hint:
        lines += ["", f"hint: {report.near_key_hint}"]
    return "\n".join(lines)


OUTPUT_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}


def _diff_options(args: argparse.Namespace, frames: dict[str, Any]) -> dict[str, Any]:
    """Every option of ``reconcile diff`` checked against the files: unknown steps or columns are errors."""
    from typing import get_args

    from airflow_reconcile.core.values import NormalizeStep, Tolerance

    column_map = _pairs(args.column_map, "--column-map")
    desired, actual = frames["desired"], frames["actual"]
    has = {"desired": list(map(str, desired.columns)), "actual": list(map(str, actual.columns))}

    def check(flag: str, column: str, sides: tuple[str, ...] = ("desired", "actual")) -> None:
        for side in sides:
            name = column_map.get(column, column) if side == "actual" else column
            if name not in has[side]:
                path = args.desired if side == "desired" else args.actual
                raise ReconcileError(f"{flag} {column}: {path} has no column {name!r}; it has {', '.join(has[side])}")

    for name, value in column_map.items():
        check("--column-map", name, ("desired",))
        if value not in has["actual"]:
            raise ReconcileError(
                f"--column-map {name}={value}: {args.actual} has no column {value!r}; it has {', '.join(has['actual'])}"
            )
    key = _columns(args.key) or []
    if not key:
        raise ReconcileError(f"--key {','.join(args.key)!r}: give one or more key columns, comma-separated")
    for column in key:
        check("--key", column)
    steps_allowed = get_args(NormalizeStep)
    normalize = {}
    for column, text in _pairs(args.normalize, "--normalize").items():
        steps = [step.strip() for step in text.split(",") if step.strip()]
        unknown = [step for step in steps if step not in steps_allowed]
        if unknown or not steps:
            raise ReconcileError(
                f"--normalize {column}={text}: unknown step {', '.join(unknown) or '(none)'}; "
                f"steps are {', '.join(steps_allowed)}"
            )
        check("--normalize", column)
        normalize[column] = steps
    tolerances = {}
    for column, text in _pairs(args.tolerance, "--tolerance").items():
        check("--tolerance", column)
        tolerances[column] = Tolerance.parse(text)
    for flag, text in (("--compare", args.compare), ("--exclude", args.exclude)):
        for column in _columns(text) or []:
            check(flag, column, ("desired",) if flag == "--exclude" else ("desired", "actual"))
    compare, exclude = _columns(args.compare), _columns(args.exclude) or []
    for column in compare or []:
        if column in key:
            raise ReconcileError(f"--compare {column}: it is the key (--key); rows are matched by it, never compared")
        if column in exclude:
            raise ReconcileError(f"--compare {column} --exclude {column}: give a column to one of them")
    zone = None
    if args.timezone:
        from airflow_reconcile.core.spec.model import check_time_zone

        try:
            zone = check_time_zone(args.timezone)
        except ValueError as exc:
            raise ReconcileError(f"--timezone: {exc}") from None
    return {"key": key, "normalize_steps": normalize, "tolerances": tolerances, "column_map": column_map,
            "compare": compare, "exclude": exclude,
            "timezones": {"desired": zone, "actual": zone}}  # fmt: skip


def _output_format(output: str) -> str:
    """The format ``--output``'s suffix names (``.parquet``, ``.csv``, ``.jsonl``)."""
    from pathlib import Path

    fmt = OUTPUT_FORMATS.get(Path(output).suffix.lower())
    if fmt is None:
        raise ReconcileError(f"--output {output}: end the name with one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def _write_rows(rows: Any, output: str) -> None:
    """The row-level report in the format the file name says."""
    fmt = _output_format(output)
    try:
        if fmt == "parquet":
            rows.to_parquet(output, index=False)
        elif fmt == "csv":
            from airflow_reconcile.core.markup import spreadsheet_cell

            rows.astype(object).map(spreadsheet_cell).to_csv(output, index=False)
        else:
            rows.to_json(output, orient="records", lines=True, force_ascii=False)
    except OSError as exc:
        raise ReconcileError(f"--output {output}: cannot write: {exc.strerror or exc}") from None


def drifting_rows(rows: Any, key: list[str], limit: int) -> list[str]:
    """The first ``limit`` drifting rows as ``key  kind  column: before -> after`` lines."""
    from airflow_reconcile.core.drift import row_changes, row_entity

    lines = []
    for row in rows.head(limit).to_dict("records"):
        kind = row["drift_kind"]
        if kind == DriftKind.CHANGED:
            changes = "; ".join(f"{c}: {before} -> {after}" for c, before, after in row_changes(row))
        else:
            changes = {DriftKind.MISSING: "in desired only", DriftKind.UNEXPECTED: "in actual only"}.get(
                kind, f"{row['side']} side"
            )
        lines.append(f"  {row_entity(row, key)}  {kind}  {changes}")
    return lines


def _diff(args: argparse.Namespace) -> int:
    import json

    from airflow_reconcile.core.drift import detect_drift
    from airflow_reconcile.core.sources.files import read_file

    if args.show is not None and args.show < 0:
        raise ReconcileError(f"--show {args.show}: give a number of rows, 0 or more")
    if args.show and args.format == "json":
        raise ReconcileError("--show lists rows in the table output; with --format json use --output FILE.jsonl")
    if args.output:  # a bad output name is an error before any work
        _output_format(args.output)
    read_options = _read_options(args)
    frames = {
        side: read_file(path, **read_options) for side, path in (("desired", args.desired), ("actual", args.actual))
    }
    options = _diff_options(args, frames)
    key = options.pop("key")
    report, rows = detect_drift(frames["desired"], frames["actual"], key, options.pop("compare"), **options)
    if args.output:
        _write_rows(rows, args.output)
    if args.format == "json":
        print(json.dumps({k: v for k, v in report.to_dict().items() if k != "sample"}, sort_keys=True))
    else:
        print(report_table(report, args.desired, args.actual, key))
        if args.show:
            drifting = rows[rows["drift_kind"].isin(DRIFT)]
            lines = drifting_rows(drifting, key, args.show)
            print(f"\nfirst {len(lines)} of {len(drifting)} drifting rows (actual -> desired):")
            print("\n".join(lines) if lines else "  (none)")
    drift = report.missing + report.unexpected + report.changed
    key_problems = sum(report.duplicate_keys.values()) + sum(report.null_keys.values())
    if key_problems and not drift:
        print(f"note: {key_problems} row(s) with a repeated or empty key are reported apart from drift "
              "(--fail-on-key-problems makes them exit 1)", file=sys.stderr)  # fmt: skip
    return 1 if drift or (key_problems and args.fail_on_key_problems) else 0


def _read_options(args: argparse.Namespace) -> dict[str, Any]:
    """CSV options of ``diff`` and ``plan`` (delimiter, encoding, dates), as the file source takes them."""
    out: dict[str, Any] = {}
    if getattr(args, "delimiter", None):
        out["delimiter"] = args.delimiter.encode().decode("unicode_escape")
    if getattr(args, "encoding", None):
        out["encoding"] = args.encoding
    if getattr(args, "date_columns", None):
        out["date_columns"] = _columns(args.date_columns)
    if getattr(args, "date_format", None):
        out["date_format"] = args.date_format
    if getattr(args, "na_values", None):
        out["na_values"] = _columns(args.na_values)
    return out


def _plan(args: argparse.Namespace) -> int:
    import json
    from datetime import datetime

    from airflow_reconcile.core.pipeline import plan_locally, plan_table
    from airflow_reconcile.core.spec import load_spec

    if args.limit < 0:
        raise ReconcileError(f"--limit {args.limit}: give a number of actions to list, 0 or more")
    now = None
    if args.now:
        try:
            now = datetime.fromisoformat(args.now)
        except ValueError:
            raise ReconcileError(
                f"--now {args.now!r}: write an ISO 8601 time, e.g. 2026-11-26T09:00:00+00:00"
            ) from None
        if now.tzinfo is None:
            raise ReconcileError(f"--now {args.now!r}: give a time zone, e.g. 2026-11-26T09:00:00+00:00")
    spec = load_spec(args.spec)
    for item in args.conn:  # where Airflow itself takes connections from (the secrets backends come after it)
        name, sep, uri = item.partition("=")
        if not sep or not name.strip() or not uri.strip():
            raise ReconcileError(
                f"--conn {item.split('=')[0]!r}...: write NAME=URI (an Airflow connection URI or JSON)"
            )
        os.environ[f"AIRFLOW_CONN_{name.strip().upper()}"] = uri.strip()
    _check_derives(spec, args.spec)
    result = plan_locally(spec, args.spec, args.desired, args.actual, now=now, read_options=_read_options(args),
                          contexts=_source_contexts(args.spec, spec), inputs=_pairs(args.input, "--input"),
                          keys=_columns(args.keys))  # fmt: skip
    if args.format == "json":
        plan = None if result.plan is None else result.plan.astype(object).where(result.plan.notna(), None)
        print(json.dumps({
            "spec": spec.name, "policy_version": spec.policy_version, "mode": spec.mode, "stale": result.stale,
            "guard": result.guard,
            "scope": None if result.scope is None else {**result.scope.to_dict(), "reads": result.scope_reads,
                                                         "unmatched": result.scope_unmatched},
            "quality": {side: q.to_dict() for side, q in result.quality.items()},
            "drift": None if result.report is None else {
                k: v for k, v in result.report.to_dict().items() if k != "sample"},
            "summary": None if result.summary is None else result.summary.to_dict(),
            "actions": [] if plan is None else plan.to_dict("records"),
        }, sort_keys=True, default=str))  # fmt: skip
    else:
        print(plan_table(result, limit=args.limit))
    if result.blocked:
        return 2
    return 1 if result.summary is not None and (result.summary.actions or result.summary.unhandled) else 0


def _source_contexts(spec_path: str, spec: Any) -> Any:
    """How ``reconcile plan`` reaches a source that needs a connection: as a task does, through the Airflow
    layer (AIRFLOW_CONN_* variables, ``--conn``, a configured secrets backend). Airflow is imported only
    when a side needs it."""

    def context(source: Any) -> Any:
        import logging

        from airflow_reconcile.core.retry import RetryPolicy
        from airflow_reconcile.provider.hooks import source_context

        # Importing Airflow sends every log line to stdout: the plan (and its JSON) owns stdout, warnings go
        # to stderr.
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)  # libraries set their own loggers' levels (GX: info)
        root.addHandler(handler)
        from airflow.exceptions import AirflowNotFoundException

        input_name = next((n for n, s in spec.input_specs().items() if s == source), "desired")
        field, flag = ((f"sources.{input_name}", f"--{input_name} FILE") if input_name in ("desired", "actual")
                       else (f"inputs.{input_name}", f"--input {input_name}=FILE"))  # fmt: skip
        try:
            return source_context(spec_path, source, logging.getLogger("reconcile.plan"), RetryPolicy.of(spec))
        except AirflowNotFoundException:
            name = source.connection_id or "reconcile_jira"
            raise ReconcileError(
                f"{spec_path}: {field} reads through the Airflow connection {name!r}, which is not defined "
                f"here: give --conn {name}=URI (or set AIRFLOW_CONN_{name.upper()}), or {flag} with a "
                "snapshot of it (CSV, Parquet, JSON or JSON Lines)"
            ) from None

    return context


def spec_schema() -> str:
    """The JSON Schema of a spec (committed as docs/spec.schema.json for editors)."""
    import json

    from airflow_reconcile.core.spec import Spec

    schema = Spec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "airflow-reconcile spec (version 1)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(spec_schema())
    return 0


def _broken_link(store: Any, broken: int | None) -> str:
    """The first record whose hash does not follow from its predecessor, named as a task try."""
    row = next((r for r in store.records() if r["id"] == broken), None)
    where = f" ({row['dag_id']} / {row['run_id']} / {row['task_id']} try {row['try_number']})" if row else ""
    return (
        f"audit chain broken at record {broken}{where}: it, or the record before it, was changed or removed "
        "after it was written"
    )


AUDIT_URL_ENV = "RECONCILE_AUDIT_URL"
AUDIT_KEY_ENV = "RECONCILE_AUDIT_KEY"


def _audit_location(args: argparse.Namespace) -> tuple[str, Any]:
    """(the audit store's URL, its signer) from ``--conn-id`` (an Airflow connection and its ``_key``
    connection), ``RECONCILE_AUDIT_URL`` / ``RECONCILE_AUDIT_KEY``, or ``--url``: the first two keep a
    password off the command line, where other users of the host can read it."""
    import os

    from airflow_reconcile.core.integrity import Signer

    key = os.environ.get(AUDIT_KEY_ENV)
    if getattr(args, "conn_id", None):
        try:
            from airflow_reconcile.provider.hooks import AuditStoreHook
        except ImportError:
            raise ReconcileError("--conn-id needs Airflow installed here; use RECONCILE_AUDIT_URL instead") from None
        hook = AuditStoreHook(args.conn_id)
        return hook.url(), Signer.from_text(key, AUDIT_KEY_ENV) if key else hook.signer()
    url = getattr(args, "url", None) or os.environ.get(AUDIT_URL_ENV)
    if not url:
        raise ReconcileError(f"name the audit store: --conn-id (an Airflow connection), {AUDIT_URL_ENV}, or --url")
    return url, Signer.from_text(key, AUDIT_KEY_ENV)


def existing_store(url: str, signer: Any = None) -> Any:
    """The audit store at ``url``, read as it is: a store that does not exist is an error, never created."""
    import sqlalchemy as sa

    from airflow_reconcile.core.audit import AuditStore
    from airflow_reconcile.core.audit_chains import audit_records

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ReconcileError(
            f"--url {url!r} is not a SQLAlchemy URL; write e.g. sqlite:////srv/airflow/reconcile_audit.db "
            "or postgresql+psycopg://user@host/db"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        from pathlib import Path

        if not parsed.database or parsed.database == ":memory:" or not Path(parsed.database).is_file():
            raise ReconcileError(f"--url {shown}: no audit store there (no such file); nothing was created")
    store = AuditStore(url, signer)
    try:
        with store.engine.connect() as conn:
            present = sa.inspect(conn).has_table(audit_records.name)
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ReconcileError(f"--url {shown}: cannot connect: {reason}") from None
    if not present:
        raise ReconcileError(f"--url {shown}: this database holds no audit store (no {audit_records.name} table)")
    return store


def _db_upgrade(args: argparse.Namespace) -> int:
    """Migrate an existing audit store to this release's schema (tasks also do it on first use)."""
    import sqlalchemy as sa

    from airflow_reconcile.core.audit import AuditStore
    from airflow_reconcile.core.schema import head, upgrade

    url, _signer = _audit_location(args)
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ReconcileError(f"--url {redact(url)!r} is not a SQLAlchemy URL") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        raise ReconcileError(f"--url {shown}: no audit store there (no such file); nothing was created")
    store = AuditStore(url)
    try:
        before, now = upgrade(store.engine)
    except sa.exc.SQLAlchemyError as exc:
        raise store._unavailable(exc) from None
    if before == now:
        print(f"audit store {shown}: schema at {now} (the newest this release knows); nothing to do")
    else:
        print(f"audit store {shown}: schema {before or 'before migrations'} -> {now} ({head()} is the newest)")
    return 0


def _db_grant(args: argparse.Namespace) -> int:
    """PostgreSQL: the tasks' role may read and append to the audit trail, never rewrite it."""
    from airflow_reconcile.core.schema import grant

    url, _signer = _audit_location(args)
    store = existing_store(url)
    for statement in grant(store.engine, args.role):
        print(statement)
    return 0


def _verified(args: argparse.Namespace, store: Any) -> tuple[Any, str, int]:
    """The store checked against every checkpoint: the folder's (``--checkpoints``) and the task logs'
    (``--checkpoint-log``), and the folder against the logs (a folder rolled back to an older copy).
    Returns (what was found, the folder, how many checkpoints were given)."""
    from airflow_reconcile.core.integrity import checkpoints_in_log, read_checkpoints, rollback_problem
    from airflow_reconcile.core.locations import absolute, checkpoint_folder
    from airflow_reconcile.core.workspace import is_local, storage_path

    given = args.checkpoints
    folder = (str(absolute(given)) if "://" not in given else given) if given else checkpoint_folder()
    if is_local(folder):  # no Airflow needed: verify runs where only the package (and no Airflow) is installed
        in_folder = read_checkpoints(storage_path(folder))
    else:  # object storage: through the Airflow connection the URL names
        from airflow_reconcile.provider.hooks import workspace_path

        in_folder = read_checkpoints(workspace_path(folder))
    in_logs = []
    for path in args.checkpoint_log:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ReconcileError(f"--checkpoint-log {path}: {exc.strerror}") from None
        in_logs += checkpoints_in_log(text, Path(path).name)
    found = store.verify_all(in_folder + in_logs)
    rolled_back = rollback_problem(store.signer, in_folder, in_logs)
    if rolled_back:
        found.problems.append(rolled_back)
    return found, folder, len(in_folder) + len(in_logs)


def _audit_verify(args: argparse.Namespace) -> int:
    store = existing_store(*_audit_location(args))
    found, folder, given = _verified(args, store)
    if found.ok:
        print(found.summary() + (f" (in {folder})" if given else f"; no checkpoints in {folder}"))
        return 0
    if found.broken_record is not None:
        print(_broken_link(store, found.broken_record), file=sys.stderr)
    for problem in found.problems:
        print(problem, file=sys.stderr)
    return 1


EXPORT_COLUMNS = (
    "id", "dag_id", "run_id", "task_id", "map_index", "try_number", "started_at", "ended_at", "outcome",
    "spec", "policy_version", "error", "trace_id", "inputs", "outputs", "details", "prev_hash", "record_hash",
)  # fmt: skip


def _audit_export(args: argparse.Namespace) -> int:
    """Compliance evidence: the records (with their chain hashes) as JSON Lines or CSV, chain checked."""
    import csv
    import json

    store = existing_store(*_audit_location(args))
    rows = store.records(dag_id=args.dag_id, since=args.since)
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "jsonl":
            for row in rows:
                out.write(json.dumps({c: row.get(c) for c in EXPORT_COLUMNS}, sort_keys=True, default=str) + "\n")
        else:
            from airflow_reconcile.core.markup import spreadsheet_cell

            writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS))
            writer.writeheader()
            for row in rows:  # no cell opens as a formula in a spreadsheet (the JSON Lines export is exact)
                writer.writerow({c: spreadsheet_cell(json.dumps(row.get(c), sort_keys=True, default=str)
                                 if c in ("inputs", "outputs", "details") else row.get(c)) for c in EXPORT_COLUMNS})  # fmt: skip
    finally:
        if args.output:
            out.close()
    found, _folder, given = _verified(args, store)
    verdict = (
        "chain intact"
        if found.ok
        else "; ".join(
            ([_broken_link(store, found.broken_record)] if found.broken_record is not None else []) + found.problems
        )
    )
    print(f"{len(rows)} audit records exported; {verdict} ({given} checkpoint(s) checked)", file=sys.stderr)
    return 0 if found.ok else 1


def _audit_store_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--conn-id", help="Airflow connection of the audit store (its key: the connection <id>_key)")
    where.add_argument("--url", help=f"SQLAlchemy URL of the audit store; a password here is visible to other "
                       f"users of the host: prefer --conn-id or {AUDIT_URL_ENV}")  # fmt: skip


def _dags_folder() -> str:
    """Airflow's ``[core] dags_folder`` (the default folder of ``reconcile init``)."""
    try:
        from airflow.configuration import conf
    except ImportError:
        raise ReconcileError("Airflow is not installed here, so its DAGs folder is unknown: give the folder") from None
    return str(conf.get("core", "dags_folder"))


def _init(args: argparse.Namespace) -> int:
    from airflow_reconcile.core.examples import EXAMPLES, init_example

    folder = args.directory or _dags_folder()
    written = init_example(folder, args.example, force=args.force)
    root = written[0].parent
    print(f"example {args.example!r} written to {root}:")
    for path in written:
        print(f"  {path.relative_to(root)}")
    spec = root / "specs" / f"{args.example}.yaml"
    data = spec.parent / "data"
    print(
        "\nwithout Airflow services:\n"
        f"  reconcile validate {spec}\n"
        f"  reconcile plan {spec} {EXAMPLES[args.example].plan_files.format(data=data)}\n"
        "in Airflow: create the connections (README, Deploy), then\n"
        f"  airflow dags test {DagId.of(args.example)}"
    )
    return 0


def _csv_arguments(parser: argparse.ArgumentParser, what: str = "of both files") -> None:
    group = parser.add_argument_group("CSV options", what)
    group.add_argument("--delimiter", help="field separator (default ','; '\\t' for tabs)")
    group.add_argument("--encoding", help="text encoding (default utf-8), e.g. latin-1, cp1252, utf-16")
    group.add_argument("--date-columns", metavar="COLS", help="columns holding dates, read with --date-format")
    group.add_argument("--date-format", metavar="FMT",
                       help="strftime format of --date-columns, e.g. '%%d-%%m-%%Y %%H:%%M' (default ISO 8601)")  # fmt: skip
    group.add_argument("--na-values", metavar="VALUES", help="values that mean empty, comma-separated, e.g. '?,N/A'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconcile", description="airflow-reconcile command-line tools")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser(
        "init", help="write an example (its DAG file, spec and sample data) into a DAGs folder; overwrites nothing"
    )
    init.add_argument("directory", nargs="?", help="where to write (default: Airflow's [core] dags_folder)")
    init.add_argument(
        "--example", default="ticket_ownership", help="which example: ticket_ownership (default), stale_incident_groups"
    )
    init.add_argument("--force", action="store_true", help="overwrite files that are already there")
    init.set_defaults(func=_init)
    validate = sub.add_parser("validate", help="validate reconciliation specs")
    validate.add_argument("specs", nargs="+")
    validate.set_defaults(func=_validate)
    plan = sub.add_parser(
        "plan",
        help="read, check, diff and evaluate a spec locally, without Airflow, and print the action plan; "
        "exit 0 no actions, 1 actions planned, 2 error or failed quality gate",
    )
    plan.add_argument("spec")
    plan.add_argument("--desired", help="a file to use as the desired snapshot instead of the spec's source")
    plan.add_argument("--actual", help="a file to use as the actual snapshot (e.g. an export of the Jira query)")
    plan.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a file to use as the snapshot of the spec's input NAME (repeat for several)",
    )
    plan.add_argument(
        "--keys",
        action="append",
        metavar="KEYS",
        help="a run scope: only these values of the desired side's key, comma-separated (or repeated)",
    )
    plan.add_argument("--format", choices=["table", "json"], default="table")
    plan.add_argument("--now", help="evaluate freshness and older_than as of this ISO 8601 time (default: now)")
    plan.add_argument("--limit", type=int, default=50, help="actions listed in the table (default 50)")
    plan.add_argument("--conn", action="append", default=[], metavar="NAME=URI",
                      help="an Airflow connection for a source (as AIRFLOW_CONN_NAME would give it); repeatable")  # fmt: skip
    _csv_arguments(plan, "of --desired / --actual files (default: the spec's file source options)")
    plan.set_defaults(func=_plan)
    schema = sub.add_parser("schema", help="print the spec's JSON Schema (docs/spec.schema.json)")
    schema.set_defaults(func=_schema)
    diff = sub.add_parser(
        "diff",
        help="keyed diff of two files (CSV, Parquet, JSON, JSON Lines); exit 0 no drift, 1 drift, 2 error",
    )
    diff.add_argument("desired", help="the source of record")
    diff.add_argument("actual", help="the target system's snapshot")
    diff.add_argument("--key", required=True, action="append", help="key column(s), comma-separated (or repeated)")
    diff.add_argument("--compare", action="append", help="columns to compare, comma-separated or repeated "
                      "(default: every column both files have)")  # fmt: skip
    diff.add_argument("--exclude", action="append", help="columns not compared, kept in the report as context")
    diff.add_argument("--timezone", metavar="ZONE", help="the IANA time zone of times without an offset in both files "
                      "(e.g. UTC, Europe/Berlin); without it such times stop the diff")  # fmt: skip
    diff.add_argument("--tolerance", action="append", default=[], metavar="COL=VALUE", help="0.01, 1%% or 5m")
    diff.add_argument("--normalize", action="append", default=[], metavar="COL=STEPS",
                      help="trim, casefold, nfc, null_equivalents, number, timestamp")  # fmt: skip
    diff.add_argument("--column-map", action="append", default=[], metavar="DESIRED=ACTUAL",
                      help="the actual file's name for a desired column")  # fmt: skip
    diff.add_argument("--format", choices=["table", "json"], default="table")
    diff.add_argument("--output", help="write the row-level report; the suffix sets the format: .parquet, .csv, .jsonl")
    diff.add_argument(
        "--show", type=int, metavar="N", help="print the first N drifting rows (key, column, before -> after)"
    )
    diff.add_argument("--fail-on-key-problems", action="store_true",
                      help="exit 1 when keys repeat or are empty (default: reported apart from drift, exit 0)")  # fmt: skip
    _csv_arguments(diff)
    diff.set_defaults(func=_diff)
    db = sub.add_parser("db", help="the audit store's schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_sub.add_parser("upgrade", help="migrate the audit store to this release's schema "
                                   "(tasks also do it on first use)")  # fmt: skip
    _audit_store_arguments(db_upgrade)
    db_upgrade.set_defaults(func=_db_upgrade)
    db_grant = db_sub.add_parser("grant", help="PostgreSQL: let a role (the one Airflow connects as) read and "
                                 "append to the audit trail, never update or delete it; run as the tables' owner")  # fmt: skip
    _audit_store_arguments(db_grant)
    db_grant.add_argument("--role", required=True, help="the role of the reconcile_audit connection")
    db_grant.set_defaults(func=_db_grant)
    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the audit chains with the audit key, against the checkpoints")
    export = audit_sub.add_parser("export", help="write audit records as compliance evidence (chain and "
                                  "checkpoints checked)")  # fmt: skip
    for command in (verify, export):
        _audit_store_arguments(command)
        command.add_argument("--checkpoints", help="folder or URL of the audit checkpoints (default: the "
                             "workspace's _audit/checkpoints, from AIRFLOW_RECONCILE_WORKSPACE or AIRFLOW_HOME)")  # fmt: skip
        command.add_argument("--checkpoint-log", action="append", default=[], metavar="FILE",
                             help="a task log (or a file of log lines) with 'reconcile audit checkpoint:' lines; "
                             "repeatable")  # fmt: skip
    verify.set_defaults(func=_audit_verify)
    export.add_argument("--since", help="records that ended at or after this ISO 8601 time")
    export.add_argument("--dag-id", help="only this DAG's records")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.set_defaults(func=_audit_export)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ReconcileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback; RECONCILE_DEBUG=1 shows it
        import os

        if os.environ.get("RECONCILE_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"error: {type(exc).__name__}: {first} (RECONCILE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
