"""identity graph: match keys, merges that a split undoes, suggestions to review

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:00:00

``identity.match_key`` and ``customer.name_key`` are filled for existing rows
here, with the folding rules as they are at this revision (copied, not
imported: a migration describes the schema of its time).  Batch mode, because
SQLite alters tables by copying them.
"""
import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

SUGGESTION_STATUSES = ("pending", "confirmed", "rejected")
#: Kinds whose values are addresses or numbers, never handles, at this revision.
NOT_HANDLES = ("phone", "crm_id")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def _name_key(name: str | None) -> str | None:
    if not name:
        return None
    key = " ".join(re.sub(r"[^\w]+", " ", _fold(name)).split())
    return key[:200] or None


def _match_key(kind: str, value: str) -> str | None:
    if kind in NOT_HANDLES:
        return None
    if kind == "email":
        value = value.rsplit("@", 1)[0]
    key = re.sub(r"[^0-9a-z]", "", _fold(value))
    return key[:200] or None


def upgrade() -> None:
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("merged_into_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                      nullable=True))
        batch_op.create_index(batch_op.f("ix_customer_name_key"), ["name_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_merged_into_id"), ["merged_into_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_customer_merged_into_id_customer"), "customer",
                                    ["merged_into_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("match_key", sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f("ix_identity_match_key"), ["match_key"], unique=False)
    with op.batch_alter_table("feedback_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identities", sa.JSON(), nullable=True))

    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "identity_suggestion",
        sa.Column("id", big_id, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("other_customer_id", big_id, nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("evidence", sa.String(length=500), nullable=False),
        sa.Column("rule", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in SUGGESTION_STATUSES)})",
                           name=op.f("ck_identity_suggestion_status")),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], name=op.f("fk_identity_suggestion_customer_id_customer"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["other_customer_id"], ["customer.id"],
                                name=op.f("fk_identity_suggestion_other_customer_id_customer"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_suggestion")),
    )
    with op.batch_alter_table("identity_suggestion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_suggestion_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_identity_suggestion_other_customer_id"), ["other_customer_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_identity_suggestion_status"), ["status"], unique=False)

    op.create_table(
        "customer_merge",
        sa.Column("id", big_id, nullable=False),
        sa.Column("survivor_id", big_id, nullable=False),
        sa.Column("merged_id", big_id, nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("moved", sa.JSON(), nullable=False),
        sa.Column("split_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("split_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["survivor_id"], ["customer.id"], name=op.f("fk_customer_merge_survivor_id_customer"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["merged_id"], ["customer.id"], name=op.f("fk_customer_merge_merged_id_customer"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_merge")),
    )
    with op.batch_alter_table("customer_merge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_merge_survivor_id"), ["survivor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_merge_merged_id"), ["merged_id"], unique=False)

    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    customer = sa.table("customer", sa.column("id"), sa.column("name"), sa.column("name_key"))
    identity = sa.table("identity", sa.column("id"), sa.column("kind"), sa.column("value"), sa.column("match_key"))
    names = [{"i": cid, "k": _name_key(name)} for cid, name in conn.execute(
        sa.select(customer.c.id, customer.c.name).where(customer.c.name.is_not(None)))]
    if names:
        conn.execute(customer.update().where(customer.c.id == sa.bindparam("i")).values(
            name_key=sa.bindparam("k")), names)
    keys = [{"i": iid, "k": _match_key(kind, value)} for iid, kind, value in conn.execute(
        sa.select(identity.c.id, identity.c.kind, identity.c.value))]
    keys = [k for k in keys if k["k"]]
    if keys:
        conn.execute(identity.update().where(identity.c.id == sa.bindparam("i")).values(
            match_key=sa.bindparam("k")), keys)


def downgrade() -> None:
    with op.batch_alter_table("customer_merge", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_merge_merged_id"))
        batch_op.drop_index(batch_op.f("ix_customer_merge_survivor_id"))
    op.drop_table("customer_merge")
    with op.batch_alter_table("identity_suggestion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_suggestion_status"))
        batch_op.drop_index(batch_op.f("ix_identity_suggestion_other_customer_id"))
        batch_op.drop_index(batch_op.f("ix_identity_suggestion_customer_id"))
    op.drop_table("identity_suggestion")
    with op.batch_alter_table("feedback_item", schema=None) as batch_op:
        batch_op.drop_column("identities")
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_match_key"))
        batch_op.drop_column("match_key")
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_customer_merged_into_id_customer"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_customer_merged_into_id"))
        batch_op.drop_index(batch_op.f("ix_customer_name_key"))
        batch_op.drop_column("merged_into_id")
        batch_op.drop_column("name_key")
