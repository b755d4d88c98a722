"""Alembic environment of the SQL store, run by `memory.store.migrate` (a package so that
setuptools ships it, versions included)."""
