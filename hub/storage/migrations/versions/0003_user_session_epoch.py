"""user.session_epoch: logout and password change end every session

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:40:00

Existing users start at 0 (server default), so sessions signed in before the
upgrade (which carry no epoch) are asked to sign in again.  Batch mode, because
SQLite alters tables by copying them.
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
