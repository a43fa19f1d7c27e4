"""Tests of the acme_tickets sink, against a fake Acme Helpdesk on loopback.

The fixtures make_hub, fake_vendor and fake_clock come with feedback-hub
(its pytest plugin, hub.sdk.testing): nothing to copy, no conftest needed.
"""

from __future__ import annotations

import acme_tickets
import pytest

from hub.sdk.testing import Reply

DETRACTOR = {"external_id": "nps-1", "channel": "survey", "nps": 2, "text": "Drie weken zonder internet.",
             "customer": {"email": "jan@example.nl", "name": "Jan de Vries"}}


class Helpdesk:
    """The fake helpdesk's tickets; its methods answer the fake vendor's routes."""

    def __init__(self):
        self.tickets: dict[int, dict] = {}
        self.lose_next_answer = False  # create the tickets, then answer 504
        self.busy_once = False  # answer the next create with 429

    def search(self, request):
        refs = set(request.args.get("external_ref", "").split(","))
        ids = set(request.args.get("id", "").split(","))
        found = [t for t in self.tickets.values() if t["external_ref"] in refs or str(t["id"]) in ids]
        return Reply(200, {"tickets": found})

    def create(self, request):
        if self.busy_once:
            self.busy_once = False
            return Reply(429, {"error": "slow down"}, headers={"Retry-After": "30"})
        results = []
        for ticket in request.json()["tickets"]:
            if ticket["queue"] != "callbacks":
                error = {"code": "unknown_queue", "message": f"no queue {ticket['queue']!r}"}
                results.append({"external_ref": ticket["external_ref"], "error": error})
                continue
            number = len(self.tickets) + 1
            self.tickets[number] = {**ticket, "id": number, "status": "open"}
            results.append({"external_ref": ticket["external_ref"], "id": number})
        if self.lose_next_answer:
            self.lose_next_answer = False
            return Reply(504, {"error": "gateway timeout"})
        return Reply(200, {"results": results})

    def solve(self, number: int, resolution: str) -> None:
        self.tickets[number].update(status="solved", resolution=resolution, solved_at="2026-11-21T10:30:00+00:00")


@pytest.fixture
def helpdesk(fake_vendor):
    desk = Helpdesk()
    fake_vendor.route("GET", "/v1/tickets", handler=desk.search)
    fake_vendor.route("POST", "/v1/tickets/batch", handler=desk.create)
    return desk


@pytest.fixture
def start(make_hub, fake_vendor, monkeypatch):
    monkeypatch.setenv("ACME_HELPDESK_TOKEN", "t0ken")

    def start(**settings):
        """A hub whose follow-ups go to the fake helpdesk; a setting given as None is left out."""
        sink = {"plugin": "acme_tickets", "token": "env:ACME_HELPDESK_TOKEN", "base_url": fake_vendor.url,
                **settings}
        sink = {key: value for key, value in sink.items() if value is not None}
        return make_hub(plugins=[acme_tickets], sinks={"helpdesk": sink}, routing={"followups": "helpdesk"})

    return start


def test_a_detractor_becomes_one_ticket_with_the_case_in_it(start, helpdesk, fake_vendor):
    hub = start()
    assert hub.api_post("/feedback", DETRACTOR).status_code == 201
    report = hub.dispatch()
    assert report.sent == 1
    (ticket,) = helpdesk.tickets.values()
    (case,) = hub.cases()
    assert ticket["subject"] == f"Call back Jan de Vries (case {case['id']})"
    assert ticket["requester"]["email"] == "jan@example.nl"
    assert ticket["description"].startswith("Drie weken zonder internet.")
    assert case["followup"]["status"] == "sent" and case["followup"]["external_id"] == str(ticket["id"])
    assert {r.headers["Authorization"] for r in fake_vendor.requests} == {"Bearer t0ken"}


def test_a_lost_answer_does_not_make_a_second_ticket(start, helpdesk, fake_vendor):
    hub = start()
    hub.api_post("/feedback", DETRACTOR)
    helpdesk.lose_next_answer = True
    first = hub.dispatch()
    assert (first.sent, first.retried) == (0, 1)  # the ticket exists, but the hub could not know
    second = hub.dispatch()
    assert second.sent == 1
    assert len(helpdesk.tickets) == 1 and len(fake_vendor.calls("POST")) == 1
    assert hub.cases()[0]["followup"]["external_id"] == "1"


def test_a_429_is_waited_out_on_the_hubs_clock(start, helpdesk, fake_clock):
    hub = start()
    hub.api_post("/feedback", DETRACTOR)
    helpdesk.busy_once = True
    assert hub.dispatch().sent == 1
    assert fake_clock.sleeps == [30.0] and len(helpdesk.tickets) == 1


def test_a_refused_ticket_ends_dead_with_the_helpdesks_reason(start, helpdesk):
    hub = start(queue="complaints")
    hub.api_post("/feedback", DETRACTOR)
    report = hub.dispatch()
    assert report.dead == 1 and helpdesk.tickets == {}
    followup = hub.cases()[0]["followup"]
    assert followup["status"] == "dead" and followup["last_error"] == "unknown_queue: no queue 'complaints'"


def test_solved_tickets_close_the_loop(start, helpdesk):
    hub = start()
    hub.api_post("/feedback", DETRACTOR)
    hub.dispatch()
    assert hub.sync_completed() == 0  # still open in the helpdesk
    helpdesk.solve(1, resolution="reached")
    assert hub.sync_completed() == 1
    (case,) = hub.cases()
    assert (case["status"], case["outcome"]) == ("contacted", "reached")
    assert case["contacted_at"].startswith("2026-11-21T10:30")


@pytest.mark.parametrize("settings, problem", [
    ({"batch_size": 500}, "sinks.helpdesk.batch_size"),
    ({"token": None}, "sinks.helpdesk.token: missing"),
])
def test_bad_settings_stop_the_start(start, settings, problem):
    with pytest.raises(Exception, match=problem):
        start(**settings)
