"""What keeps several agents from stepping on each other, and what the case
page adds to work a case all day: collision safety, presence, the readable
activity log and the public reply panel.

Collision safety.  Every case form carries the case's ``version`` (counted on
each change, :attr:`hub.storage.models.Case.version`).  A POST whose version
is older than the case's is refused before its view runs, with a message that
says who changed what; nothing is written.  Notes are exempt: a note adds to
the case and never overwrites, and refusing one would lose what was typed.

Presence.  The case page posts to ``/cases/<id>/presence.json`` every
``webcare.presence_poll_seconds``; the answer names the others seen within
``webcare.presence_seconds`` and the case's current version, so the page can
say "someone else has this open" and "this case changed since you opened it".

Replies.  For a public post the panel opens the platform's reply page with the
text filled in: a URL template per source plugin (``[webcare.reply_links]``,
with ``{external_id}``, ``{url}``, ``{thread_id}`` and ``{text}``), so the core
names no platform.  Canned answers (Dutch and English) are kept by admins;
"answered publicly" is recorded on the case and in its audit trail.

The case page reads all of this through template helpers (a context
processor), so the case views themselves stay as they are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import flask
from sqlalchemy import delete, select

from hub.engine import audit as audit_trail
from hub.engine.context import current_hub
from hub.storage import models as m
from hub.web import cases
from hub.web.common import background, current_user, db_session, has_role, now, requires, ui_blueprint
from hub.web.filters import localtime
from hub.web.i18n import gettext, outcome_label

bp = ui_blueprint("workspace", __name__, url_prefix="/cases")

#: Case actions that may add but never overwrite: not refused on a stale page.
APPEND_ONLY = {"cases.note"}
#: Placeholder the page's script replaces with the typed reply text.
TEXT_SLOT = "__TEXT__"


def _settings() -> dict[str, Any]:
    return current_hub().config.get("webcare", {})


# -- collision safety ---------------------------------------------------------------
def _last_change(case_id: int) -> m.AuditEvent | None:
    return db_session().scalars(select(m.AuditEvent).where(m.AuditEvent.case_id == case_id)
                                .order_by(m.AuditEvent.at.desc(), m.AuditEvent.id.desc())).first()


def refuse_stale_write():
    """Before any case action: refuse a form rendered from an older version."""
    if flask.request.method != "POST" or flask.request.endpoint in APPEND_ONLY or not has_role("agent"):
        return None
    case_id = (flask.request.view_args or {}).get("case_id")
    sent = flask.request.form.get("version", "")
    if case_id is None or not sent.isdigit():
        return None  # a form without a version (an old page): the lifecycle still guards it
    case = db_session().get(m.Case, case_id)
    if case is None or case.version == int(sent):
        return None
    last = _last_change(case.id)
    who = display_actor(last.actor) if last else gettext("someone")
    what = describe(last) if last else ""
    flask.flash(gettext("Not saved: {who} changed this case since you opened it ({what}). Check it and try again.",
                        who=who, what=what), "error")
    session = db_session()
    audit_trail.record(session, actor=f"user:{current_user().username}", action="case.stale_write_refused",
                       at=now(), case_id=case.id, endpoint=flask.request.endpoint, sent_version=int(sent),
                       version=case.version)
    session.commit()
    return flask.redirect(flask.url_for("cases.show", case_id=case.id)), 303


# The case blueprint's own guard (sign-in, CSRF) was registered first, so it runs first.
cases.bp.before_request(refuse_stale_write)


# -- presence ----------------------------------------------------------------------
@bp.post("/<int:case_id>/presence.json")
@background
def presence(case_id: int):
    session = db_session()
    case = session.get(m.Case, case_id)
    if case is None:
        return flask.jsonify(error={"code": "not_found", "message": "no such case"}), 404
    current, me = now(), current_user().username
    window = dt.timedelta(seconds=float(_settings().get("presence_seconds", 45)))
    mine = session.get(m.CasePresence, (case_id, me))
    if mine is None:
        session.add(m.CasePresence(case_id=case_id, username=me, seen_at=current))
    else:
        mine.seen_at = current
    # Old marks are cleaned here, by the requests that read them: no job needed.
    session.execute(delete(m.CasePresence).where(m.CasePresence.seen_at < current - 20 * window))
    others = list(session.scalars(select(m.CasePresence.username).where(
        m.CasePresence.case_id == case_id, m.CasePresence.username != me,
        m.CasePresence.seen_at >= current - window).order_by(m.CasePresence.username)))
    version = case.version
    session.commit()
    return flask.jsonify(others=others, version=version)


# -- public replies ------------------------------------------------------------------
@dataclass
class ReplyOption:
    item_id: int
    source: str
    template: str  # the reply URL with TEXT_SLOT where the text goes
    original: str | None


def reply_options(items: list[m.FeedbackItem]) -> list[ReplyOption]:
    """For each public post in ``items`` (newest first), where its platform takes a reply."""
    hub = current_hub()
    links = _settings().get("reply_links", {})
    out = []
    for it in sorted(items, key=lambda i: (i.occurred_at, i.id), reverse=True):
        if it.channel != "social":
            continue
        instance = hub.registry.instance(it.source)
        template = links.get(instance.plugin if instance else "") or links.get(it.source)
        if not template:
            continue
        try:
            filled = template.format(external_id=quote(it.external_id, safe=""), url=quote(it.url or "", safe=":/"),
                                     thread_id=quote(it.thread_id or "", safe=""), text=TEXT_SLOT)
        except (KeyError, IndexError, ValueError):  # a placeholder the panel does not know: no link
            continue
        if filled.startswith(("https://", "http://")):
            out.append(ReplyOption(it.id, it.source, filled, it.url))
    return out


def canned_answers(language: str | None) -> list[m.CannedAnswer]:
    """The case's language first, then the other."""
    rows = db_session().scalars(select(m.CannedAnswer).order_by(m.CannedAnswer.title)).all()
    return sorted(rows, key=lambda a: a.language != (language or ""))


