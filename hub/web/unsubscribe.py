"""The opt-out page behind every invitation's unsubscribe link: no login, a signed token.

``GET /unsubscribe/<token>`` asks for confirmation (mail scanners and link
previews open links; a GET must not unsubscribe anybody), ``POST`` puts the
customer on the suppression list, also as the one-click unsubscribe that mail
clients send (RFC 8058: ``List-Unsubscribe=One-Click``).  Without a session
there is nothing to forge, so the page takes no CSRF token: the signed token
names the only customer it can affect.
"""

from __future__ import annotations

import flask

from hub.engine import audit
from hub.engine.context import current_hub
from hub.engine.loop import contact_rules
from hub.storage import models as m
from hub.web.i18n import gettext

bp = flask.Blueprint("unsubscribe", __name__)


def _customer_or_404(token: str) -> int:
    hub = current_hub()
    customer_id = contact_rules.read_unsubscribe_token(hub, token)
    if customer_id is None:
        flask.abort(flask.make_response(_page(404, gettext("This unsubscribe link is not valid."), token, False), 404))
    return customer_id


def _page(status: int, message: str, token: str, ask: bool) -> str:
    company = current_hub().config.get("loop", {}).get("company_name", "")
    return flask.render_template("unsubscribe.html", message=message, token=token, ask=ask, company=company,
                                 status=status)


@bp.get("/unsubscribe/<token>")
def confirm(token: str):
    _customer_or_404(token)
    return _page(200, gettext("Do you want to stop receiving surveys from {company}?",
                              company=current_hub().config.get("loop", {}).get("company_name", "")), token, True)


@bp.post("/unsubscribe/<token>")
def unsubscribe(token: str):
    customer_id = _customer_or_404(token)
    hub = current_hub()
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        if s.get(m.Customer, customer_id) is not None and contact_rules.suppress(
                s, now=now, reason=contact_rules.UNSUBSCRIBED, customer_id=customer_id):
            audit.record(s, actor="customer", action="contact.unsubscribed", at=now, customer_id=customer_id)
    return _page(200, gettext("Done: you will receive no more surveys from {company}.",
                              company=hub.config.get("loop", {}).get("company_name", "")), token, False)
