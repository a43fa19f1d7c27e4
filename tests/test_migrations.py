"""The migrations build exactly the schema the models declare.

Constraints live in the database, so a column, index or check added to a model
without its Alembic revision would exist only in tests that build tables from
the metadata.  Alembic's own comparison finds such drift on a freshly migrated
database of each backend.
"""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from hub.storage.database import make_engine
from hub.storage.migrate import MIGRATIONS, upgrade
from hub.storage.models import Base
from hub.storage.search import is_search_table
from tests.conftest import PG_URL


def _drift(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        # SQLite's full-text tables (migration 0011) are virtual tables no model declares;
        # an index a model declares for another dialect only (ddl_if) is not built here.
        return [d for d in compare_metadata(context, Base.metadata)
                if not (d[0] == "remove_table" and is_search_table(d[1].name))
                and not (d[0] == "add_index" and _other_dialect(d[1], engine.dialect.name))
                and not (d[0] == "remove_index" and _declared_by_expressions(d[1], engine.dialect.name))]


def _declared_by_expressions(index, dialect: str) -> bool:
    """An index the models declare for this dialect with SQL expressions (``text``:
    a sort order, ``IS NULL``), which Alembic cannot compare and leaves out of the
    models' side; the database's index of that name is the one declared."""
    for table in Base.metadata.tables.values():
        for declared in table.indexes:
            only = getattr(declared, "_ddl_if", None)
            if declared.name == index.name and (only is None or only.dialect in (None, dialect)):
                return any(not hasattr(e, "name") for e in declared.expressions)
    return False


def _other_dialect(index, dialect: str) -> bool:
    declared = {i.name: i for t in Base.metadata.tables.values() for i in t.indexes}.get(index.name)
    only = getattr(declared, "_ddl_if", None)
    return only is not None and only.dialect is not None and only.dialect != dialect


def test_sqlite_migrations_match_models(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'drift.db'}")
    upgrade(engine)
    assert _drift(engine) == []
    engine.dispose()


@pytest.mark.skipif(not PG_URL, reason="HUB_TEST_DATABASE_URL not set")
def test_postgres_migrations_match_models():
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"hubtest_drift_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        engine = make_engine(base.set(database=name).render_as_string(hide_password=False))
        upgrade(engine)
        assert _drift(engine) == []
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_revision_chain_is_linear():
    from alembic.script import ScriptDirectory

    from hub.storage.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()} ({MIGRATIONS})"
