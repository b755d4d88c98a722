"""Where the store lives: resolve the database URL and open a checked SQLAlchemy engine.

Everything a user can get wrong here (a malformed URL, an unknown database, a server that does
not answer, a data directory we cannot write) becomes one `StoreError` line that says how to
mend it, raised before anything is written.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from envs.errors import PeamError

DEFAULT_HOME = "./peam-data"
DB_FILE = "peam.db"
CONNECT_TIMEOUT_S = 5  # a server that does not answer fails fast instead of hanging a run
BUSY_TIMEOUT_MS = 30_000  # SQLite: writers queue behind each other rather than fail at once
EXAMPLES = "sqlite:///PATH/peam.db or postgresql+psycopg://USER@HOST:5432/DB"
# The drivers pyproject installs; any other (asyncpg, psycopg2, pg8000, aiosqlite…) is refused by
# name before SQLAlchemy tries to import it.
DRIVERS = ("sqlite", "postgresql+psycopg")
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
CORRUPT = "restore it from a backup, or move it away to start a new store"


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
    elif parsed.drivername == "sqlite+pysqlite":
        parsed = parsed.set(drivername="sqlite")
    if parsed.drivername not in DRIVERS:
        raise StoreError(f"unsupported database driver {parsed.drivername!r} in {masked(parsed)}: "
                         f"peam supports {' and '.join(DRIVERS)}, e.g. {EXAMPLES}")
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
        raise StoreError(_NO_STORE.format(path=path))
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create the data directory {path.parent} ({ancestor} is not a "
                         f"writable directory): set PEAM_HOME or --db to a writable place")


_NO_STORE = ("no peam store at {path}: run `peam run` first, or point --db / PEAM_DB / PEAM_HOME "
             "at an existing one")


def check_sqlite_owner(path: Path, *, create: bool) -> None:
    """Refuse, before the first write (even the WAL switch), a file that is not a SQLite
    database, a corrupt one, or one that belongs to another program; an empty file or database
    may become a store only with `create`. Read with a read-only connection."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not a SQLite database: {CORRUPT}, or choose another "
                         f"--db / PEAM_DB / PEAM_HOME")
    tables = _sqlite_tables(path) if head else set()
    if "alembic_version" in tables:
        return
    if tables:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise StoreError(f"{path} is a SQLite database of another program (tables {shown}): "
                         f"peam writes only to its own stores; choose another --db / PEAM_DB / "
                         f"PEAM_HOME")
    if not create:
        raise StoreError(_NO_STORE.format(path=path))


def _sqlite_tables(path: Path) -> set[str]:
    try:
        con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                              timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StoreError(sqlite_failure(path, str(e))) from None


def sqlite_failure(path, reason: str) -> str:
    """The remedy for a SQLite error: a damaged file needs a backup, anything else a path or a
    permission fixed (there is no server to start)."""
    if "malformed" in reason or "not a database" in reason or "corrupt" in reason:
        return f"the database file {path} is damaged ({reason}): {CORRUPT}"
    if "locked" in reason or "busy" in reason:
        return f"the database file {path} is busy ({reason}): another writer holds it; retry"
    return (f"cannot use the SQLite database {path} ({reason}): check the path, its directory "
            f"and their permissions, or choose another --db / PEAM_DB / PEAM_HOME")


def db_failure(error: DBAPIError, url: URL | None = None) -> str:
    """One line for a database error met while a command runs (`url` when known)."""
    reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
    if url is None:
        sqlite, where = type(error.orig).__module__.startswith("sqlite3"), "the store"
    else:
        sqlite, where = url.get_backend_name() == "sqlite", masked(url)
    if sqlite:
        return sqlite_failure(sqlite_path(url) if url is not None else where, reason)
    return f"the database {where} failed ({reason}): check the server, or fix --db / PEAM_DB"


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
    if path is None:
        raise StoreError("an in-memory SQLite database would be discarded when peam exits: use "
                         "a file, e.g. sqlite:///PATH/peam.db")
    check_sqlite_path(path, create=create)
    check_sqlite_owner(path, create=create)
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
        if engine.url.get_backend_name() == "sqlite":
            raise StoreError(db_failure(e, engine.url)) from None
        reason = str(e.orig).strip().splitlines()[0] if e.orig else type(e).__name__
        raise StoreError(f"cannot connect to {masked(engine.url)} ({reason}): start the server "
                         f"or fix --db / PEAM_DB") from None
