"""Alembic environment: runs on the connection `memory.store.migrate` hands over.

No alembic.ini and no `fileConfig`: migrating is part of opening a store, and must not
reconfigure the application's logging. To write a new revision, autogenerate against a scratch
database from Python: `alembic.command.revision(config, autogenerate=True, message=...)` with a
`Config` built as in `migrate` and `config.attributes["connection"]` set.
"""

from alembic import context

from memory.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through memory.store.Store.open / migrate, which pass "
                       "config.attributes['connection']")

# render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
