"""API tokens and user passwords.

Tokens are random (``secrets``), shown once, and stored only as SHA-256: a
leaked database does not leak usable tokens.  Passwords use Werkzeug's
salted hash (scrypt).

Each token has a scope - ``read`` (GET), ``write`` (also POST/PATCH: feedback
in, case updates) or ``admin`` (also DELETE and admin actions such as erasing a
customer) - and optionally an expiry, after which it answers 401 like a
revoked one.  New tokens default to ``write``, what every token could do
before scopes existed (migration 0006 gives existing tokens the same).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from hub.sdk.schema import utcnow
from hub.storage import models as m

ROLES = ("admin", "agent", "viewer")
#: Token scopes, weakest first: each includes the ones before it.
SCOPES = m.TOKEN_SCOPES
DEFAULT_SCOPE = "write"
#: Longest expiry a token may be given (ten years; longer is "never", i.e. None).
MAX_EXPIRY_DAYS = 3650


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scope_allows(scope: str, needed: str) -> bool:
    """Whether a token of ``scope`` may do what needs ``needed``."""
    return scope in SCOPES and SCOPES.index(scope) >= SCOPES.index(needed)


def create_token(session: Session, name: str, scope: str = DEFAULT_SCOPE,
                 expires_at: dt.datetime | None = None) -> str:
    """Add a token and return its value (shown once; only its SHA-256 is stored)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    token = "fh_" + secrets.token_urlsafe(32)
    session.add(m.ApiToken(name=name, token_hash=_digest(token), prefix=token[:10], scope=scope,
                           expires_at=expires_at))
    return token


def expiry_after(now: dt.datetime, days: int | None) -> dt.datetime | None:
    """The expiry ``days`` after ``now`` (None: never); ValueError outside 1..MAX_EXPIRY_DAYS."""
    if days is None:
        return None
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise ValueError(f"expiry must be 1-{MAX_EXPIRY_DAYS} days")
    return now + dt.timedelta(days=days)


@dataclass(frozen=True)
class TokenCheck:
    """What a presented token is: ``row`` when usable, else ``problem`` (and the row when known)."""

    row: m.ApiToken | None
    problem: str | None  # None, "unknown", "revoked" or "expired"

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_token(session: Session, token: str, now: dt.datetime) -> TokenCheck:
    row = session.scalars(select(m.ApiToken).where(m.ApiToken.token_hash == _digest(token))).first()
    if row is None:
        return TokenCheck(None, "unknown")
    if row.revoked_at is not None:
        return TokenCheck(row, "revoked")
    if row.expires_at is not None and row.expires_at <= now:
        return TokenCheck(row, "expired")
    return TokenCheck(row, None)


def verify_token(session: Session, token: str, now: dt.datetime | None = None) -> m.ApiToken | None:
    """The token's row when it is usable at ``now`` (default: the wall clock), else None."""
    checked = check_token(session, token, now or utcnow())
    return checked.row if checked.ok else None


def create_user(session: Session, username: str, password: str, role: str = "agent") -> m.User:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    existing = session.scalars(select(m.User).where(m.User.username == username)).first()
    if existing:
        existing.password_hash = generate_password_hash(password)
        existing.role = role
        end_sessions(existing)  # a new password signs out whoever knew the old one
        return existing
    user = m.User(username=username, password_hash=generate_password_hash(password), role=role, created_at=utcnow())
    session.add(user)
    return user


def end_sessions(user: m.User) -> None:
    """End every signed-in session of ``user`` (see ``User.session_epoch``)."""
    user.session_epoch = (user.session_epoch or 0) + 1


@functools.cache
def _dummy_hash() -> str:
    # Made once, with the same method and cost as real hashes, so checking it
    # takes as long as checking a real password.
    return generate_password_hash(secrets.token_urlsafe(16))


def check_password(user: m.User | None, password: str) -> bool:
    """True if ``user`` exists, is active and ``password`` is theirs.

    Unknown (``None``) and inactive users cost one hash check too: answering
    faster for them would tell an attacker which usernames exist.
    """
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return False
    matches = check_password_hash(user.password_hash, password)
    return bool(user.active) and matches
