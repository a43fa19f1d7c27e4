"""API token scope and expiry; audit_event indexes for the audit page's filters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:00:00

Tokens made before scopes existed become ``write`` (server default): they
could post feedback and read everything, which ``write`` keeps, so no
integration breaks on upgrade; ``admin`` (erasing customers, admin actions)
is never given to a token nobody chose it for.  They keep no expiry.
Batch mode, because SQLite alters tables by copying them.
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

#: Keep equal to hub.storage.models.TOKEN_SCOPES.
SCOPES = ("read", "write", "admin")


def upgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=10), nullable=False, server_default="write"))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(op.f("ck_api_token_scope"),
                                         f"scope IN ({', '.join(repr(s) for s in SCOPES)})")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_actor"), ["actor"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_actor"))
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_api_token_scope"), type_="check")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("scope")
