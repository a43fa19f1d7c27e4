"""Closing the loop: invitations outbox, suppression list, customer events,
control-group flag on cases, scored answers on their own scale (csat, ces).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIME = sa.DateTime(timezone=True)
INVITATION_STATUSES = ("pending", "sending", "sent", "failed", "dead", "skipped")
INVITATION_KINDS = ("resurvey", "survey", "review")
CUSTOMER_EVENT_TYPES = ("churned", "renewed", "complaint_filed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('control', sa.Boolean(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('resurvey_score', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resurvey_scale', sa.String(length=4), nullable=True))
    with op.batch_alter_table('feedback_item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('score', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('scale', sa.String(length=4), nullable=True))

    op.create_table(
        'invitation',
        sa.Column('id', ID, nullable=False),
        sa.Column('customer_id', ID, nullable=False),
        sa.Column('case_id', ID, nullable=True),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('source', sa.String(length=100), nullable=True),
        sa.Column('notifier', sa.String(length=100), nullable=True),
        sa.Column('idempotency_key', sa.String(length=200), nullable=False),
        sa.Column('trigger', sa.String(length=50), nullable=False),
        sa.Column('due_at', TIME, nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.String(length=50), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', TIME, nullable=False),
        sa.Column('claimed_at', TIME, nullable=True),
        sa.Column('sent_at', TIME, nullable=True),
        sa.Column('answered_at', TIME, nullable=True),
        sa.Column('external_id', sa.String(length=200), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', TIME, nullable=False),
        sa.CheckConstraint(_in('status', INVITATION_STATUSES), name=op.f('ck_invitation_status')),
        sa.CheckConstraint(_in('kind', INVITATION_KINDS), name=op.f('ck_invitation_kind')),
        sa.ForeignKeyConstraint(['case_id'], ['case.id'], name=op.f('fk_invitation_case_id_case'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_invitation_customer_id_customer'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_invitation')),
        sa.UniqueConstraint('idempotency_key', name=op.f('uq_invitation_idempotency_key')),
    )
    with op.batch_alter_table('invitation', schema=None) as batch_op:
        batch_op.create_index('ix_invitation_status_next', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_invitation_customer_sent', ['customer_id', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_invitation_case_id'), ['case_id'], unique=False)

    op.create_table(
        'contact_suppression',
        sa.Column('id', ID, nullable=False),
        sa.Column('customer_id', ID, nullable=True),
        sa.Column('address', sa.String(length=320), nullable=True),
        sa.Column('reason', sa.String(length=50), nullable=False),
        sa.Column('created_at', TIME, nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customer.id'],
                                name=op.f('fk_contact_suppression_customer_id_customer'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_suppression')),
    )
    with op.batch_alter_table('contact_suppression', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_suppression_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contact_suppression_address'), ['address'], unique=False)

    op.create_table(
        'customer_event',
        sa.Column('id', ID, nullable=False),
        sa.Column('customer_id', ID, nullable=False),
        sa.Column('type', sa.String(length=20), nullable=False),
        sa.Column('occurred_at', TIME, nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('created_at', TIME, nullable=False),
        sa.CheckConstraint(_in('type', CUSTOMER_EVENT_TYPES), name=op.f('ck_customer_event_type')),
        sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_customer_event_customer_id_customer'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_event')),
    )
    with op.batch_alter_table('customer_event', schema=None) as batch_op:
        batch_op.create_index('ix_customer_event_customer', ['customer_id', 'occurred_at'], unique=False)


def downgrade() -> None:
    op.drop_table('customer_event')
    op.drop_table('contact_suppression')
    op.drop_table('invitation')
    with op.batch_alter_table('feedback_item', schema=None) as batch_op:
        batch_op.drop_column('scale')
        batch_op.drop_column('score')
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.drop_column('resurvey_scale')
        batch_op.drop_column('resurvey_score')
        batch_op.drop_column('control')
