"""Typeform response -> common schema (:class:`hub.sdk.schema.FeedbackIn`).

One mapper serves both ways a response reaches us, because they carry the same
``form_response`` object with small differences:

* a webhook delivery has ``definition.fields`` (question titles and types);
* a Responses-API item has no definition, so titles come from the form
  definition the connector fetched (``GET /forms/{form_id}``) when it could,
  and otherwise the text is the bare answers.

Typeform types an answer twice: ``answer.type`` is the *value kind* (``text``,
``number``, ``choice`` ...) and ``answer.field.type`` the *question kind*
(``long_text``, ``nps``, ``opinion_scale`` ...).  The mapper reads values by
value kind (that list is short and documented) and decides meaning by question
kind.  An answer whose value kind it does not know is skipped with a logged
reason and listed in ``extra["skipped_answers"]``; the raw event keeps it
verbatim, so nothing is lost and a new Typeform question type never crashes
ingestion.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.sdk import CustomerRef, FeedbackIn
from hub.sdk.schema import SCALES

log = logging.getLogger(__name__)

#: Value kinds of ``answer.type`` that Typeform documents, and where the value sits.
VALUE_KINDS = ("text", "email", "number", "boolean", "date", "choice", "choices", "url", "file_url",
               "phone_number", "payment")
#: Question kinds whose text answer is the respondent's own words.
FREE_TEXT_FIELDS = frozenset({"short_text", "long_text"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_RECALL = re.compile(r"\{\{[^}]*\}\}")  # "Thanks, {{field:abc}}!" - piped answers in titles
_CASE_ID = re.compile(r"^\s*(\d{1,18})\s*$")
_LANG = re.compile(r"^[a-zA-Z]{2}([-_][a-zA-Z]{2})?$")
#: Longest identity value (email, phone, CRM id) and display name the hub stores;
#: a longer "identity" is junk and is left out, a longer name is cut.
MAX_IDENTITY = 320
MAX_NAME = 200


@dataclass(frozen=True)
class MappingConfig:
    """The instance settings the mapping depends on (names of hidden fields...)."""

    nps_field_ref: str | None = None
    email_field: str = "email"
    crm_id_field: str = "crm_id"
    customer_id_field: str = "customer_id"
    customer_id_is_crm_id: bool = False
    name_field: str = "name"
    case_id_field: str = "case_id"
    language_field: str = "language"
    include_titles: bool = True
    #: (ref or id, scale) of rating / opinion_scale questions scored on another scale (csat, ces).
    scale_fields: tuple[tuple[str, str], ...] = ()


def parse_time(value: Any) -> dt.datetime | None:
    """Typeform time (``2020-05-17T16:14:40Z``) as aware UTC; None when absent.

    Unfinished responses carry ``0001-01-01T00:00:00Z`` as ``submitted_at``;
    that means "not submitted", not the year 1.  A year from 2100 on is no
    real time either (and outside what the hub stores).
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:
        when = when.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00
        return None
    return None if not 1971 <= when.year < 2100 else when


def format_time(when: dt.datetime) -> str:
    """Typeform's own time format (UTC, seconds, ``Z``): sorts as text."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def index_fields(definition: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Definition fields by id, including those nested in question groups."""
    out: dict[str, Mapping[str, Any]] = {}
    if not isinstance(definition, Mapping):
        return out

    def walk(fields: Any) -> None:
        for f in fields if isinstance(fields, list) else []:
            if not isinstance(f, Mapping):
                continue
            if isinstance(f.get("id"), str):
                out[f["id"]] = f
            props = f.get("properties")
            if isinstance(props, Mapping):
                walk(props.get("fields"))  # "group" / "inline_group" questions

    walk(definition.get("fields"))
    return out


def _title(field: Mapping[str, Any] | None) -> str | None:
    title = field.get("title") if field else None
    if not isinstance(title, str) or not title.strip():
        return None
    return " ".join(_RECALL.sub("…", title).split())


