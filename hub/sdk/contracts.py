"""The common schema's input form (API body, import line) and its checks.

One function, :func:`parse_feedback`, turns a decoded JSON object into a
:class:`hub.sdk.schema.FeedbackIn` or raises :class:`InputError` naming the field.
``FEEDBACK_INPUT_SCHEMA`` is the same contract as JSON Schema for the OpenAPI
document; ``tests/test_validation.py`` holds the two together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.sdk.schema import CHANNELS, CustomerRef, FeedbackIn

TOP_FIELDS = ("source", "external_id", "channel", "occurred_at", "text", "nps", "language", "reach",
              "thread_id", "url", "customer")
CUSTOMER_FIELDS = ("email", "name", "x_handle", "crm_id", "phone")
MAX_TEXT = 20_000


class InputError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _str(obj: dict[str, Any], key: str, field: str, max_len: int, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputError(field, "is required")
        return None
    if not isinstance(value, str):
        raise InputError(field, f"must be a string, not {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise InputError(field, "must not be empty")
    if len(value) > max_len:
        raise InputError(field, f"is longer than {max_len} characters")
    return value or None


def parse_time(value: Any, field: str = "occurred_at") -> dt.datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if not isinstance(value, str):
        raise InputError(field, f"must be an ISO-8601 date-time string, not {type(value).__name__}")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(field, f"is not an ISO-8601 date-time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _int(obj: dict[str, Any], key: str, lo: int, hi: int | None) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InputError(key, f"must be an integer, not {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        raise InputError(key, f"must be between {lo} and {hi}" if hi is not None else f"must be >= {lo}")
    return value


def parse_feedback(obj: Any, *, now: dt.datetime | None = None) -> tuple[str, FeedbackIn]:
    """Validate one input object; returns (source, item)."""
    if not isinstance(obj, dict):
        raise InputError("body", f"must be a JSON object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - set(TOP_FIELDS))
    if unknown:
        raise InputError(unknown[0], "unknown field")
    source = _str(obj, "source", "source", 100) or "api"
    external_id = _str(obj, "external_id", "external_id", 200, required=True)
    channel = _str(obj, "channel", "channel", 20, required=True)
    if channel not in CHANNELS:
        raise InputError("channel", f"must be one of {', '.join(CHANNELS)}")
    text = _str(obj, "text", "text", MAX_TEXT)
    nps = _int(obj, "nps", 0, 10)
    if text is None and nps is None:
        raise InputError("text", "one of text or nps is required")
    occurred = parse_time(obj["occurred_at"]) if obj.get("occurred_at") is not None else (now or dt.datetime.now(dt.UTC))
    language = _str(obj, "language", "language", 10)
    reach = _int(obj, "reach", 0, None)
    cust_obj = obj.get("customer") or {}
    if not isinstance(cust_obj, dict):
        raise InputError("customer", f"must be an object, not {type(cust_obj).__name__}")
    unknown = sorted(set(cust_obj) - set(CUSTOMER_FIELDS))
    if unknown:
        raise InputError(f"customer.{unknown[0]}", "unknown field")
    customer = CustomerRef(**{k: _str(cust_obj, k, f"customer.{k}", 320) for k in CUSTOMER_FIELDS})
    if customer.email and "@" not in customer.email:
        raise InputError("customer.email", "is not an email address")
    item = FeedbackIn(
        external_id=external_id,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        occurred_at=occurred,
        text=text,
        nps=nps,
        language=language.lower() if language else None,
        reach=reach,
        thread_id=_str(obj, "thread_id", "thread_id", 200),
        url=_str(obj, "url", "url", 500),
        customer=customer,
    )
    return source, item


FEEDBACK_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["external_id", "channel"],
    "anyOf": [{"required": ["text"]}, {"required": ["nps"]}],
    "properties": {
        "source": {"type": "string", "maxLength": 100, "default": "api"},
        "external_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "channel": {"type": "string", "enum": list(CHANNELS)},
        "occurred_at": {"type": "string", "format": "date-time"},
        "text": {"type": "string", "maxLength": MAX_TEXT},
        "nps": {"type": "integer", "minimum": 0, "maximum": 10},
        "language": {"type": "string", "maxLength": 10},
        "reach": {"type": "integer", "minimum": 0},
        "thread_id": {"type": "string", "maxLength": 200},
        "url": {"type": "string", "maxLength": 500},
        "customer": {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "string", "maxLength": 320} for k in CUSTOMER_FIELDS},
        },
    },
}
