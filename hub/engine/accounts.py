"""API tokens and user passwords.

Tokens are random (``secrets``), shown once, and stored only as SHA-256: a
leaked database does not leak usable tokens.  Passwords use Werkzeug's
salted hash (scrypt).
"""

from __future__ import annotations

import functools
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from hub.sdk.schema import utcnow
from hub.storage import models as m

ROLES = ("admin", "agent", "viewer")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str) -> str:
    token = "fh_" + secrets.token_urlsafe(32)
    session.add(m.ApiToken(name=name, token_hash=_digest(token), prefix=token[:10]))
    return token


def verify_token(session: Session, token: str) -> m.ApiToken | None:
    row = session.scalars(select(m.ApiToken).where(m.ApiToken.token_hash == _digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row


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
