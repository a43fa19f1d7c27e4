"""Schema for issue 11 (identity graph, suggestions, merges).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:00:00

Reserved in the migration chain so that parallel work keeps one linear history;
a revision that ends up empty changes nothing.
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
