"""Where the store lives: resolve the database URL and open a checked SQLAlchemy engine.

Everything a user can get wrong here (a malformed URL, an unknown database, a server that does
not answer, a data directory we cannot write) becomes one `StoreError` line that says how to
mend it, raised before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from envs.errors import PeamError

DEFAULT_HOME = "./peam-data"
DB_FILE = "peam.db"
CONNECT_TIMEOUT_S = 5  # a server that does not answer fails fast instead of hanging a run
BUSY_TIMEOUT_MS = 30_000  # SQLite: writers queue behind each other rather than fail at once
EXAMPLES = "sqlite:///PATH/peam.db or postgresql+psycopg://USER@HOST:5432/DB"


class StoreError(PeamError):
    """The database cannot be opened or used; the message says how to mend it."""


def data_home() -> Path:
    """`$PEAM_HOME`, default `./peam-data`: the SQLite file and the model files live here."""
    return Path(os.environ.get("PEAM_HOME") or DEFAULT_HOME)


def default_url() -> str:
    """The embedded default: a SQLite file under `$PEAM_HOME` (default `./peam-data`)."""
    return f"sqlite:///{data_home() / DB_FILE}"


def resolve_url(url: str | None = None) -> str:
    """An explicit URL wins, then `$PEAM_DB`, then the SQLite default."""
    return url or os.environ.get("PEAM_DB") or default_url()


def masked(url: str | URL) -> str:
    """The URL as shown to users: any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<malformed URL>"


def parse_url(url: str) -> URL:
    """Parse and check the dialect; `postgresql://` means the psycopg 3 driver we ship."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"malformed database URL {url!r}: use {EXAMPLES}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql") and parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {parsed.drivername!r} in {masked(parsed)}: "
                         f"use {EXAMPLES}")
    try:
        parsed.get_dialect()
    except (NoSuchModuleError, ImportError):
        raise StoreError(f"unknown database driver {parsed.drivername!r} in {masked(parsed)}: "
                         f"use {EXAMPLES}") from None
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
        return None
    return Path(url.database)


def check_sqlite_path(path: Path, *, create: bool) -> None:
    """Refuse before writing anything: the file must be writable or creatable where it is."""
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"cannot write the database file {path}: fix its permissions "
                             f"or choose another with --db / PEAM_DB / PEAM_HOME")
        return
    if not create:
        raise StoreError(f"no peam store at {path}: run `peam run` first, or point "
                         f"--db / PEAM_DB / PEAM_HOME at an existing one")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create the data directory {path.parent} ({ancestor} is not a "
                         f"writable directory): set PEAM_HOME or --db to a writable place")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the dashboard read while runners write; foreign keys are off by default in
    # SQLite; busy_timeout makes concurrent writers wait instead of raising "database is locked".
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so busy_timeout applies; a deferred
    # transaction that reads then writes gets SQLITE_BUSY at once when another writer holds the
    # lock (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL" recipe).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(url: str | None = None, *, create: bool = True) -> Engine:
    """A connected engine for `url` (resolved as in `resolve_url`), or a one-line StoreError."""
    parsed = parse_url(resolve_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _open_sqlite(parsed, create=create)
    engine = create_engine(parsed, connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
                           pool_pre_ping=True)
    _check_connects(engine)
    return engine


def _open_sqlite(url: URL, *, create: bool) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_path(path, create=create)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the data directory {path.parent} ({e.strerror}): "
                             f"set PEAM_HOME or --db to a writable place") from None
    engine = create_engine(url)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    _check_connects(engine)
    return engine


def _check_connects(engine: Engine) -> None:
    """Connect once now, so an unreachable server fails here and not mid-episode."""
    try:
        with engine.connect():
            pass
    except DBAPIError as e:
        engine.dispose()
        reason = str(e.orig).strip().splitlines()[0] if e.orig else type(e).__name__
        raise StoreError(f"cannot connect to {masked(engine.url)} ({reason}): start the server "
                         f"or fix --db / PEAM_DB") from None
