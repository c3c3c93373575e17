from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """An empty audit store on each backend: a SQLite file, and a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    postgres = request.getfixturevalue("postgres")
    name = "store_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    engine = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return postgres.url().rsplit("/", 1)[0] + f"/{name}"


def in_processes(target, arguments) -> list[int | None]:
    """Run ``target(*args)`` for each args at once, each in a fresh interpreter like Airflow's task
    processes; returns their exit codes."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=target, args=args) for args in arguments]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    return [w.exitcode for w in workers]
