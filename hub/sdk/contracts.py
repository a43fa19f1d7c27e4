"""The common schema's input form, declared once (pydantic v2).

:class:`FeedbackInput` is the body of ``POST /api/v1/feedback``, one line of
``feedback-hub import`` and one item of the demo feed.  The same declaration
validates input (:func:`parse_feedback`) and, through ``model_json_schema``,
is the ``FeedbackInput`` schema of the OpenAPI document, so the two cannot
disagree.  A rejected input raises :class:`InputError` naming the field in
dotted form (``customer.email``) with a message written for the sender.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub.sdk.schema import SCALES, Channel, CustomerRef, FeedbackIn

MAX_TEXT = 20_000
MAX_CUSTOMER_FIELD = 320
MAX_IDENTITIES = 20
#: Largest ``reach`` (followers, audience): the column is a 32-bit integer, and ten
#: times the largest audience any account has.
MAX_REACH = 2**31 - 1
#: ``occurred_at`` must lie in [1970, 2100): outside it is a unit mix-up (ms sent as s) or junk,
#: and years such as 1 or 10000 break date arithmetic and some databases.
MIN_OCCURRED = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_OCCURRED = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
#: Deepest JSON nesting accepted in any input (API bodies, webhook deliveries).  Real
#: payloads stay under 10; deep ones only overflow stacks further on.
MAX_JSON_DEPTH = 64


class InputError(ValueError):
    """Bad input: which field (dotted, e.g. ``customer.email``) and why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class JsonTooDeep(ValueError):
    """JSON text nested deeper than allowed."""


def json_depth(value: Any) -> int:
    """How deeply ``value`` (decoded JSON) nests arrays and objects; a scalar is 0.

    Iterative, so a deep value cannot overflow the stack here.
    """
    # Level by level, keeping only the containers of the next level: no entry
    # per scalar (every webhook body passes here, so this is per-request cost).
    depth, level = 0, [value] if isinstance(value, dict | list) else []
    while level:
        depth += 1
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, dict | list)]
    return depth


def _openers(raw: bytes | bytearray | str) -> int:
    """The text's opening brackets: no value in it nests deeper (brackets inside strings only add),
    so a body with few of them needs no walk through its parse (one C-speed count per body)."""
    if isinstance(raw, str):
        return raw.count("{") + raw.count("[")
    return raw.count(b"{") + raw.count(b"[")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads_bounded(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that raises ``ValueError`` (:class:`JsonTooDeep` for nesting) instead of anything else.

    Also refuses ``NaN``/``Infinity`` and numbers too large for a double
    (``1e400``): not JSON values, and no database stores them as JSON.
    """
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise JsonTooDeep(f"nested deeper than {max_depth} levels") from None
    if _openers(raw) > max_depth and json_depth(value) > max_depth:
        raise JsonTooDeep(f"nested deeper than {max_depth} levels")
    return value


# -- field types ---------------------------------------------------------------
def _blank_to_none(value: Any) -> Any:
    """Optional strings: surrounding space is dropped and an empty string means absent."""
    if isinstance(value, str):
        return value.strip() or None
    return value


def _integer(value: Any) -> Any:
    """JSON has one number type: 3.0 is the integer 3; True and "3" are not numbers."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("integer", "must be an integer, not {kind}", {"kind": type(value).__name__})
    return value


def _date_time(value: Any) -> Any:
    """ISO-8601 text or a unix time in seconds; times without an offset are UTC."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Bounded before conversion: fromtimestamp(1e20) overflows, NaN is no time.
        if not (math.isfinite(value) and MIN_OCCURRED.timestamp() <= value < MAX_OCCURRED.timestamp()):
            raise _out_of_range(value)
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise PydanticCustomError("date_time", "is not an ISO-8601 date-time: {value}",
                                      {"value": repr(value[:40])}) from None
    else:
        raise PydanticCustomError("date_time", "must be an ISO-8601 date-time string or a unix time, not {kind}",
                                  {"kind": type(value).__name__})
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        parsed = parsed.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC time
        raise _out_of_range(value) from None
    if not MIN_OCCURRED <= parsed < MAX_OCCURRED:
        raise _out_of_range(value)
    return parsed


def _out_of_range(value: Any) -> PydanticCustomError:
    return PydanticCustomError("date_time_range", "must lie between 1970 and 2100 (unix seconds, not ms), not {value}",
                               {"value": repr(value)[:40]})


def _storable(value: Any) -> Any:
    """Text a database can store: no NUL (PostgreSQL refuses it) and no lone surrogate (not UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise PydanticCustomError("nul", "must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError("surrogate", "is not valid Unicode (lone surrogate)") from None
    return value


def _text(max_length: int) -> Any:
    """An optional string of at most ``max_length`` characters (after stripping)."""
    bounded = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, max_length=max_length)]
    return Annotated[bounded | None, BeforeValidator(_blank_to_none), BeforeValidator(_storable)]


def _integer_in(ge: int, le: int | None = None) -> Any:
    """An optional integer in [ge, le]."""
    return Annotated[Annotated[StrictInt, Field(ge=ge, le=le)] | None, BeforeValidator(_integer)]


Text10, Text100, Text200, Text320, Text500, LongText = map(_text, (10, 100, 200, 320, 500, MAX_TEXT))
NpsScore, Reach = _integer_in(0, 10), _integer_in(0, MAX_REACH)
#: A text of a fixed-format field (ids, kinds): strict, and storable.
StorableStr = Annotated[StrictStr, BeforeValidator(_storable)]


DateTimeIn = Annotated[
    dt.datetime | None,
    BeforeValidator(_date_time),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}, {"type": "null"}],
                    "description": "ISO-8601 (no offset: UTC) or unix seconds, from 1970 to 2099; "
                                   "default: when the hub receives it"}),
]


