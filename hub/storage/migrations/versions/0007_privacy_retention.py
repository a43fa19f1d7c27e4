"""Schema for issue 16 (GDPR erase, retention).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:00:00

Reserved in the migration chain so that parallel work keeps one linear history;
a revision that ends up empty changes nothing.
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
