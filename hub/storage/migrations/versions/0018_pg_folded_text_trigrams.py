"""PostgreSQL: the items' trigram index on ``lower(text)``, as names and identity values have it (issue 17, point 4).

A search term is tested on PostgreSQL as ``lower(column) LIKE lower(term)``
(hub.storage.search.Contains).  In a multi-byte database ``ILIKE`` is exactly
that, but it lowers the pattern again for every row it tests: the 26,000 case
items a common term's to-do view tests at a million items took 54 ms with
``ILIKE`` and 30 ms with the pattern lowered once.  The planner estimates (and
the trigram index serves) only the expression an index is on, so the items'
index moves from ``text`` to ``lower(text)``: on ``text`` the planner took
``lower(text) LIKE`` for a rare term (a default estimate of ~100 rows) and
scanned every item in parallel for a common one (0.6 s).  The items' text is
never looked up by equality, so the reason names and identities had for the
folded form from the start (models.trigram_index) does not bite here.

The index is built in the migration's transaction: writes to the items wait
while it builds (about 12 s at a million items on a 2-core machine).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 03:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

NAME = "ix_feedback_item_text_trgm"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(NAME, table_name="feedback_item")
        op.create_index(NAME, "feedback_item", [sa.text("lower(text) gin_trgm_ops")], postgresql_using="gin")
        # The planner's estimate of a term comes from the statistics of the indexed expression.
        op.execute("ANALYZE feedback_item")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(NAME, table_name="feedback_item")
        op.create_index(NAME, "feedback_item", ["text"], postgresql_using="gin",
                        postgresql_ops={"text": "gin_trgm_ops"})
        op.execute("ANALYZE feedback_item")