# -- the customer --------------------------------------------------------------
class IdentityInput(BaseModel):
    """An identity of any kind a plugin declares, e.g. ``{"kind": "facebook_user", "value": "1234"}``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: StrictStr = Field(min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9_]*$")
    value: StorableStr = Field(min_length=1, max_length=MAX_CUSTOMER_FIELD)


class _CustomerFields(BaseModel):
    """What the sender knows of the customer; every field optional."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Text320 = Field(None, description="an email address (contains '@')")
    name: Text200 = None  # what the customer table stores
    crm_id: Text320 = Field(None, description="the customer's id in your CRM")
    phone: Text320 = None
    identities: list[IdentityInput] = Field(default_factory=list, max_length=MAX_IDENTITIES,
                                            description="identities of kinds that plugins declare")

    @field_validator("email")
    @classmethod
    def _email_has_at(cls, value: str | None) -> str | None:
        if value and "@" not in value:
            raise PydanticCustomError("email", "is not an email address")
        return value


# ---- API compatibility ------------------------------------------------------
# ``customer.x_handle`` was part of the API before identity kinds were open.
# It stays accepted exactly as before, but only here: each key is an input
# field that becomes an identity of the named kind (``CustomerRef.handles``);
# nothing else in the core knows the name.  The plugin that declares the kind
# normalises its values (``IdentityKind.normalize``), as for any identity.
COMPAT_CUSTOMER_KINDS: dict[str, str] = {"x_handle": "x_handle"}

CustomerInput = create_model(
    "CustomerInput",
    __base__=_CustomerFields,
    **{name: (Text320, Field(None, description=f"same as an identity of kind {kind!r}"))
       for name, kind in COMPAT_CUSTOMER_KINDS.items()},
)
# ---- end of API compatibility -----------------------------------------------

#: Plain (string) customer fields, e.g. for the CSV importer's ``customer_<field>`` columns.
CUSTOMER_INPUT_FIELDS = tuple(name for name in CustomerInput.model_fields if name != "identities")


def customer_ref(customer: BaseModel | None) -> CustomerRef:
    """The validated ``customer`` object as the core's :class:`CustomerRef`."""
    if customer is None:
        return CustomerRef()
    handles: list[tuple[str, str]] = []
    for name, kind in COMPAT_CUSTOMER_KINDS.items():
        if getattr(customer, name):
            handles.append((kind, getattr(customer, name)))
    handles += [(i.kind, i.value) for i in customer.identities]
    return CustomerRef(email=customer.email, name=customer.name, crm_id=customer.crm_id, phone=customer.phone,
                       handles=tuple(dict.fromkeys(handles)))


