"""status check constraints on case, followup and raw_event

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:00:00

The status lists are copied here, not imported: a migration describes the
schema as it was at this revision, whatever the code says later.  A later
change to a status list gets a revision of its own.  Batch mode, because
SQLite can add a constraint only by copying the table.
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

STATUSES = {
    "case": ("new", "assigned", "scheduled", "contacted", "resolved", "closed"),
    "followup": ("pending", "sending", "sent", "failed", "dead", "done"),
    "raw_event": ("pending", "processed", "skipped", "failed"),
}


def _condition(statuses: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(s) for s in statuses)})"


def upgrade() -> None:
    for table, statuses in STATUSES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_check_constraint(op.f(f"ck_{table}_status"), _condition(statuses))


def downgrade() -> None:
    for table in reversed(list(STATUSES)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_status"), type_="check")
