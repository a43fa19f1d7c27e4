"""Index-backed inbox and API queries at a million items (issue 17).

* ``identity (customer_id, kind)``: the identity look-up of a page's customers
  (``customer_id IN (...) AND kind ...``) replaces ``ix_identity_customer_id``.
* ``feedback_item (channel, risk, id)``: the channel filter in risk order
  (worst first) replaces ``ix_feedback_item_channel``.
* ``feedback_item (case_id, channel, category, language, risk, customer_id)
  WHERE case_id IS NOT NULL``: the case views test "has an item matching the
  filters" per case from this small index (only items with a case) without
  reading rows.
* ``case (owner, status)``: "my cases" and the callbacks view.
* ``case (status, sla_due_at, risk, id)``: a case view's ids and sort keys
  from the index alone (replaces ``ix_case_status``); ``case (control,
  status)``: the open control cases every page marks.
* Full-text search for ``q`` over ``feedback_item.text``, ``customer.name`` and
  ``identity.value`` (see :mod:`hub.storage.search`): SQLite FTS5 tables with
  the ``trigram`` tokenizer (case-insensitive substring match, what ``ILIKE
  '%q%'`` finds) over the rows as external content, filled in bulk after each ingest
  batch and kept in sync by change and delete triggers;
  PostgreSQL ``pg_trgm`` GIN indexes, which serve ``ILIKE`` directly.
* ``ANALYZE`` at the end: SQLite's planner has no statistics until someone
  runs it, and without them it picks the wrong index at volume.

Frozen here (a migration builds the same schema whatever the code says later):
the FTS names and columns, also listed in :data:`hub.storage.search.TEXT_INDEXES`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:00:00
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

#: table -> the column searched (one FTS table / trigram index each).
TEXT = {"feedback_item": "text", "customer": "name", "identity": "value"}
#: of those, the ones PostgreSQL indexes as lower(column).
FOLDED = {"customer": "name", "identity": "value"}


def _sqlite_fts_up(table: str, column: str) -> None:
    fts = f"{table}_fts"
    op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', content_rowid='id', "
               f"tokenize='trigram')")
    # External content: the index holds only the trigrams.  New rows go in in
    # bulk after each ingest batch (hub.storage.search.index_new_items; a
    # trigger per inserted row made imports three times slower), so the change
    # and delete triggers touch only rows the index holds (ids up to
    # search_indexed.upto), for erasures and retention too.
    indexed = f"old.id <= (SELECT upto FROM search_indexed WHERE name = '{table}')"
    # SQLite gives a new row the largest id + 1: when the newest indexed row goes,
    # the mark comes down with it, or the next row (taking that id) would count
    # as indexed without being so.  In the same trigger, after the delete, so
    # the order of the two is certain.
    newest = f"(SELECT coalesce(max(id), 0) FROM {table})"
    op.execute(f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} WHEN {indexed} BEGIN "
               f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); "
               f"UPDATE search_indexed SET upto = {newest} WHERE name = '{table}' AND upto > {newest}; END")
    op.execute(f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {column} ON {table} WHEN {indexed} BEGIN "
               f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); "
               f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END")
    op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")
    op.execute(f"INSERT INTO search_indexed (name, upto) SELECT '{table}', coalesce(max(id), 0) FROM {table}")


def _sqlite_fts_down(table: str) -> None:
    fts = f"{table}_fts"
    for suffix in ("ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
    op.execute(f"DROP TABLE IF EXISTS {fts}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_index("ix_identity_customer_id", table_name="identity")
    op.create_index("ix_identity_customer_kind", "identity", ["customer_id", "kind"])
    op.drop_index("ix_feedback_item_channel", table_name="feedback_item")
    op.create_index("ix_feedback_item_channel_risk", "feedback_item", ["channel", "risk", "id"])
    op.create_index("ix_feedback_item_case_filters", "feedback_item",
                    ["case_id", "channel", "category", "language", "risk", "customer_id"],
                    sqlite_where=sa.text("case_id IS NOT NULL"), postgresql_where=sa.text("case_id IS NOT NULL"))
    op.drop_index("ix_case_status", table_name="case")
    op.create_index("ix_case_status_due", "case", ["status", "sla_due_at", "risk", "id"])
    op.create_index("ix_case_control_status", "case", ["control", "status"])
    op.create_index("ix_case_owner_status", "case", ["owner", "status"])
    op.create_table("search_indexed",
                    sa.Column("name", sa.String(length=64), nullable=False),
                    sa.Column("upto", sa.BigInteger(), nullable=False, server_default="0"),
                    sa.PrimaryKeyConstraint("name", name=op.f("pk_search_indexed")))
    if dialect == "sqlite":
        for table, column in TEXT.items():
            _sqlite_fts_up(table, column)
        op.execute("PRAGMA analysis_limit=1000")  # sampled: seconds, not minutes, at a million rows
        op.execute("ANALYZE")
    elif dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.create_index("ix_feedback_item_text_trgm", "feedback_item", ["text"], postgresql_using="gin",
                        postgresql_ops={"text": "gin_trgm_ops"})
        # Names and identity values are also looked up by equality: their index is on
        # lower(column), so the planner never prefers it to the B-tree for "=" (models.trigram_index).
        for table, column in FOLDED.items():
            op.create_index(f"ix_{table}_{column}_trgm", table, [sa.text(f"lower({column}) gin_trgm_ops")],
                            postgresql_using="gin")
        op.execute("ANALYZE")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in TEXT:
            _sqlite_fts_down(table)
    elif dialect == "postgresql":
        for table, column in TEXT.items():
            op.drop_index(f"ix_{table}_{column}_trgm", table_name=table)
    op.drop_table("search_indexed")
    op.drop_index("ix_case_owner_status", table_name="case")
    op.drop_index("ix_case_control_status", table_name="case")
    op.drop_index("ix_case_status_due", table_name="case")
    op.create_index("ix_case_status", "case", ["status"])
    op.drop_index("ix_feedback_item_case_filters", table_name="feedback_item")
    op.drop_index("ix_feedback_item_channel_risk", table_name="feedback_item")
    op.create_index("ix_feedback_item_channel", "feedback_item", ["channel"])
    op.drop_index("ix_identity_customer_kind", table_name="identity")
    op.create_index("ix_identity_customer_id", "identity", ["customer_id"])
