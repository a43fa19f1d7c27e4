"""privacy_request: erasures a CRM sink must carry out after a GDPR erase

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:00:00

The outbox of CRM erasures (``hub.engine.privacy``): retried through outages,
never lost.  Erased items and raw events stay as emptied tombstones (no schema
change): their unique keys keep a re-delivery or a backfill from bringing the
person's data back.  The status list is copied, not imported (see 0002).
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

STATUSES = ("pending", "sending", "sent", "failed", "dead")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "privacy_request",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("sink", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("subject", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})",
                           name=op.f("ck_privacy_request_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_request")),
    )
    op.create_index("ix_privacy_request_status_next", "privacy_request", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_privacy_request_status_next", table_name="privacy_request")
    op.drop_table("privacy_request")
