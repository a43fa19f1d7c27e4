"""Inbox at a million items (issue 17, point 4): SQLite's covering index for the
case views' search walk.

A case view searching a common term checks the items of a chunk of cases
(``case_id IN (...)``) for the text or the author.  On SQLite each of those
items was a row read from the whole table (large rows: texts, reasons,
extras, spread over the file); ``ix_feedback_item_case_text`` holds the items
that have a case (a few per cent of them) with their author and text, so the
check reads the index alone.  PostgreSQL gets none: a B-tree entry is limited
to about 2.7 kB, which a long text exceeds, and its heap reads are cheaper.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 13:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_feedback_item_case_text", "feedback_item", ["case_id", "customer_id", "text"],
                        sqlite_where=sa.text("case_id IS NOT NULL"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_feedback_item_case_text", table_name="feedback_item")
