"""acme_tickets: callback tickets in the (fictional) Acme Helpdesk.

The sink of the tutorial docs/writing_a_sink_plugin.md.  The hub hands it
follow-ups ("call this customer back before due_at"); it creates one helpdesk
ticket per follow-up and later reports which tickets agents solved, which
closes the loop in the hub.
"""

from __future__ import annotations

import datetime as dt

from hub.sdk import Completion, CrmSink, FollowupView, PushResult, Setting, hookimpl

#: Helpdesk error codes that may pass on a later try; any other refusal is final.
RETRIABLE_CODES = {"queue_full", "temporarily_unavailable"}


class AcmeTickets(CrmSink):
    plugin_name = "acme_tickets"
    description = "callback tickets in Acme Helpdesk"
    default_base_url = "https://helpdesk.acme.example"
    settings = [
        Setting("token", secret=True, required=True, help="API token, e.g. env:ACME_HELPDESK_TOKEN"),
        Setting("queue", default="callbacks", help="helpdesk queue the tickets land in"),
        Setting("batch_size", type=int, default=50, minimum=1, maximum=50,
                help="tickets per request (the helpdesk takes at most 50)"),
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The dispatcher hands push() at most this many follow-ups at once.
        self.batch_size = self.config["batch_size"]

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config['token']}"}

    # -- push: one ticket per follow-up, exactly once ---------------------
    def push(self, followups: list[FollowupView]) -> list[PushResult]:
        by_key = {f.idempotency_key: f for f in followups}
        # An earlier attempt may have created some of these tickets and lost
        # the answer (timeout, crash): find them by their key first.
        found = self.tickets(external_ref=",".join(by_key))
        results = [PushResult(by_key[t["external_ref"]].id, ok=True, external_id=str(t["id"]))
                   for t in found if t["external_ref"] in by_key]
        todo = [f for key, f in by_key.items() if key not in {t["external_ref"] for t in found}]
        if todo:
            results += self.create(todo)
        return results

    def create(self, followups: list[FollowupView]) -> list[PushResult]:
        # Creating is not idempotent: retry a 429 here (nothing was created),
        # but not a timeout or a 5xx - the dispatcher tries again later, and
        # then push() looks the tickets up before creating any.
        response = self.http.post("/v1/tickets/batch", json={"tickets": [self.ticket(f) for f in followups]},
                                  retry_timeouts=False, retry_statuses=frozenset({429}))
        by_key = {f.idempotency_key: f for f in followups}
        results = []
        for answer in response.json()["results"]:
            f = by_key[answer["external_ref"]]
            if "id" in answer:
                results.append(PushResult(f.id, ok=True, external_id=str(answer["id"])))
            else:
                error = answer["error"]
                results.append(PushResult(f.id, ok=False, error=f"{error['code']}: {error['message']}",
                                          retriable=error["code"] in RETRIABLE_CODES))
        return results

    def ticket(self, f: FollowupView) -> dict:
        customer = f.customer
        latest = f.items[0] if f.items else None
        return {
            "external_ref": f.idempotency_key,
            "queue": self.config["queue"],
            "subject": f"Call back {customer.shown_as if customer else 'customer'} (case {f.case_id})",
            "description": "\n\n".join(filter(None, [latest.text if latest else None, f.case_url])),
            "priority": f.case.priority,
            "due_at": f.due_at.isoformat(),
            "requester": {"name": customer.name, "email": customer.email, "phone": customer.phone}
            if customer else None,
        }

    # -- completion: solved tickets close the loop -------------------------
    def sync_completed(self, followups: list[FollowupView]) -> list[Completion]:
        by_ticket = {f.external_id: f for f in followups if f.external_id}
        if not by_ticket:
            return []
        return [
            Completion(by_ticket[str(t["id"])].id, outcome=t.get("resolution"),
                       completed_at=dt.datetime.fromisoformat(t["solved_at"]))
            for t in self.tickets(id=",".join(by_ticket))
            if t["status"] == "solved" and str(t["id"]) in by_ticket
        ]

    def tickets(self, **query: str) -> list[dict]:
        return self.http.get("/v1/tickets", params=query).json()["tickets"]


@hookimpl
def hub_register_crm_sinks():
    return [AcmeTickets]
