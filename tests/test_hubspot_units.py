"""HubSpot sink building blocks without HTTP: task wording, signatures,
rate-limit bookkeeping, error parsing (CONTRACTS.md §2)."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import deque
from pathlib import Path

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from hub.sdk import (
    CaseView,
    CustomerView,
    FakeClock,
    FeedbackView,
    FollowupView,
    Instance,
    RateBudget,
    RollingWindowBudget,
    Signal,
)
from plugins.crm_hubspot.content import (
    body,
    find_marker,
    hs_timestamp,
    marker,
    pick_owner,
    subject,
    task_input,
)
from plugins.crm_hubspot.ratelimit import DailyLimitReached
from plugins.crm_hubspot.signatures import SignatureError, v1_signature, v3_signature, verify_v1, verify_v3
from plugins.crm_hubspot.sink import HubSpotSink, existing_contact_id

FIXTURES = Path(__file__).parent / "fixtures" / "hubspot"
NOW = dt.datetime(2027, 1, 15, 9, 30, tzinfo=dt.UTC)


def load(path: str):
    return json.loads((FIXTURES / path).read_bytes())


def make_followup(*, case_id=7, priority="high", risk=72, text="Al drie weken geen internet, ik zeg op!",
                  nps: int | None = 2, email="sanne@example.nl", items: int = 1, url=None, key=None,
                  customer: CustomerView | None = None) -> FollowupView:
    reasons = (Signal("nps", 36, "NPS 2"), Signal("churn", 25, "churn words: zeg op"))
    fitems = tuple(
        FeedbackView(id=i + 1, source="nps_survey", external_id=f"r{i}", channel="survey",
                     occurred_at=NOW - dt.timedelta(days=i), text=text, nps=nps, language="nl", reach=None,
                     category="detractor" if nps is not None else None, risk=risk, risk_reasons=reasons,
                     customer_id=3, case_id=case_id, url=url)
        for i in range(items))
    return FollowupView(
        id=11, case_id=case_id, sink="hubspot", idempotency_key=key or f"hub-case-{case_id}-callback",
        due_at=NOW + dt.timedelta(hours=3), attempts=1, external_id=None,
        customer=customer or CustomerView(id=3, name="Sanne Bakker", email=email, crm_id=None, value=12500.0),
        case=CaseView(id=case_id, customer_id=3, status="new", priority=priority, risk=risk,
                      sla_due_at=NOW + dt.timedelta(hours=24), owner=None, outcome=None),
        items=fitems, case_url=f"https://hub.example.nl/cases/{case_id}")


# -- task content ------------------------------------------------------------------
def test_task_input_has_the_shape_of_the_documented_batch_create_request():
    documented = load("from_docs/batch_create_tasks_request.reconstructed.json")["inputs"][0]
    ours = task_input(make_followup(), contact_id="101", owner="64492917")
    assert set(documented["properties"]) <= set(ours["properties"])
    assert ours["associations"] == documented["associations"]  # same contact id -> identical association
    assert all(isinstance(v, str) for v in ours["properties"].values())
    assert ours["properties"]["hs_task_type"] == "CALL"
    assert ours["properties"]["hs_task_status"] == "NOT_STARTED"
    assert ours["objectWriteTraceId"] == "hub-case-7-callback"


def test_due_time_is_the_followup_due_slot_in_utc_milliseconds():
    f = make_followup()
    assert task_input(f, "1", None)["properties"]["hs_timestamp"] == "2027-01-15T12:30:00.000Z"
    amsterdam = dt.datetime(2027, 1, 15, 13, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert hs_timestamp(amsterdam) == "2027-01-15T12:30:00.000Z"


@pytest.mark.parametrize("priority,expected", [("urgent", "HIGH"), ("high", "HIGH"), ("normal", "MEDIUM"),
                                               ("low", "LOW")])
def test_priority_follows_the_case_priority(priority, expected):
    assert task_input(make_followup(priority=priority), "1", None)["properties"]["hs_task_priority"] == expected


def test_owner_is_the_contacts_owner_else_a_stable_round_robin():
    owners = ["111", "222", "333"]
    assert pick_owner(make_followup(case_id=5), "999", owners) == "999"
    picks = [pick_owner(make_followup(case_id=c), None, owners) for c in range(1, 7)]
    assert picks == ["222", "333", "111", "222", "333", "111"]
    assert pick_owner(make_followup(case_id=5), None, owners) == pick_owner(make_followup(case_id=5), None, owners)
    assert pick_owner(make_followup(), None, []) is None
    assert "hubspot_owner_id" not in task_input(make_followup(), "1", None)["properties"]


def test_subject_and_body_tell_the_caller_what_happened():
    f = make_followup(url="https://x.com/s/1")
    assert subject(f) == "Call back Sanne Bakker: NPS 2 (detractor) via nps_survey, risk 72"
    text = body(f)
    for expected in ("ik zeg op", "NPS 2", "churn words: zeg op", "nps_survey", "risk 72",
                     "https://hub.example.nl/cases/7", "sanne@example.nl", "https://x.com/s/1", "12,500"):
        assert expected in text
    assert find_marker(text) == "hub-case-7-callback"


def test_body_escapes_customer_text_and_keeps_the_marker_findable():
    f = make_followup(text='<script>alert("x")</script> & co')
    text = body(f)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert find_marker(text) == f.idempotency_key
    assert find_marker("<p>no marker here</p>") is None
    assert find_marker(None) is None


def test_body_stays_under_hubspots_limit_with_huge_texts():
    f = make_followup(text="x" * 100_000, items=12)
    text = body(f)
    assert len(text) <= 60_000
    assert find_marker(text) == f.idempotency_key
    assert "…and 7 earlier messages" in text


def test_subject_for_social_feedback_without_score():
    f = make_followup(nps=None, text="@acme weer storing")
    assert subject(f).startswith("Call back Sanne Bakker: survey feedback via nps_survey")


def test_a_customer_known_only_by_a_handle_is_named_as_the_handle_shows():
    social = CustomerView(id=3, name=None, email=None, crm_id=None, value=None,
                          handles=(("x_handle", "boze_klant"),), handle="@boze_klant")
    f = make_followup(customer=social)
    assert subject(f).startswith("Call back @boze_klant: NPS 2")
    assert "Customer: @boze_klant" in body(f)
    nobody = CustomerView(id=3, name=None, email=None, crm_id=None, value=None)
    assert subject(make_followup(customer=nobody)).startswith("Call back customer #3:")


def test_marker_is_derived_from_the_idempotency_key():
    assert marker("hub-case-1-callback") == "[feedback-hub:hub-case-1-callback]"
    assert find_marker(f"<p>{marker('hub-case-1-callback')}</p>") == "hub-case-1-callback"


# -- errors -----------------------------------------------------------------------
def test_existing_id_is_read_from_the_real_409_body():
    assert existing_contact_id(load("error_409_contact_already_exists.json")) == "37765128953"
    assert existing_contact_id(load("error_401_invalid_authentication.json")) is None
    assert existing_contact_id("not json") is None


# -- signatures ---------------------------------------------------------------------
def test_v3_signature_matches_the_contract_test_vector():
    sig = v3_signature("client_secret_example", "POST", "https://example.com/hubspot/webhook", b'[{"eventId":1}]',
                       "1700000000000")
    assert sig == "I4BEaGLsOvbfAkAOYh6BfuuoV0pRyscYtBBl8rmu+sE="


def test_v1_signature_reproduces_the_docs_hash_over_the_docs_example():
    raw = (FIXTURES / "webhook_contact_creation_docs_example.json").read_bytes()
    expected = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    assert v1_signature("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy", raw) == expected
    verify_v1("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy", raw, expected.upper())
    with pytest.raises(SignatureError):
        verify_v1("other-secret", raw, expected)


def test_v3_verification_rejects_stale_tampered_and_unsigned_requests():
    args = ("client_secret_example", "POST", "https://example.com/hubspot/webhook", b'[{"eventId":1}]')
    good = "I4BEaGLsOvbfAkAOYh6BfuuoV0pRyscYtBBl8rmu+sE="
    verify_v3(*args, "1700000000000", good, now_ms=1_700_000_000_000 + 299_999)
    with pytest.raises(SignatureError, match="older than 5 minutes"):
        verify_v3(*args, "1700000000000", good, now_ms=1_700_000_000_000 + 300_001)
    with pytest.raises(SignatureError, match="does not match"):
        verify_v3(args[0], "POST", args[2], b'[{"eventId":2}]', "1700000000000", good, now_ms=1_700_000_000_000)
    with pytest.raises(SignatureError, match="missing"):
        verify_v3(*args, None, good, now_ms=1_700_000_000_000)
    with pytest.raises(SignatureError, match="not a number"):
        verify_v3(*args, "yesterday", good, now_ms=1_700_000_000_000)


# -- rate limits -------------------------------------------------------------------
def _max_in_window(times: list[float], window: float) -> int:
    best, q = 0, deque()
    for t in times:
        q.append(t)
        while q[0] <= t - window:
            q.popleft()
        best = max(best, len(q))
    return best


class _MicrosecondClock(FakeClock):
    """RateBudget's refill wait can come out below a float's resolution (1e-17 s)
    and then never advances a FakeClock: a sleep lasts at least a microsecond here."""

    def sleep(self, seconds: float) -> None:
        super().sleep(max(seconds, 1e-6))


def _drive(budget, clock: FakeClock, gaps: list[float]) -> list[float]:
    sent = []
    for gap in gaps:
        clock.now += gap
        budget.acquire()
        sent.append(clock.time())
    return sent


def test_rolling_window_budget_never_exceeds_the_window_where_a_token_bucket_would():
    burst = [0.0] * 250  # a dispatcher with 250 follow-ups sends as fast as it may
    clock = FakeClock()
    sent = _drive(RollingWindowBudget(100, 10.0, clock=clock), clock, burst)
    assert _max_in_window(sent, 10.0) == 100
    assert sent[-1] - sent[0] > 20  # 250 requests need three windows
    # The core's token bucket refills continuously: fine for most vendors, but
    # right after a full burst it lets ~10 more per second through - HubSpot's
    # rolling window would answer those with 429.
    bucket_clock = _MicrosecondClock()
    bucket_sent = _drive(RateBudget(100, 10.0, clock=bucket_clock), bucket_clock, burst)
    assert _max_in_window(bucket_sent, 10.0) > 150


def test_rolling_window_budget_holds_under_irregular_load():
    rng = random.Random(5)
    gaps = [rng.choice([0.0] * 30 + [0.05, 0.5, 4.0, 12.0]) for _ in range(2000)]
    clock = FakeClock()
    sent = _drive(RollingWindowBudget(100, 10.0, clock=clock), clock, gaps)
    assert _max_in_window(sent, 10.0) <= 100
    assert clock.sleeps


def test_rolling_window_budget_waits_for_the_oldest_request_to_leave_and_honours_block_until():
    clock = FakeClock()
    budget = RollingWindowBudget(3, 10.0, clock=clock, margin=0.05)
    for _ in range(3):
        assert budget.acquire() == 0
    assert budget.acquire() == pytest.approx(10.05)
    budget.block_until(clock.time() + 30)
    assert budget.acquire() == pytest.approx(30)
    assert budget.in_window() == 1  # the three early ones left the window while we waited


def _response(status: int, headers: dict[str, str], body: dict | None = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.headers = CaseInsensitiveDict(headers)
    resp._content = json.dumps(body or {}).encode()
    return resp


def make_sink(clock: FakeClock, **settings) -> HubSpotSink:
    return HubSpotSink(Instance("hubspot", "crm_hubspot", "sink", {"token": "pat-x", **settings}), clock=clock)


def test_rate_limit_headers_pause_the_instance_when_the_window_is_spent():
    clock = FakeClock()
    sink = make_sink(clock)
    assert sink.rate_limit_wait(_response(200, {"X-HubSpot-RateLimit-Remaining": "4"})) is None
    until = sink.rate_limit_wait(_response(200, {"X-HubSpot-RateLimit-Remaining": "0",
                                                 "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}))
    assert until == clock.time() + 10
    assert sink.rate_limit_wait(_response(200, {"X-HubSpot-RateLimit-Remaining": "garbled"})) is None


def test_429_waits_retry_after_or_else_the_policy_window():
    clock = FakeClock()
    sink = make_sink(clock)
    real_429 = load("error_429_secondly_limit.json")
    assert sink.rate_limit_wait(_response(429, {"Retry-After": "7"}, real_429)) == clock.time() + 7
    # The real body says SECONDLY and HubSpot sends no Retry-After to API clients: one second.
    assert sink.rate_limit_wait(_response(429, {}, real_429)) == clock.time() + 1
    rolling = {**real_429, "policyName": "TEN_SECONDLY_ROLLING"}
    assert sink.rate_limit_wait(_response(429, {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
                                          rolling)) == clock.time() + 10


def test_daily_limit_stops_requests_until_midnight_in_the_account_time_zone():
    clock = FakeClock(dt.datetime(2027, 1, 15, 22, 0, tzinfo=dt.UTC).timestamp())
    sink = make_sink(clock, account_timezone="Europe/Amsterdam")
    sink.daily.check()
    with pytest.raises(DailyLimitReached) as info:
        sink.rate_limit_wait(_response(429, {}, {**load("error_429_secondly_limit.json"), "policyName": "DAILY"}))
    assert info.value.retry_after == pytest.approx(3600)  # 23:00 in Amsterdam -> midnight
    with pytest.raises(DailyLimitReached):
        sink.daily.check()
    clock.now += 3601
    sink.daily.check()  # a new day in Amsterdam
    sink.rate_limit_wait(_response(200, {"X-HubSpot-RateLimit-Daily-Remaining": "0"}))
    with pytest.raises(DailyLimitReached):
        sink.daily.check()


def test_daily_quota_counts_our_own_requests():
    clock = FakeClock()
    sink = make_sink(clock, daily_limit=2)
    for _ in range(2):
        sink.daily.check()
        sink.rate_limit_wait(_response(200, {}))
    with pytest.raises(DailyLimitReached):
        sink.daily.check()


def test_instance_limits_are_configurable_for_other_tiers():
    clock = FakeClock()
    sink = make_sink(clock, rate_limit=[190, 10], search_rate_limit=[5, 1], timeout=[2, 9])
    budget = sink.http_budget()
    assert (budget.limit, budget.window) == (190, 10.0)
    assert (sink.search_budget.limit, sink.search_budget.window) == (5, 1.0)
    assert sink.http.timeout == (2, 9)
    assert make_sink(clock).http_budget().limit == 100  # private app, Free/Starter
