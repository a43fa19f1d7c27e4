"""One open case per customer, enforced by the database (issue 15).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:00:00

A partial unique index on ``case`` (customer_id) WHERE status is open (new,
assigned, scheduled, contacted: ``hub.sdk.schema.OPEN_CASE_STATUSES``, the
statuses the pipeline joins as "the customer's open case"), on PostgreSQL and
SQLite alike.  Concurrent pipelines then converge on one case instead of
opening one each (``hub.engine.cases.open_or_join``).

Before the index can exist, a customer's several open cases (what concurrent
ingests on PostgreSQL made before) are merged the way a customer merge combines
two open cases (``hub.engine.merge``), because closing the later ones alone
would strand their items and leave two callbacks running:

* the earliest opened case stays; it takes the others' items, the highest risk
  and priority, the earliest SLA and the first owner;
* one live callback stays: the kept case's own, else the earliest live one of
  the others, moved to the kept case; every other live one is cancelled
  (``dead`` with ``cancelled_at``), and where the CRM already holds its task,
  marked for sync so the next dispatch withdraws it there;
* the others are closed with outcome ``merged``; each merge writes the same two
  audit events as a customer merge (``case.merged`` on the closed case,
  ``case.merged_in`` on the kept one), by actor ``migration 0010``.

On PostgreSQL the migration locks ``case`` against writes first, so nodes
still serving the old release wait for it instead of slipping a second open
case in between the repair and the index.

No index on ``followup`` is needed for "one callback": the pipeline plans a
callback only for a case it inserted itself, under the idempotency key
``hub-case-<id>-callback``, which is unique already; a batch that loses the
race for the case inserts no case and so no callback.

Closed cases and finished follow-ups keep their history as it is.  The
planner's load is left alone, as a merge leaves it (a cancelled callback's slot
frees up when the planner next rebuilds).  Downgrade drops the index; the
merges stay (they are a repair, not a schema change).
"""
import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

#: Frozen here: a migration must build the same schema whatever the code says later.
OPEN = ("new", "assigned", "scheduled", "contacted")
PREDICATE = f"status IN ({', '.join(repr(s) for s in OPEN)})"
INDEX = "uq_case_open_customer"
LIVE_FOLLOWUP = ("pending", "sending", "sent", "failed")
PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
ACTOR = "migration 0010"

UTC = sa.DateTime(timezone=True)
CASE = sa.table("case", sa.column("id"), sa.column("customer_id"), sa.column("status"), sa.column("priority"),
                sa.column("risk"), sa.column("owner"), sa.column("outcome"), sa.column("version"),
                sa.column("sla_due_at", UTC), sa.column("opened_at", UTC), sa.column("updated_at", UTC),
                sa.column("closed_at", UTC))
ITEM = sa.table("feedback_item", sa.column("id"), sa.column("case_id"))
FOLLOWUP = sa.table("followup", sa.column("id"), sa.column("case_id"), sa.column("status"),
                    sa.column("external_id"), sa.column("crm_status"), sa.column("last_error"),
                    sa.column("cancelled_at", UTC), sa.column("sync_pending"), sa.column("sync_next_at", UTC),
                    sa.column("sync_attempts"), sa.column("sync_error"))
AUDIT = sa.table("audit_event", sa.column("at", UTC), sa.column("actor"), sa.column("action"),
                 sa.column("case_id"), sa.column("detail", sa.JSON))


def upgrade() -> None:
    conn = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    if conn.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # the hub stores naive UTC on SQLite
    elif conn.dialect.name == "postgresql":
        # Old nodes still serving wait (not fail) until the index exists: no second
        # open case can be committed between the repair and the index.
        conn.execute(sa.text('LOCK TABLE "case" IN SHARE ROW EXCLUSIVE MODE'))
    crowded = conn.execute(sa.select(CASE.c.customer_id).where(
        CASE.c.status.in_(OPEN), CASE.c.customer_id.is_not(None)).group_by(CASE.c.customer_id)
        .having(sa.func.count() > 1).order_by(CASE.c.customer_id)).scalars().all()
    for customer_id in crowded:
        _merge_open_cases(conn, customer_id, now)
    op.create_index(INDEX, "case", ["customer_id"], unique=True,
                    postgresql_where=sa.text(PREDICATE), sqlite_where=sa.text(PREDICATE))


