"""The inbox's to-do view read in its order (issue 17, point 4).

The to-do view lists the cases with status new, assigned or scheduled, the
soonest SLA first (none last), then the highest risk.  ``ix_case_status_due``
starts with the status, so for three statuses both databases read every open
case and sorted them all before the first page: at 20,000 open cases 2.5 ms
alone on SQLite, and with an item filter (``EXISTS`` per case: a channel, a
language, a search term) every case was checked first (a channel: 7 ms on
SQLite, 15 ms on PostgreSQL).  ``ix_case_todo_order`` holds the to-do cases in
the view's order, so a page reads cases until it has its rows (a channel:
0.4 ms).  SQLite's B-tree sorts NULL first, so the index leads with
``sla_due_at IS NULL`` (the query sorts on the same expression), on both
databases: one definition.  A partial index: queries name the statuses literally
(``models.TODO_PREDICATE``), as the planners must prove the predicate; the
status is in it too, so the index covers the page's ids (else SQLite's planner
took the covering ix_case_status_due and the sort on a small table).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 01:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

#: The to-do statuses, a frozen copy (models.TODO_PREDICATE).
TODO_PREDICATE = "status IN ('new', 'assigned', 'scheduled')"


def upgrade() -> None:
    op.create_index("ix_case_todo_order", "case", [sa.text("(sla_due_at IS NULL)"), "sla_due_at",
                                                   sa.text("risk DESC"), "id", "status"],
                    sqlite_where=sa.text(TODO_PREDICATE), postgresql_where=sa.text(TODO_PREDICATE))
    _analyze("case")


def _analyze(table: str) -> None:
    """Statistics for the new index now: SQLite's planner takes an index it has none
    for as no better than the old one (sampled, so quick at any size)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA analysis_limit=1000")
    op.execute(f'ANALYZE "{table}"')


def downgrade() -> None:
    op.drop_index("ix_case_todo_order", table_name="case")
