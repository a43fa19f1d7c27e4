"""Business-hours SLA, teams, planner load and two-way CRM sync state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:00:00

* ``case.team`` (who calls back) and ``case.escalated_at`` (SLA breach handled once);
* ``followup``: the team, a cancellation time and what the CRM's task holds
  (due time, status, owner) plus the sync's own retry state;
* ``planner_load``: callbacks planned per team and hour slot (kept incrementally);
* ``inbound_load``: an imported call-volume series;
* ``staff_alert``: the outbox of SLA alerts to team leads (:mod:`hub.engine.sla_alerts`).

Existing follow-ups already in a CRM are taken to hold their current due time
(``crm_due_at = due_at``), so the upgrade itself sends no updates.  Batch mode,
because SQLite alters tables by copying them.
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("followup", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("crm_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("crm_status", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("crm_owner", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("sync_pending", sa.Boolean(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("sync_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("sync_next_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sync_error", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_followup_sync_pending"), ["sync_pending"], unique=False)
    op.execute("UPDATE followup SET crm_due_at = due_at WHERE external_id IS NOT NULL")
    op.create_table(
        "planner_load",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("team", sa.String(length=50), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned", sa.Integer(), nullable=False),
        sa.CheckConstraint("planned >= 0", name=op.f("ck_planner_load_planned")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planner_load")),
        sa.UniqueConstraint("team", "slot", name=op.f("uq_planner_load_team_slot")),
    )
    op.create_index(op.f("ix_planner_load_slot"), "planner_load", ["slot"], unique=False)
    op.create_table(
        "inbound_load",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calls", sa.Float(), nullable=False),
        sa.CheckConstraint("calls >= 0", name=op.f("ck_inbound_load_calls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_load")),
        sa.UniqueConstraint("source", "hour", name=op.f("uq_inbound_load_source_hour")),
    )
    op.create_index(op.f("ix_inbound_load_hour"), "inbound_load", ["hour"], unique=False)
    op.create_table(
        "staff_alert",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("notifier", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'failed', 'dead')",
                           name=op.f("ck_staff_alert_status")),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"], name=op.f("fk_staff_alert_case_id_case"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_alert")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_staff_alert_idempotency_key")),
    )
    op.create_index(op.f("ix_staff_alert_case_id"), "staff_alert", ["case_id"], unique=False)
    op.create_index("ix_staff_alert_status_next", "staff_alert", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_staff_alert_status_next", table_name="staff_alert")
    op.drop_index(op.f("ix_staff_alert_case_id"), table_name="staff_alert")
    op.drop_table("staff_alert")
    op.drop_index(op.f("ix_inbound_load_hour"), table_name="inbound_load")
    op.drop_table("inbound_load")
    op.drop_index(op.f("ix_planner_load_slot"), table_name="planner_load")
    op.drop_table("planner_load")
    with op.batch_alter_table("followup", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_followup_sync_pending"))
        for column in ("sync_error", "sync_next_at", "sync_attempts", "sync_pending", "crm_owner", "crm_status",
                       "crm_due_at", "cancelled_at", "team"):
            batch_op.drop_column(column)
    with op.batch_alter_table("case", schema=None) as batch_op:
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("team")
