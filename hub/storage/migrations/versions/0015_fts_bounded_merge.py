"""SQLite's text indexes merge in bounded steps (issue 17, point 2).

FTS5 merges an index's segments as it goes (``automerge``), and when a level
holds ``crisismerge`` segments it merges them all at once, inside whatever
write added the last one.  A merge rewrites every doclist it covers, so its
cost grows with the index: at 10,000 webhook items a worker batch of five
that happened to trigger one held SQLite's one write lock for 50-90 ms
(against ~6 ms for the batch itself), and every delivery waited for it.

From here on the ingest that adds rows does a bounded amount of merge work
itself (``hub.storage.search.index_new_items``: FTS ``merge`` with a page
budget proportional to the rows it added), and FTS5 no longer merges on its
own; ``crisismerge`` stays as the safety net, raised so that it is not the
normal path.  Measured on 100,000 identical texts in batches of five: the
slowest write 63 ms before, 11 ms (plus at most 17 ms of merge) after, with
the same total work and about as many segments.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:00:00
"""
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

#: The FTS tables of migration 0011 (a frozen copy, as migrations keep).
FTS_TABLES = ("feedback_item_fts", "customer_fts", "identity_fts")


def _set(automerge: int, crisismerge: int) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for fts in FTS_TABLES:
        op.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('automerge', {automerge})")
        op.execute(f"INSERT INTO {fts}({fts}, rank) VALUES ('crisismerge', {crisismerge})")


def upgrade() -> None:
    _set(automerge=0, crisismerge=64)


def downgrade() -> None:
    _set(automerge=4, crisismerge=16)  # FTS5's defaults
