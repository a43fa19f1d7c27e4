"""Poison: one record that a database cannot store must not take its batch with it.

Two defences, used by every ingest path (pulls, webhook deliveries, replays):

* :func:`storable` cleans an item at the edge, the same on SQLite and
  PostgreSQL: NUL characters removed (PostgreSQL text cannot hold them), lone
  surrogates replaced (no UTF-8 encoding exists for them), and values longer
  than their column (``hub.storage.models``) shortened or, for identities that
  a shortened value would make wrong, dropped;
* :func:`safe_reason` is what the hub stores about a failure for the admin:
  the exception type and a short reason, never its message, which can quote
  the customer's text or the SQL parameters.

The batch isolation itself (re-running a failed batch with the offending
record set aside) is :func:`hub.engine.raw_events.ingest_isolated`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from hub.sdk.http import HttpError
from hub.sdk.schema import CustomerRef, FeedbackIn, RawIn

#: Column lengths of hub.storage.models that feedback values end up in.
EXTERNAL_ID, THREAD_ID, URL, LANGUAGE, CHANNEL = 200, 200, 500, 10, 20
NAME, IDENTITY_VALUE, IDENTITY_KIND = 200, 320, 20
DEDUPE_KEY, RAW_KIND = 200, 50


def clean_text(value: str) -> str:
    """``value`` without NUL and with each lone surrogate replaced by U+FFFD
    (the very same object when it needs neither: the common case stays cheap)."""
    if value.isascii():  # no surrogate can be in it; only a NUL could
        return value.replace("\x00", "") if "\x00" in value else value
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A valid surrogate pair (from JSON "\ud83d\ude00") becomes its character; a lone one U+FFFD.
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def clean_json(value: Any) -> Any:
    """A JSON value with every string (keys too) cleaned by :func:`clean_text`
    (tuples become lists).  A value that needs no cleaning comes back as the
    same object, so that callers can tell "unchanged" by identity, without copies."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return value if _is_clean(value) else {
            clean_json(k) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return value if _is_clean(value) else [clean_json(v) for v in value]
    if isinstance(value, tuple):
        return [clean_json(v) for v in value]
    return value


def _is_clean(value: Any) -> bool:
    """Whether :func:`clean_json` would give ``value`` back unchanged: one flat
    walk, no copies (a subclass of str, dict or list is left to the full path)."""
    todo = [value]
    while todo:
        v = todo.pop()
        t = type(v)
        if t is str:
            if not (v.isascii() and "\x00" not in v) and clean_text(v) is not v:
                return False
        elif t is dict:
            for k in v:
                if isinstance(k, str) and not (type(k) is str and k.isascii() and "\x00" not in k) \
                        and clean_text(k) is not k:
                    return False
            todo.extend(v.values())
        elif t is list:
            todo.extend(v)
        elif isinstance(v, str | dict | list | tuple):
            return False
    return True


def _fit_key(value: str, limit: int) -> str:
    """A key shortened to ``limit`` so that different long keys stay different."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
    return f"{value[:limit - 33]}~{digest}"


def _opt(value: str | None, limit: int | None = None, drop_long: bool = False) -> str | None:
    if value is None:
        return None
    value = clean_text(str(value))
    if limit is not None and len(value) > limit:
        return None if drop_long else value[:limit]
    return value


def _customer(c: CustomerRef) -> CustomerRef:
    handles = tuple((k, v) for k, v in ((_opt(k), _opt(v)) for k, v in c.handles)
                    if k and v and len(k) <= IDENTITY_KIND and len(v) <= IDENTITY_VALUE)
    # An over-long email or phone is no identity anyone can match: dropped, never cut to a wrong one.
    fields = dict(email=_opt(c.email, IDENTITY_VALUE, drop_long=True), name=_opt(c.name, NAME),
                  crm_id=_opt(c.crm_id, IDENTITY_VALUE, drop_long=True),
                  phone=_opt(c.phone, IDENTITY_VALUE, drop_long=True), handles=handles)
    if handles == c.handles and _same(c, fields):
        return c
    return CustomerRef(**fields)


def _same(obj: Any, fields: dict[str, Any]) -> bool:
    """Whether every cleaned field is the object ``obj`` already holds (nothing was cleaned)."""
    return all(getattr(obj, name) is value for name, value in fields.items())


def _json_object(value: Any) -> Any:
    """``clean_json(value or {})``, keeping an empty dict itself (so "unchanged" holds)."""
    return clean_json(value) if isinstance(value, dict) else clean_json(value or {})


def storable(item: FeedbackIn) -> FeedbackIn:
    """``item`` as every supported database can store it (the same item when it already is)."""
    fields = dict(
        external_id=_fit_key(clean_text(item.external_id), EXTERNAL_ID),
        channel=clean_text(item.channel)[:CHANNEL],
        text=_opt(item.text),
        language=_opt(item.language, LANGUAGE, drop_long=True),
        thread_id=None if item.thread_id is None else _fit_key(clean_text(item.thread_id), THREAD_ID),
        url=_opt(item.url, URL, drop_long=True),
        customer=_customer(item.customer),
        extra=_json_object(item.extra),
    )
    if _same(item, fields):  # the common case: no copy made, none compared
        return item
    cleaned = dataclasses.replace(item, **fields)
    return item if cleaned == item else cleaned


def storable_raw(raw: RawIn) -> RawIn:
    """A raw event as every supported database can store it: as verbatim as that allows."""
    fields = dict(
        payload=clean_json(raw.payload), kind=clean_text(raw.kind)[:RAW_KIND],
        dedupe_key=None if raw.dedupe_key is None else _fit_key(clean_text(raw.dedupe_key), DEDUPE_KEY),
        headers=_json_object(raw.headers))
    if _same(raw, fields):
        return raw
    cleaned = dataclasses.replace(raw, **fields)
    return raw if cleaned == raw else cleaned


def safe_reason(exc: BaseException) -> str:
    """What to store about ``exc`` for the admin: its type and a reason free of customer data.

    Database errors give their driver error class and SQLSTATE (never the
    statement or its parameters); validation errors their field locations;
    HTTP errors the SDK's own message (request path and the vendor's code).
    """
    name = type(exc).__name__
    orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's error
    if orig is not None:
        code = getattr(getattr(orig, "diag", None), "sqlstate", None) or getattr(orig, "sqlstate", None)
        detail = f"{type(orig).__name__}" + (f", SQLSTATE {code}" if code else "")
        return f"{name}: the database refused the record ({detail})"
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic's ValidationError: which fields, not their values
        try:
            locs = [".".join(str(p) for p in e.get("loc", ())) + f" ({e.get('type')})" for e in errors()[:5]]
            return f"{name}: invalid {', '.join(locs)}"[:500]
        except Exception:  # noqa: BLE001 - a reason must never fail
            pass
    if isinstance(exc, HttpError):
        # Written by the SDK's client: method, path (never the query) and the
        # vendor's short error; what the admin needs to fix a token or a form id.
        return f"{name}: {exc}"[:500]
    if isinstance(exc, UnicodeError):
        return f"{name}: text that cannot be encoded"
    return name