@bp.post("/<int:case_id>/answered-publicly")
@requires("agent")
def answered_publicly(case_id: int):
    session = db_session()
    case = session.get(m.Case, case_id)
    if case is None:
        flask.abort(404)
    item_id = flask.request.form.get("item_id", "")
    item = session.get(m.FeedbackItem, int(item_id)) if item_id.isdigit() else None
    if item is None or item.case_id != case.id or item.channel != "social":
        flask.flash(gettext("Pick the public post you answered."), "error")
        return flask.redirect(flask.url_for("cases.show", case_id=case_id))
    current = now()
    case.answered_publicly_at, case.updated_at = current, current
    audit_trail.record(session, actor=f"user:{current_user().username}", action="case.answered_publicly",
                       at=current, case_id=case.id, item_id=item.id)
    session.commit()
    flask.flash(gettext("Recorded: answered publicly."), "ok")
    return flask.redirect(flask.url_for("cases.show", case_id=case_id))


# -- the activity log -------------------------------------------------------------------
@dataclass
class Activity:
    at: dt.datetime
    actor: str
    action: str
    text: str
    note: str | None = None
    system: bool = False


def display_actor(actor: str) -> str:
    kind, _, name = actor.partition(":")
    if kind == "user" and name:
        return name
    if kind == "sink" and name:
        return gettext("CRM ({name})", name=name)
    if kind == "token" and name:
        return gettext("API ({name})", name=name)
    return gettext("system")


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return localtime(value) if isinstance(value, dt.datetime) else str(value)


