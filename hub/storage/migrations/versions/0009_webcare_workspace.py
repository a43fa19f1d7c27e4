"""Schema for issue 14 (case versions, canned answers, saved views).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 01:00:00

* ``case.version`` counts a case's changes (existing cases start at 0), so a
  form rendered from an older version is refused instead of overwriting;
  ``case.answered_publicly_at`` records a public reply.
* ``feedback_item.dismissed_at/_by``: a case-less item an agent dismissed.
* ``canned_answer``, ``saved_view`` (shared inbox views), ``case_presence``
  (who has a case open).

Batch mode for the column changes, because SQLite alters tables by copying them.
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("answered_publicly_at", UTC, nullable=True))
    with op.batch_alter_table("feedback_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dismissed_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("dismissed_by", sa.String(length=100), nullable=True))
    op.create_table(
        "canned_answer",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("language", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_answer")),
    )
    op.create_table(
        "saved_view",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("query", sa.String(length=1000), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_view")),
        sa.UniqueConstraint("name", name=op.f("uq_saved_view_name")),
    )
    op.create_table(
        "case_presence",
        sa.Column("case_id", BIG_ID, nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("seen_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_case_presence_case_id_case"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("case_id", "username", name=op.f("pk_case_presence")),
    )
    op.create_index(op.f("ix_case_presence_seen_at"), "case_presence", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_case_presence_seen_at"), table_name="case_presence")
    op.drop_table("case_presence")
    op.drop_table("saved_view")
    op.drop_table("canned_answer")
    with op.batch_alter_table("feedback_item", schema=None) as batch_op:
        batch_op.drop_column("dismissed_by")
        batch_op.drop_column("dismissed_at")
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_column("answered_publicly_at")
        batch_op.drop_column("version")
