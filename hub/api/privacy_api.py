"""``DELETE /api/v1/customers/<id>``: the GDPR erase through the API (admin scope).

The same erase as ``feedback-hub gdpr erase --customer ID``
(:func:`hub.engine.privacy.erase`): a customer that cannot be deleted because
rows refer to it does not exist here, every referring row is handled.
"""

from __future__ import annotations

import flask

from hub.api import contracts as answers
from hub.api.routes import MAX_ID, answer, db_session, error, token_actor, token_required
from hub.engine.context import current_hub
from hub.engine.privacy import SubjectNotFound, erase
from hub.storage import models as m

bp = flask.Blueprint("privacy_api", __name__, url_prefix="/api/v1")


@bp.delete("/customers/<int:customer_id>")
@token_required(scope="admin")
def delete_customer(customer_id: int):
    session = db_session()
    if customer_id > MAX_ID or session.get(m.Customer, customer_id) is None:
        return error(404, "not_found", f"no customer {customer_id}")
    session.close()  # the erase runs in its own transaction (and compacts the database file after it)
    try:
        report = erase(current_hub(), actor=token_actor(), customer_id=customer_id)
    except SubjectNotFound:  # erased by a concurrent request meanwhile
        return error(404, "not_found", f"no customer {customer_id}")
    return answer(answers.Erasure(
        customer_id=customer_id, identities=report.identities, items=report.items, raw_events=report.raw_events,
        cases=report.cases, crm_requests=len(report.crm_requests), crm_waiting=report.crm_waiting))
