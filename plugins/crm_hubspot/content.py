"""What a callback task says: subject, body, due time, priority, owner.

Pure functions of a :class:`FollowupView`, so the wording can be tested
without HTTP.  The body is what the caller reads right before dialling, so it
leads with why (score, risk, the customer's own words) and links to the case
in the hub for the full history.
"""

from __future__ import annotations

import datetime as dt
import html
import re

from hub.sdk import FollowupView

#: HubSpot association type "task to contact" (HUBSPOT_DEFINED).
TASK_TO_CONTACT = 204
#: hs_task_body is a rich-text property of at most 65,536 characters.
MAX_BODY = 60_000
MAX_SUBJECT = 250
MAX_ITEMS = 5
MAX_TEXT = 1_500

#: Hub case priority -> hs_task_priority (the case priority already follows the risk).
PRIORITY = {"urgent": "HIGH", "high": "HIGH", "normal": "MEDIUM", "low": "LOW"}

_MARKER_RE = re.compile(r"\[feedback-hub:([^\]\s<>&\"]+)\]")


def marker(idempotency_key: str) -> str:
    """The text a task carries so a later push can recognise it.

    It is written into the body (which HubSpot keeps as given) and sent as the
    input's ``objectWriteTraceId``, so it survives a timeout: the retry reads
    the contact's tasks back and finds the marker instead of creating anew.
    """
    return f"[feedback-hub:{idempotency_key}]"


def find_marker(body: str | None) -> str | None:
    """The idempotency key named in a task body, if any."""
    if not body:
        return None
    match = _MARKER_RE.search(html.unescape(body))
    return match.group(1) if match else None


def hs_timestamp(when: dt.datetime) -> str:
    """ISO-8601 UTC with milliseconds, the form HubSpot itself returns."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_priority(f: FollowupView) -> str:
    return PRIORITY.get(f.case.priority, "MEDIUM")


def pick_owner(f: FollowupView, contact_owner: str | None, owners: list[str]) -> str | None:
    """The contact's owner, else a round-robin pick from the configured list.

    The rotation goes by case id rather than a counter in memory: the same
    follow-up gets the same owner on every retry and in every worker process,
    and consecutive cases still spread evenly over the list.
    """
    if contact_owner:
        return str(contact_owner)
    if owners:
        return str(owners[f.case_id % len(owners)])
    return None


def _who(f: FollowupView) -> str:
    # shown_as: name, e-mail, a handle as its kind displays it ("@janb"), or the number
    return f.customer.shown_as if f.customer is not None else "customer"


def subject(f: FollowupView) -> str:
    latest = f.items[0] if f.items else None
    if latest is not None and latest.nps is not None:
        what = f"NPS {latest.nps}"
        if latest.category:
            what += f" ({latest.category})"
    elif latest is not None:
        what = f"{latest.channel} feedback"
    else:
        what = "feedback"
    source = f" via {latest.source}" if latest is not None else ""
    text = f"Call back {_who(f)}: {what}{source}, risk {f.case.risk}"
    return text[:MAX_SUBJECT]


def _item_html(item) -> str:
    e = html.escape
    facts = [item.occurred_at.strftime("%Y-%m-%d %H:%M UTC"), f"{e(item.source)} ({e(item.channel)})"]
    if item.nps is not None:
        facts.append(f"NPS {item.nps}" + (f" ({e(item.category)})" if item.category else ""))
    facts.append(f"risk {item.risk}")
    out = [" · ".join(facts)]
    if item.text:
        text = item.text if len(item.text) <= MAX_TEXT else item.text[:MAX_TEXT] + "…"
        out.append(f"&ldquo;{e(text)}&rdquo;")
    if item.risk_reasons:
        reasons = "; ".join(e(r.detail or r.signal) + f" (+{round(r.weight)})" for r in item.risk_reasons)
        out.append(f"Why flagged: {reasons}")
    if item.url:
        out.append(f'<a href="{e(item.url)}">original</a>')
    return "<p>" + "<br>".join(out) + "</p>"


def body(f: FollowupView) -> str:
    """HTML body (HubSpot renders hs_task_body as rich text)."""
    e = html.escape
    c = f.customer
    head = [f"<p><strong>Callback for a {e(f.case.priority)}-priority case (risk {f.case.risk}/100).</strong>"]
    if f.case.sla_due_at:
        head.append(f"<br>Call before {hs_timestamp(f.case.sla_due_at)} (SLA).")
    if c is not None:
        who = [e(_who(f))]
        if c.email:
            who.append(e(c.email))
        if c.value is not None:
            who.append(f"yearly value {c.value:,.0f}")
        head.append("<br>Customer: " + ", ".join(who))
    parts = ["".join(head) + "</p>"]
    shown = f.items[:MAX_ITEMS]
    if shown:
        parts.append("<p><strong>What they told us</strong> (newest first):</p>")
        parts.extend(_item_html(i) for i in shown)
        if len(f.items) > len(shown):
            parts.append(f"<p>…and {len(f.items) - len(shown)} earlier messages in the case.</p>")
    if f.case_url:
        parts.append(f'<p>Case in feedback-hub: <a href="{e(f.case_url)}">{e(f.case_url)}</a></p>')
    tail = f"<p>{e(marker(f.idempotency_key))}</p>"
    text = "".join(parts)
    return text[: MAX_BODY - len(tail)] + tail


def task_input(f: FollowupView, contact_id: str | None, owner: str | None) -> dict:
    """One input of ``/crm/v3/objects/tasks/batch/create``."""
    props = {
        "hs_timestamp": hs_timestamp(f.due_at),
        "hs_task_subject": subject(f),
        "hs_task_body": body(f),
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": task_priority(f),
        "hs_task_type": "CALL",
    }
    if owner:
        props["hubspot_owner_id"] = owner
    associations = []
    if contact_id:
        associations.append({"to": {"id": str(contact_id)},
                             "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}]})
    return {"properties": props, "associations": associations, "objectWriteTraceId": f.idempotency_key}