def _nps_value(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value <= 10 or value != int(value):  # the range first: int() of a huge float overflows
        return None
    return int(value)


def _is_zero_to_ten_scale(field: Mapping[str, Any] | None) -> bool:
    """An ``opinion_scale`` counts as NPS only when the form says it runs 0-10.

    Typeform's own docs example has a 1-5 opinion scale; reading that as NPS
    would file a content customer as a detractor, so without the definition's
    ``steps``/``start_at_one`` we do not guess (configure ``nps_field_ref``).
    """
    props = field.get("properties") if field else None
    if not isinstance(props, Mapping):
        return False
    return props.get("steps") == 11 and not props.get("start_at_one", False)


class ResponseMapper:
    """Maps one ``form_response`` object to a :class:`FeedbackIn`."""

    def __init__(self, config: MappingConfig):
        self.config = config

    def map(self, response: Mapping[str, Any], definition: Mapping[str, Any] | None = None,
            *, context: Mapping[str, Any] | None = None) -> FeedbackIn:
        """Raise ``ValueError`` when the response has no token or time (kept as failed raw event)."""
        cfg = self.config
        token = response.get("token") or response.get("response_id")
        if not isinstance(token, str) or not token:
            raise ValueError("Typeform response without a token")
        submitted = parse_time(response.get("submitted_at"))
        occurred = submitted or parse_time(response.get("landed_at"))
        if occurred is None:
            raise ValueError(f"Typeform response {token} has neither submitted_at nor landed_at")
        if not isinstance(definition, Mapping):
            definition = response.get("definition") if isinstance(response.get("definition"), Mapping) else None
        fields = index_fields(definition)
        hidden = response.get("hidden") if isinstance(response.get("hidden"), Mapping) else {}

        texts: list[tuple[str | None, str]] = []
        facts: list[dict[str, Any]] = []
        skipped: list[str] = []
        nps: int | None = None
        nps_from: str | None = None
        score: int | None = None
        scale: str | None = None
        email: str | None = None
        phone: str | None = None
        bare_emails: list[str] = []

        answers = response.get("answers")
        for pos, answer in enumerate(answers if isinstance(answers, list) else []):
            if not isinstance(answer, Mapping) or not isinstance(answer.get("field"), Mapping):
                skipped.append(f"answer {pos}: not an answer object")
                continue
            field_ref = answer["field"]
            fid = field_ref.get("id")
            definition_field = fields.get(fid) if isinstance(fid, str) else None
            qkind = _name(field_ref.get("type") or (definition_field or {}).get("type"))
            ref = field_ref.get("ref") or (definition_field or {}).get("ref")
            vkind = answer.get("type")
            if not isinstance(vkind, str) or vkind not in VALUE_KINDS or vkind not in answer:
                reason = (f"field {ref or fid}: unknown answer type {vkind!r}" if vkind not in VALUE_KINDS
                          else f"field {ref or fid}: answer type {vkind!r} without its value")
                skipped.append(reason)
                log.info("typeform response %s: skipped %s", token, reason)
                continue
            value = answer[vkind]

            if nps is None:
                candidate = self._nps_candidate(qkind, fid, ref, definition_field, value)
                if candidate is not None:
                    nps, nps_from = candidate
            if score is None and (scaled := self._scale_candidate(token, fid, ref, value)) is not None:
                score, scale = scaled
            if vkind == "email" and isinstance(value, str) and email is None:
                email = value.strip()
                continue
            if vkind == "phone_number" and isinstance(value, str) and phone is None:
                phone = _str(value, MAX_IDENTITY)
            if vkind == "text" and (qkind in FREE_TEXT_FIELDS or qkind is None) and isinstance(value, str):
                if qkind == "short_text" and _EMAIL.match(value.strip()):
                    # An email typed into a plain text question ("Email" as short_text).
                    bare_emails.append(value.strip())
                    continue
                if value.strip():
                    texts.append((_title(definition_field), value.strip()))
                continue
            facts.append({k: v for k, v in (("field", fid), ("ref", ref), ("question", qkind), ("type", vkind),
                                            ("title", _title(definition_field)), ("value", value))
                          if v is not None})

        email = self._valid_email(email) or self._valid_email(hidden.get(cfg.email_field)) or next(
            (e for e in bare_emails if self._valid_email(e)), None)
        crm_id = _str(hidden.get(cfg.crm_id_field), MAX_IDENTITY)
        customer_id = _str(hidden.get(cfg.customer_id_field))
        if crm_id is None and cfg.customer_id_is_crm_id:
            crm_id = _str(customer_id, MAX_IDENTITY)
        name = _str(hidden.get(cfg.name_field))
        customer = CustomerRef(email=email, name=name[:MAX_NAME] if name else None, crm_id=crm_id, phone=phone)

        case_id = self._case_id(token, hidden.get(cfg.case_id_field))
        language = _str(hidden.get(cfg.language_field))
        language = language.lower()[:2] if language and _LANG.match(language) else None

        extra: dict[str, Any] = {
            "form_id": response.get("form_id") or (definition or {}).get("id"),
            "calculated": response.get("calculated"),
            "hidden": dict(hidden) or None,
            "metadata": response.get("metadata"),
            "variables": response.get("variables"),
            "landed_at": response.get("landed_at"),
            "ending": response.get("ending"),
            "customer_id": customer_id,
            "answers": facts or None,
            "skipped_answers": skipped or None,
            "completed": submitted is not None,
            "nps_source": nps_from if nps is not None else None,
            "score_source": scale,
            **(context or {}),
        }
        return FeedbackIn(
            external_id=token,
            channel="survey",
            occurred_at=occurred,
            text=self._text(texts),
            nps=nps,
            language=language,
            customer=customer,
            extra={k: v for k, v in extra.items() if v is not None},
            resurvey_case_id=case_id,
            score=score,
            scale=scale,
        )

    # -- pieces ------------------------------------------------------------
    def _scale_candidate(self, token: str, fid: Any, ref: Any, value: Any) -> tuple[int, str] | None:
        """(score, scale) when this answer is a question configured as CSAT or CES and in range."""
        for wanted, scale in self.config.scale_fields:
            if wanted in (ref, fid):
                low, high = SCALES[scale]
                score = _nps_value(value) if isinstance(value, int | float) else None
                if score is not None and low <= score <= high:
                    return score, scale
                log.info("typeform response %s: %s answer %r outside %s-%s, ignored", token, scale, value, low, high)
        return None

    def _nps_candidate(self, qkind: Any, fid: Any, ref: Any, field: Mapping[str, Any] | None,
                       value: Any) -> tuple[int, str] | None:
        """(score, how it was recognised) when this answer is the NPS question."""
        cfg = self.config
        score = _nps_value(value)
        if score is None:
            return None
        if cfg.nps_field_ref:
            return (score, "configured") if cfg.nps_field_ref in (ref, fid) else None
        if qkind == "nps":
            return score, "nps"
        if qkind == "opinion_scale" and _is_zero_to_ten_scale(field):
            return score, "opinion_scale_0_10"
        return None

    @staticmethod
    def _valid_email(value: Any) -> str | None:
        # Typeform fills hidden fields of test submissions with "xxxxx": not an identity.
        if isinstance(value, str) and len(value.strip()) <= MAX_IDENTITY and _EMAIL.match(value.strip()):
            return value.strip()
        return None

    def _case_id(self, token: str, value: Any) -> int | None:
        if value is None or value == "":
            return None
        match = _CASE_ID.match(str(value))
        if not match:
            log.info("typeform response %s: hidden %s=%r is not a case number; not a re-survey",
                     token, self.config.case_id_field, value)
            return None
        return int(match.group(1))

    def _text(self, texts: Iterable[tuple[str | None, str]]) -> str | None:
        blocks = [f"{title}\n{answer}" if title and self.config.include_titles else answer for title, answer in texts]
        return "\n\n".join(blocks) or None


def _str(value: Any, max_length: int | None = None) -> str | None:
    """A scalar as stripped text; None when absent, empty, not a scalar or longer than ``max_length``."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    if max_length is not None and len(text) > max_length:
        return None
    return text or None


def _name(value: Any) -> str | None:
    """A question kind (``long_text``...) as text, None when it is not one."""
    return value if isinstance(value, str) else None
