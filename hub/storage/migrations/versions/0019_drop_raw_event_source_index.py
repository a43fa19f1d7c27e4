"""raw_event loses ``ix_raw_event_source`` (issue 17, points 1, 2 and 5).

Every look-up by source is also served by the unique constraint on
``(source, dedupe_key)``, which leads with the source, so the single-column
index only cost writes: one B-tree entry more for every raw event stored
(each webhook delivery, each imported or pulled record).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 04:05:00
"""
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("raw_event") as batch_op:
        batch_op.drop_index("ix_raw_event_source")


def downgrade() -> None:
    with op.batch_alter_table("raw_event") as batch_op:
        batch_op.create_index("ix_raw_event_source", ["source"], unique=False)
