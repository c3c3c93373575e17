from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from airflow_reconcile.core.errors import SourceError
from airflow_reconcile.core.sources import SourceContext, get_source, register_source, registered_kinds
from airflow_reconcile.core.spec import SourceSpec


def file_spec(path, **extra):
    return SourceSpec(kind="file", options={"path": str(path), **extra.pop("options", {})}, key=["k"], **extra)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json", "jsonl"])
def test_file_formats(tmp_path, fmt):
    frame = pd.DataFrame({"k": ["a", "b"], "v": ["1", "2"]})
    path = tmp_path / f"data.{fmt}"
    {"csv": lambda: frame.to_csv(path, index=False), "parquet": lambda: frame.to_parquet(path),
     "json": lambda: frame.to_json(path, orient="records"),
     "jsonl": lambda: frame.to_json(path, orient="records", lines=True)}[fmt]()  # fmt: skip
    snap = get_source("file").read(file_spec(path), SourceContext(origin="s.yaml"))
    assert snap.frame["k"].tolist() == ["a", "b"]
    assert snap.frame["v"].astype(str).tolist() == ["1", "2"]
    assert snap.source == path.as_uri()


def test_csv_keeps_values_as_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("k,v\n007,N/A\n008,\n")
    frame = get_source("file").read(file_spec(path), SourceContext(origin="s.yaml")).frame
    assert frame["k"].tolist() == ["007", "008"]  # no int coercion eating leading zeros
    assert frame["v"].tolist() == ["N/A", ""]  # no silent null guessing


def test_relative_path_resolves_against_the_spec(tmp_path):
    (tmp_path / "data").mkdir()
    pd.DataFrame({"k": ["a"]}).to_csv(tmp_path / "data" / "x.csv", index=False)
    spec = SourceSpec(kind="file", options={"path": "data/x.csv"}, key=["k"])
    assert len(get_source("file").read(spec, SourceContext(origin=str(tmp_path / "s.yaml"))).frame) == 1


