"""The core's identity kinds: e-mail, phone and CRM id, each one a way to
call or mail a customer back (``reachable``).

Plugins add the kinds their sources know people by (a social network's
username or user id) through the same hook; see ``hub_register_identity_kinds``.
"""

from __future__ import annotations

from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import IdentityKind


def normalize_email(value: str) -> str:
    # Domains are case-insensitive and mail systems treat local parts so in
    # practice: "Jan@Example.nl" and "jan@example.nl" are one person.
    return value.lower()


def normalize_phone(value: str) -> str:
    """Digits and a leading "+" only: "+31 (0)6-1234 5678" -> "+310612345678"."""
    return "".join(ch for ch in value if ch.isdigit() or ch == "+")


CORE_KINDS = (
    IdentityKind("email", reachable=True, label="e-mail", normalize=normalize_email),
    IdentityKind("phone", reachable=True, label="phone", normalize=normalize_phone),
    # A CRM contact can be called through the CRM even without e-mail or phone here.
    IdentityKind("crm_id", reachable=True, label="CRM"),
)


@hookimpl
def hub_register_identity_kinds() -> list[IdentityKind]:
    return list(CORE_KINDS)
