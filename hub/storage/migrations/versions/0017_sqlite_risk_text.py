"""SQLite: the all-feedback view's order index holds what its filters test (issue 17, point 4).

The all-feedback view lists items worst first (``risk DESC, id DESC``) and, for
a common search term, walks them in that order until a page of matches: at a
million items "storing" is in 1 of the first 250 items at the top risk, so a
page of 50 walks ~12,000.  With ``ix_feedback_item_risk_id`` each of them was a
row read from the table (large rows: texts, reasons, extras) just to test the
term: 14 ms.  ``ix_feedback_item_risk_text`` replaces it with the text, the case
link and the author beside the order, so SQLite tests the term from the index
and reads only the rows that pass: 2.3 ms.  It deliberately leaves out
``dismissed_at``: covering the view's capped count too, it would tempt the
planner to count in risk order (from the lowest, where a term is rarest:
0.2 s) instead of by rowid (7 ms).  PostgreSQL keeps ``ix_feedback_item_risk_id``:
a long text does not fit a B-tree entry there.

The price is paid on writes: each item's text is in one more B-tree.  Measured
with ``bench/sqlite_import.py --items 20000``: 5,123-5,649 -> 4,306-4,382 items/s
(the raw baseline, which writes into the same schema, slowed alike: the ratio
stayed 0.15-0.17).  The inbox is read all day; imports are occasional.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 02:00:00
"""
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_feedback_item_risk_text", "feedback_item", ["risk", "id", "case_id", "customer_id", "text"])
        op.drop_index("ix_feedback_item_risk_id", table_name="feedback_item")
        # Statistics for the new index now (sampled: quick at any size), not at the next statistics job.
        op.execute("PRAGMA analysis_limit=1000")
        op.execute("ANALYZE feedback_item")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_feedback_item_risk_id", "feedback_item", ["risk", "id"])
        op.drop_index("ix_feedback_item_risk_text", table_name="feedback_item")
