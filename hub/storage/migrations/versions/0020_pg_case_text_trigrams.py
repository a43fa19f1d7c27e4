"""PostgreSQL: a trigram index on the text of the items that belong to a case (issue 17, point 4).

A common search term's case views (the to-do list first) need the cases that
hold a matching item.  With ``EXISTS`` per case the planner joined through the
items' case index in case order and read every case item's text from the heap:
26,540 texts at a million items, ~38 ms for "storing".  The index holds
``lower(text)`` of case items only (NULL, which a trigram index keeps no
trigrams of, for the rest), so hub.storage.search.cases_matching reads the
matching case items from it (4,280 for "storing") and their cases by primary
key: ~17 ms.  Only a query that names the expression uses it.

The index is built in the migration's transaction: writes to the items wait
while it builds (about a second at a million items with 26,540 case items on a
2-core machine; the expression is computed for every item).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 18:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

NAME = "ix_feedback_item_case_text_trgm"
#: Frozen here as it was written (hub.storage.models.CASE_ITEM_TEXT may move on).
EXPRESSION = "lower(CASE WHEN case_id IS NOT NULL THEN text END) gin_trgm_ops"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(NAME, "feedback_item", [sa.text(EXPRESSION)], postgresql_using="gin")
        # The planner estimates a term from the statistics of the indexed expression.
        op.execute("ANALYZE feedback_item")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(NAME, table_name="feedback_item")