#: Sentences for the audit actions a case page shows; other actions show their name.
SENTENCES = {
    "case.assigned": lambda d: gettext("Assigned to {name}.", name=d.get("owner") or "-"),
    "case.callback_planned": lambda d: gettext("Callback planned for {when}.", when=_when(d.get("due_at"))),
    "case.contacted": lambda d: gettext("Marked as contacted."),
    "case.resolved": lambda d: gettext("Resolved: {outcome}.", outcome=outcome_label(d.get("outcome") or "")),
    "case.closed": lambda d: gettext("Closed: {reason}.", reason=d["reason"]) if d.get("reason")
    else gettext("Case closed."),
    "case.reopened": lambda d: gettext("Case reopened."),
    "case.scheduled": lambda d: gettext("Callback pushed to the CRM."),
    "case.note": lambda d: gettext("Note"),
    "case.opened": lambda d: gettext("Case opened."),
    "case.item_joined": lambda d: gettext("Feedback added to this case."),
    "case.answered_publicly": lambda d: gettext("Answered publicly."),
    "case.stale_write_refused": lambda d: gettext("A change from an outdated page was refused."),
    "followup.completed": lambda d: gettext("Callback completed in the CRM ({outcome}).",
                                            outcome=outcome_label(d.get("outcome") or "contacted")),
}


def describe(event: m.AuditEvent) -> str:
    sentence = SENTENCES.get(event.action)
    if sentence is not None:
        return sentence(event.detail or {})
    return gettext(event.action)


def activity(case: m.Case, events: list[m.AuditEvent], followups: list[m.Followup]) -> list[Activity]:
    """People's actions and what the system did, newest first: the audit trail
    plus the events the tables already hold (case opened, callback created,
    pushed, completed in the CRM, SLA breached) that no one wrote down."""
    out = [Activity(e.at, display_actor(e.actor), e.action, describe(e),
                    note=(e.detail or {}).get("text") if e.action == "case.note" else None,
                    system=not e.actor.startswith("user:")) for e in events]
    audited = {(e.action, (e.detail or {}).get("followup_id")) for e in events}
    if not any(e.action == "case.opened" for e in events):
        out.append(Activity(case.opened_at, gettext("system"), "case.opened", gettext("Case opened."), system=True))
    for f in followups:
        if ("case.callback_planned", f.id) not in audited:
            out.append(Activity(f.created_at, gettext("system"), "followup.created",
                                gettext("Callback created for {when}.", when=localtime(f.due_at)), system=True))
        if f.sent_at and ("case.scheduled", f.id) not in audited:
            out.append(Activity(f.sent_at, gettext("CRM ({name})", name=f.sink), "followup.pushed",
                                gettext("Callback pushed to {sink} ({ref}).", sink=f.sink, ref=f.external_id or "-"),
                                system=True))
        if f.completed_at and ("followup.completed", f.id) not in audited:
            out.append(Activity(f.completed_at, gettext("CRM ({name})", name=f.sink), "followup.completed",
                                gettext("Callback completed in the CRM."), system=True))
    breach = sla_breach(case)
    if breach is not None:
        out.append(Activity(breach, gettext("system"), "sla.breached",
                            gettext("SLA breached: no contact by {when}.", when=localtime(breach)), system=True))
    return sorted(out, key=lambda a: a.at, reverse=True)


def sla_breach(case: m.Case) -> dt.datetime | None:
    """When the case missed its SLA (no contact by the due time), if it did."""
    due = case.sla_due_at
    if due is None:
        return None
    if case.contacted_at is not None:
        return due if case.contacted_at > due else None
    if case.status in ("resolved", "closed"):
        return None  # closed without contact (spam, duplicate): nothing was owed
    return due if due < now() else None


# -- template helpers -------------------------------------------------------------------
@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"reply_options": reply_options, "canned_answers": canned_answers, "case_activity": activity,
            "identity_kind": lambda name: current_hub().registry.identity_kind(name),
            "presence_poll_ms": lambda: int(float(_settings().get("presence_poll_seconds", 15)) * 1000),
            "TEXT_SLOT": TEXT_SLOT}
