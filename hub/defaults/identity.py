"""The core's identity kinds: e-mail, phone and CRM id, each one a way to
call or mail a customer back (``reachable``).

Plugins add the kinds their sources know people by (a social network's
username or user id) through the same hook; see ``hub_register_identity_kinds``.

Phone numbers are normalized with ``phonenumbers`` to E.164 (``+31612345678``),
so "06-1234 5678", "+31 (0)6 12345678" and "0031612345678" are one number.  A
number written without a country code is read in ``[identity] phone_region``
(default NL), set through ``hub_configure``.
"""

from __future__ import annotations

from typing import Any

import phonenumbers

from hub.sdk.hookspecs import hookimpl
from hub.sdk.schema import IdentityKind

#: Region of numbers written without a country code; ``hub_configure`` sets it from ``[identity] phone_region``.
PHONE_REGION = {"region": "NL"}


def normalize_email(value: str) -> str:
    # Domains are case-insensitive and mail systems treat local parts so in
    # practice: "Jan@Example.nl" and "jan@example.nl" are one person.
    return value.lower()


def normalize_phone(value: str, region: str | None = None) -> str:
    """E.164 when ``phonenumbers`` can read the number ("06-1234 5678" -> "+31612345678"
    in region NL), else its digits and a leading "+" only (an extension, a short code)."""
    try:
        number = phonenumbers.parse(value, region or PHONE_REGION["region"])
    except phonenumbers.NumberParseException:
        number = None
    if number is not None and phonenumbers.is_possible_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return "".join(ch for ch in value if ch.isdigit() or ch == "+")


CORE_KINDS = (
    IdentityKind("email", reachable=True, label="e-mail", normalize=normalize_email),
    IdentityKind("phone", reachable=True, label="phone", normalize=normalize_phone),
    # A CRM contact can be called through the CRM even without e-mail or phone here.
    IdentityKind("crm_id", reachable=True, label="CRM"),
)


@hookimpl
def hub_configure(config: dict[str, Any]) -> None:
    region = (config.get("identity") or {}).get("phone_region")
    if region:
        PHONE_REGION["region"] = str(region).upper()


@hookimpl
def hub_register_identity_kinds() -> list[IdentityKind]:
    return list(CORE_KINDS)
