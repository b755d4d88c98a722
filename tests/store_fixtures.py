"""Real databases for store tests: a SQLite file under tmp_path, or a fresh PostgreSQL schema.

Each PostgreSQL test gets its own uniquely named schema (selected through `search_path` in the
URL) and drops it afterwards, so parallel or repeated runs never see each other's tables.
"""

from __future__ import annotations

import functools
import uuid

import pytest

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


@functools.lru_cache(maxsize=1)
def pg_unreachable_reason() -> str | None:
    """Why the PostgreSQL tests must skip, or None when the server answers."""
    import psycopg

    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=3).close()
    except psycopg.Error as e:
        return f"PostgreSQL at 127.0.0.1:5432/test unreachable ({str(e).strip().splitlines()[0]})"
    return None


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """A URL to an empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'peam-data' / 'peam.db'}"
        return
    yield from pg_schema_url()


def pg_schema_url():
    """A URL to a fresh PostgreSQL schema of its own, dropped afterwards (a generator for
    fixtures); skips the test when the server cannot be reached."""
    reason = pg_unreachable_reason()
    if reason:
        pytest.skip(reason)
    from sqlalchemy import create_engine, text

    schema = f"peam_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_SERVER)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(store_url):
    from memory.store import Store

    with Store.open(store_url) as opened:
        yield opened
