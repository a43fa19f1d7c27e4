"""The hub's tables: SQLAlchemy 2.0 typed models, one module.

Migrations live in ``hub/migrations`` (Alembic); change a model, then add a
revision (``alembic revision --autogenerate`` with ``hub/migrations/alembic.ini``).
Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from hub.sdk.schema import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """DateTime that always comes back timezone-aware (SQLite forgets tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        # SQLite stores text; keep it naive-UTC there so comparisons sort right.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# BigInteger ids on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Opaque public reference (links, exports) that does not leak row counts;
    #: also lets a multi-row INSERT map returned ids back to its rows.
    ref: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: uuid.uuid4().hex)
    name: Mapped[str | None] = mapped_column(String(200))
    #: Yearly revenue with this customer (from the CRM), for scoring and reports.
    value: Mapped[float | None] = mapped_column(Float)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    identities: Mapped[list[Identity]] = relationship(back_populates="customer")


class Identity(Base):
    """One way to recognise a customer (email, social handle, CRM id...)."""

    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(320))
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    #: Where we learned it, e.g. "survey answer nps_survey/abc" - shown to agents.
    evidence: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="identities")


class RawEvent(Base):
    """What arrived, verbatim, for replay and audit."""

    __tablename__ = "raw_event"
    __table_args__ = (UniqueConstraint("source", "dedupe_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(50), default="record")
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[Any] = mapped_column(JSON)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: pending -> processed | skipped | failed (kept with its error for replay)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text)


class Case(Base):
    """A customer's open loop: from the complaint to the callback's outcome."""

    __tablename__ = "case"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="new", index=True)
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    risk: Mapped[int] = mapped_column(Integer, default=0, index=True)
    owner: Mapped[str | None] = mapped_column(String(100))
    sla_due_at: Mapped[dt.datetime | None] = mapped_column()
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    contacted_at: Mapped[dt.datetime | None] = mapped_column()
    closed_at: Mapped[dt.datetime | None] = mapped_column()
    outcome: Mapped[str | None] = mapped_column(String(50))
    root_cause: Mapped[str | None] = mapped_column(String(200))
    resolved: Mapped[bool | None] = mapped_column(Boolean)
    resurvey_nps: Mapped[int | None] = mapped_column(Integer)

    customer: Mapped[Customer | None] = relationship()


class FeedbackItem(Base):
    __tablename__ = "feedback_item"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_feedback_item_customer_occurred", "customer_id", "occurred_at"),
        Index("ix_feedback_item_risk_id", "risk", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    raw_event_id: Mapped[int | None] = mapped_column(ForeignKey("raw_event.id"))
    channel: Mapped[str] = mapped_column(String(20), index=True)
    occurred_at: Mapped[dt.datetime] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    text: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(10))
    nps: Mapped[int | None] = mapped_column(Integer)
    sentiment: Mapped[float | None] = mapped_column(Float)
    category: Mapped[str | None] = mapped_column(String(10), index=True)
    risk: Mapped[int] = mapped_column(Integer, default=0)
    risk_reasons: Mapped[list[Any]] = mapped_column(default=list)
    reach: Mapped[int | None] = mapped_column(Integer)
    thread_id: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(500))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"), index=True)


class Followup(Base):
    """The outbox: one row per callback the hub asks a sink to schedule."""

    __tablename__ = "followup"
    __table_args__ = (Index("ix_followup_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"), index=True)
    sink: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    due_at: Mapped[dt.datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[dt.datetime | None] = mapped_column()
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    completed_at: Mapped[dt.datetime | None] = mapped_column()
    external_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship()


class ConnectorState(Base):
    """Cursor and health of one source instance (one row per instance+stream)."""

    __tablename__ = "connector_state"
    __table_args__ = (UniqueConstraint("instance", "stream"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instance: Mapped[str] = mapped_column(String(100))
    stream: Mapped[str] = mapped_column(String(100), default="default")
    cursor: Mapped[str | None] = mapped_column(String(200))
    #: Highest cursor seen in a run that has not finished yet (unsorted streams).
    signpost: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_run_at: Mapped[dt.datetime | None] = mapped_column()
    last_success_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    last_item_at: Mapped[dt.datetime | None] = mapped_column()
    items_total: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEvent(Base):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class User(Base):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20), default="agent")
    locale: Mapped[str | None] = mapped_column(String(10))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """API bearer tokens; only a SHA-256 of the token is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()


class SchedulerLease(Base):
    """Who runs the scheduler on this database (one row, renewed as a lease)."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column()
