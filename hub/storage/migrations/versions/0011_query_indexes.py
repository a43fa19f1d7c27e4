"""Index-backed inbox and API queries at a million items (issue 17).

Filled in by the performance work: identity (customer_id, kind), composite
indexes for the common filters, full-text search for ``q``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:00:00
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