def test_file_errors_name_the_file_and_column(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.csv: file not found"):
        get_source("file").read(file_spec(tmp_path / "nope.csv"), SourceContext(origin="s.yaml"))
    path = tmp_path / "d.csv"
    path.write_text("key,v\na,1\n")
    with pytest.raises(SourceError, match=r"has no column\(s\) k; it has key, v"):
        get_source("file").read(file_spec(path), SourceContext(origin="s.yaml"))
    odd = tmp_path / "d.xlsx"
    odd.write_text("x")
    with pytest.raises(SourceError, match="set options.format"):
        get_source("file").read(file_spec(odd), SourceContext(origin="s.yaml"))


def test_freshness_from_a_column(tmp_path):
    now = datetime.now(UTC)
    path = tmp_path / "d.csv"
    pd.DataFrame({"k": ["a", "b"], "at": [(now - timedelta(days=3)).isoformat(), now.isoformat()]}).to_csv(
        path, index=False
    )
    spec = file_spec(path, freshness={"column": "at", "max_age": "1d"})
    newest = get_source("file").newest(spec, SourceContext(origin="s.yaml"))
    assert abs((newest - now).total_seconds()) < 1


def test_sql_source_reads_a_query(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table svc (k text, owner text)")
        conn.exec_driver_sql("insert into svc values ('a', 'x'), ('b', 'y')")
    spec = SourceSpec(kind="sql", options={"query": "select k, owner from svc order by k"}, key=["k"])
    snap = get_source("sql").read(spec, SourceContext(origin="s.yaml", connection={"url": url}))
    assert snap.frame.to_dict("records") == [{"k": "a", "owner": "x"}, {"k": "b", "owner": "y"}]
    bad = SourceSpec(kind="sql", options={"query": "select * from nope"}, key=["k"])
    with pytest.raises(SourceError, match="no such table: nope"):
        get_source("sql").read(bad, SourceContext(origin="s.yaml", connection={"url": url}))


def test_jira_source_paginates_and_resolves_custom_fields(jira_standin, jira_client, scenario, spec):
    jira_standin.seed(scenario.jira_seed())
    lines: list[str] = []
    snap = get_source("jira").read(
        spec.sources.actual, SourceContext(origin="s.yaml", client_factory=lambda: jira_client, progress=lines.append)
    )
    assert len(snap.frame) == len(scenario.issues) > 100  # more than one page
    searches = [r for r in jira_standin.requests if r["path"].endswith("/search")]
    assert len(searches) == 3
    by_key = snap.frame.set_index("key")
    first = scenario.issues[0]
    assert by_key.loc[first["key"], "service"] == first["service"]  # custom field "Service" by name
    assert any(f"{len(scenario.issues)}/{len(scenario.issues)} rows read" in line for line in lines)


def test_jira_source_unknown_field_is_named(jira_standin, jira_client, spec):
    bad = spec.sources.actual.model_copy(
        update={"options": {**spec.sources.actual.options, "fields": {"key": "key", "service": "Servise"}}}
    )
    with pytest.raises(SourceError, match="options.fields.service: Jira has no field 'Servise'"):
        get_source("jira").read(bad, SourceContext(origin="s.yaml", client_factory=lambda: jira_client))


def test_registry_prefers_user_sources():
    class Echo:
        kind = "echo"

        def read(self, spec, ctx):
            raise NotImplementedError

        def newest(self, spec, ctx):
            return None

    register_source(Echo())
    assert "echo" in registered_kinds()
    assert isinstance(get_source("echo"), Echo)
    with pytest.raises(SourceError, match="unknown source kind 'nope'"):
        get_source("nope")
    assert json.dumps(registered_kinds())


def test_jira_source_tells_transient_from_persistent_failures(jira_standin, jira_client, spec):
    from airflow_reconcile.core.errors import TransientError
    from airflow_reconcile.core.retry import RetryPolicy

    ctx = SourceContext(origin="s.yaml", client_factory=lambda: jira_client, retry=RetryPolicy(sleep=lambda _: None))
    jira_standin.faults.set([{"method": "GET", "path": "/search$", "status": 503, "times": 4}])  # every attempt
    with pytest.raises(TransientError, match="Jira answered 503"):
        get_source("jira").read(spec.sources.actual, ctx)
    assert jira_standin.faults.injected == {"503": 4}
    bad = spec.sources.actual.model_copy(
        update={"options": {**spec.sources.actual.options, "jql": "project = OPS OR x = 1"}}
    )
    with pytest.raises(SourceError, match="Jira answered 400") as err:
        get_source("jira").read(bad, ctx)
    assert not isinstance(err.value, TransientError)


def test_file_source_reads_fsspec_urls_with_connection_storage_options():
    """Any fsspec URL works (here the in-memory filesystem); freshness comes from the object's metadata."""
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/reconcile/catalog.csv", "w") as out:
        out.write("k,owner\na,x\nb,y\n")
    spec = SourceSpec(kind="file", options={"path": "memory://reconcile/catalog.csv"}, key=["k"])
    ctx = SourceContext(origin="specs/s.yaml", connection={"storage_options": {}})
    snap = get_source("file").read(spec, ctx)
    assert snap.frame["owner"].tolist() == ["x", "y"]
    assert snap.source == "memory://reconcile/catalog.csv"
    newest = get_source("file").newest(spec, ctx)
    assert newest is not None
    assert abs((datetime.now(UTC) - newest).total_seconds()) < 60
    gone = SourceSpec(kind="file", options={"path": "memory://reconcile/nope.csv"}, key=["k"])
    with pytest.raises(SourceError, match="memory://reconcile/nope.csv: file not found"):
        get_source("file").read(gone, ctx)
    unknown = SourceSpec(kind="file", options={"path": "nosuchproto://bucket/x.csv"}, key=["k"])
    with pytest.raises(SourceError, match="nosuchproto://bucket/x.csv: cannot open this URL"):
        get_source("file").read(unknown, ctx)


def test_storage_options_come_from_the_connection(monkeypatch):
    from airflow_reconcile.provider.hooks import storage_options

    monkeypatch.setenv("AIRFLOW_CONN_LAKE", json.dumps({
        "conn_type": "aws", "login": "AKIA-test", "password": "s3cr3t",
        "extra": {"storage_options": {"endpoint_url": "http://127.0.0.1:9000"}},
    }))  # fmt: skip
    assert storage_options("lake") == {"endpoint_url": "http://127.0.0.1:9000", "key": "AKIA-test", "secret": "s3cr3t"}


def test_sql_source_connects_again_when_the_database_is_back_after_the_backoff(tmp_path):
    from airflow_reconcile.core.errors import TransientError
    from airflow_reconcile.core.retry import RetryPolicy

    folder = tmp_path / "not-yet"
    url = f"sqlite:///{folder / 'db.sqlite'}"
    spec = SourceSpec(kind="sql", options={"query": "select k from svc"}, key=["k"])
    down = RetryPolicy(attempts=3, sleep=lambda _: None)
    with pytest.raises(TransientError, match="database unavailable"):
        get_source("sql").read(spec, SourceContext(origin="s.yaml", connection={"url": url}, retry=down))
    assert down.retried == {"connect": 2}

    def back(_seconds: float) -> None:  # the database comes back while the policy waits
        folder.mkdir(exist_ok=True)
        with sa.create_engine(url).begin() as conn:
            conn.exec_driver_sql("create table if not exists svc (k text)")
            conn.exec_driver_sql("insert into svc values ('a')")

    retry = RetryPolicy(sleep=back)
    snap = get_source("sql").read(spec, SourceContext(origin="s.yaml", connection={"url": url}, retry=retry))
    assert snap.frame["k"].tolist() == ["a"]
    assert retry.retried == {"connect": 1}


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_a_path_that_is_not_a_regular_file_is_refused_before_it_is_read(tmp_path, kind):
    import os

    from airflow_reconcile.core.errors import SourceError
    from airflow_reconcile.core.sources.files import read_file

    path = {"device": "/dev/zero", "fifo": str(tmp_path / "pipe.csv"), "folder": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # opening it to read would block for ever
    with pytest.raises(SourceError, match="not a regular file; give the path of a snapshot file"):
        read_file(path, "csv")


def test_nested_json_values_are_compared_as_json(tmp_path):
    import json

    from airflow_reconcile.core.drift import detect_drift
    from airflow_reconcile.core.sources.files import read_file

    (tmp_path / "a.json").write_text(json.dumps([{"id": 1, "tags": {"x": 1, "y": [2, 3]}}]))
    (tmp_path / "b.json").write_text(json.dumps([{"id": 1, "tags": {"y": [2, 3], "x": 1}}]))  # same, keys reordered
    a, b = read_file(tmp_path / "a.json"), read_file(tmp_path / "b.json")
    assert a.tags[0] == '{"x":1,"y":[2,3]}'
    assert detect_drift(a, b, ["id"], ["tags"])[0].changed == 0


def test_a_json_key_column_of_numbers_and_text_is_an_error_naming_it(tmp_path):
    """JSON's 1, "3" and 4.0 in one key column: an error with examples, never a missing + unexpected pair."""
    path = tmp_path / "owners.json"
    path.write_text(json.dumps([{"k": 1, "owner": "a"}, {"k": "3", "owner": "b"}, {"k": 4.0, "owner": "c"}]))
    with pytest.raises(SourceError) as caught:
        get_source("file").read(file_spec(path), SourceContext(origin="s.yaml"))
    message = str(caught.value)
    assert "key column 'k'" in message
    assert "number and text side by side" in message
    assert "'3'" in message
    # One type throughout reads as before.
    path.write_text(json.dumps([{"k": 1, "owner": "a"}, {"k": 3, "owner": "b"}]))
    assert len(get_source("file").read(file_spec(path), SourceContext(origin="s.yaml")).frame) == 2