# -- the feedback item ---------------------------------------------------------
class FeedbackInput(BaseModel):
    """One feedback item in the common schema, as any system sends it."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        # text, nps and score are each optional, but not all three; a score names its scale,
        # and lies in the scale's range.
        json_schema_extra={
            "anyOf": [{"required": ["text"]}, {"required": ["nps"]}, {"required": ["score"]}],
            "dependentRequired": {"score": ["scale"]},
            "allOf": [{"if": {"properties": {"scale": {"const": name}}, "required": ["scale"]},
                       "then": {"properties": {"score": {"anyOf": [
                           {"type": "integer", "minimum": low, "maximum": high}, {"type": "null"}]}}}}
                      for name, (low, high) in SCALES.items()],
        },
    )

    source: Text100 = Field("api", description="the source instance")
    external_id: StorableStr = Field(min_length=1, max_length=200, description="unique per source")
    channel: Channel
    occurred_at: DateTimeIn = None
    text: LongText = None
    nps: NpsScore = None
    score: NpsScore = Field(None, description="a score on its scale: csat 1-5, ces 1-7 (or nps 0-10)")
    scale: Literal["nps", "csat", "ces"] | None = Field(None, description="the scale of score")
    language: Text10 = Field(None, description="e.g. 'nl'; detected when absent")
    reach: Reach = Field(None, description="followers or audience of a public post")
    thread_id: Text200 = None
    url: Text500 = None
    customer: CustomerInput | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _text_or_nps(self) -> FeedbackInput:
        if self.text is None and self.nps is None and self.score is None:
            raise PydanticCustomError("text_or_nps", "one of text or nps is required", {"field": "text"})
        if self.score is not None:
            if self.scale is None:
                raise PydanticCustomError("scale", "name the scale of score (nps, csat or ces)", {"field": "scale"})
            low, high = SCALES[self.scale]
            if not low <= self.score <= high:
                raise PydanticCustomError("score", "must lie in {low}-{high} on the {scale} scale (got {score})",
                                          {"field": "score", "low": low, "high": high, "scale": self.scale,
                                           "score": self.score})
            if self.scale == "nps" and self.nps is not None and self.nps != self.score:
                raise PydanticCustomError("score", "differs from nps", {"field": "score"})
        return self

    def to_item(self, now: dt.datetime) -> tuple[str, FeedbackIn]:
        """(source, item); ``now`` (the hub clock) stands in for a missing ``occurred_at``."""
        item = FeedbackIn(
            external_id=self.external_id,
            channel=self.channel,
            occurred_at=self.occurred_at or now,
            text=self.text,
            nps=self.nps if self.nps is not None or self.scale != "nps" else self.score,
            score=self.score,
            scale=self.scale if self.score is not None else None,
            language=self.language.lower() if self.language else None,
            reach=self.reach,
            thread_id=self.thread_id,
            url=self.url,
            customer=customer_ref(self.customer),
        )
        return self.source or "api", item


def parse_feedback(obj: Any, *, now: dt.datetime | None = None) -> tuple[str, FeedbackIn]:
    """Validate one decoded JSON object; returns (source, item) or raises :class:`InputError`.

    Pass the hub clock's ``now``; without it a missing ``occurred_at`` is the wall clock's now.
    """
    try:
        parsed = FeedbackInput.model_validate(obj)
    except ValidationError as exc:
        raise input_error(exc, obj) from None
    return parsed.to_item(now or dt.datetime.now(dt.UTC))


# -- pydantic errors as messages a sender can act on ----------------------------
def dotted(loc: tuple[int | str, ...]) -> str:
    """``("customer", "identities", 0, "kind")`` -> ``customer.identities[0].kind``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key of this mapping entry"
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", type(None): "null"}.get(type(value), type(value).__name__)


def readable(error: Any) -> str:
    """One pydantic error dict as a short sentence (pydantic's own text when it is already clear)."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    messages = {
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "string_type": f"must be a string, not {_type_name(value)}",
        "string_too_short": "must not be empty",
        "string_too_long": f"is longer than {ctx.get('max_length')} characters",
        "string_pattern_mismatch": f"must match {ctx.get('pattern')}",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "greater_than_equal": f"must be at least {ctx.get('ge')} (got {value!r})",
        "less_than_equal": f"must be at most {ctx.get('le')} (got {value!r})",
        "model_type": f"must be an object, not {_type_name(value)}",
        "model_attributes_type": f"must be an object, not {_type_name(value)}",
        "list_type": f"must be a list, not {_type_name(value)}",
        "too_long": f"has more than {ctx.get('max_length')} entries",
    }
    return messages.get(kind, error["msg"])


def input_error(exc: ValidationError, obj: Any = None) -> InputError:
    """The first problem of a validation error as :class:`InputError`.

    Unknown fields are named first (a misspelt field explains the errors
    that follow from it); a whole-body problem is reported on ``body``.
    """
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    field = (first.get("ctx") or {}).get("field") or dotted(first["loc"])
    if not field:
        return InputError("body", f"must be a JSON object, not {_type_name(obj)}")
    return InputError(field, readable(first))