def _merge_open_cases(conn, customer_id: int, now: dt.datetime) -> None:
    keep, *others = conn.execute(sa.select(CASE).where(CASE.c.customer_id == customer_id, CASE.c.status.in_(OPEN))
                                 .order_by(CASE.c.opened_at, CASE.c.id)).all()
    risk, priority, owner = keep.risk, keep.priority, keep.owner
    slas = [c.sla_due_at for c in (keep, *others) if c.sla_due_at is not None]
    cancelled = _one_live_callback(conn, keep.id, [c.id for c in others], now)
    for other in others:
        items = conn.execute(sa.update(ITEM).where(ITEM.c.case_id == other.id).values(case_id=keep.id)).rowcount
        risk = max(risk, other.risk)
        if PRIORITY_RANK.get(other.priority, 1) > PRIORITY_RANK.get(priority, 1):
            priority = other.priority
        owner = owner or other.owner
        conn.execute(sa.update(CASE).where(CASE.c.id == other.id).values(
            status="closed", closed_at=sa.func.coalesce(CASE.c.closed_at, now), updated_at=now,
            outcome=sa.func.coalesce(CASE.c.outcome, "merged"), version=CASE.c.version + 1))
        conn.execute(sa.insert(AUDIT), [
            {"at": now, "actor": ACTOR, "action": "case.merged", "case_id": other.id,
             "detail": {"from": other.status, "to": "closed", "into_case_id": keep.id,
                        "followups_cancelled": cancelled.get(other.id) or None,
                        "reason": "several open cases of one customer (before one open case per customer)"}},
            {"at": now, "actor": ACTOR, "action": "case.merged_in", "case_id": keep.id,
             "detail": {"from_case_id": other.id, "items": items}},
        ])
    conn.execute(sa.update(CASE).where(CASE.c.id == keep.id).values(
        risk=risk, priority=priority, owner=owner, sla_due_at=min(slas) if slas else None, updated_at=now,
        version=CASE.c.version + 1))


def _one_live_callback(conn, keep_id: int, other_ids: list[int], now: dt.datetime) -> dict[int, list[int]]:
    """Keep one live follow-up on the kept case, cancel the rest; returns case id -> cancelled follow-up ids."""
    live = conn.execute(sa.select(FOLLOWUP).where(FOLLOWUP.c.case_id.in_([keep_id, *other_ids]),
                                                  FOLLOWUP.c.status.in_(LIVE_FOLLOWUP))
                        .order_by(FOLLOWUP.c.id)).all()
    kept = next((f for f in live if f.case_id == keep_id), None) or next(iter(live), None)
    cancelled: dict[int, list[int]] = {}
    for f in live:
        if f is kept:
            if f.case_id != keep_id:
                conn.execute(sa.update(FOLLOWUP).where(FOLLOWUP.c.id == f.id).values(case_id=keep_id))
            continue
        values = {"status": "dead", "cancelled_at": now, "last_error": f"cancelled: case merged into case {keep_id}"}
        if f.external_id is not None and f.crm_status != "CANCELLED":  # the CRM holds the task: withdraw it there
            values.update(sync_pending=True, sync_next_at=now, sync_attempts=0, sync_error=None)
        conn.execute(sa.update(FOLLOWUP).where(FOLLOWUP.c.id == f.id).values(**values))
        cancelled.setdefault(f.case_id, []).append(f.id)
    return cancelled


def downgrade() -> None:
    op.drop_index(INDEX, table_name="case")
