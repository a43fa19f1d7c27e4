"""The shared HTTP client against a real local HTTP server (fake clock)."""

from __future__ import annotations

import flask
import pytest

from hub.sdk import (
    BodyTokenPaginator,
    FakeClock,
    FatalError,
    HttpClient,
    PaginationLoopError,
    RateBudget,
    RetriableError,
    parse_retry_after,
)


class Script:
    """A vendor stand-in answering from a list of (status, headers, body)."""

    def __init__(self):
        self.answers: list[tuple[int, dict, object]] = []
        self.seen: list[dict] = []
        self.app = flask.Flask(__name__)
        self.app.add_url_rule("/<path:p>", "any", self.handle, methods=["GET", "POST"])

    def handle(self, p):
        self.seen.append({"path": p, "args": dict(flask.request.args), "auth": flask.request.headers.get("Authorization")})
        status, headers, body = self.answers.pop(0) if self.answers else (200, {}, {"ok": True})
        return flask.jsonify(body), status, headers


@pytest.fixture
def vendor(live_server):
    script = Script()
    script.url = live_server(script.app)
    return script


def test_429_with_retry_after_waits_that_long(vendor):
    clock = FakeClock()
    vendor.answers = [(429, {"Retry-After": "7"}, {"title": "Too Many Requests"}), (200, {}, {"n": 1})]
    client = HttpClient(vendor.url, clock=clock, headers={"Authorization": "Bearer s3cret"})
    assert client.get("/things").json() == {"n": 1}
    assert clock.sleeps == [7.0]
    assert len(vendor.seen) == 2 and vendor.seen[0]["auth"] == "Bearer s3cret"


def test_5xx_retried_with_jittered_exponential_backoff(vendor):
    clock = FakeClock()
    vendor.answers = [(503, {}, {}), (502, {}, {}), (500, {}, {}), (200, {}, {"ok": 1})]
    client = HttpClient(vendor.url, clock=clock, backoff_base=2.0)
    assert client.get("/x").status_code == 200
    assert len(clock.sleeps) == 3
    for n, slept in enumerate(clock.sleeps):
        assert 2.0 * 2**n / 2 <= slept <= 2.0 * 2**n


def test_retries_exhausted_raise_retriable(vendor):
    vendor.answers = [(503, {}, {"e": 1})] * 3
    client = HttpClient(vendor.url, clock=FakeClock(), max_retries=2)
    with pytest.raises(RetriableError) as err:
        client.get("/x")
    assert err.value.status == 503 and len(vendor.seen) == 3


def test_4xx_is_fatal_and_not_retried(vendor):
    vendor.answers = [(401, {}, {"code": "AUTHENTICATION_FAILED"})]
    client = HttpClient(vendor.url, clock=FakeClock())
    with pytest.raises(FatalError) as err:
        client.get("/x")
    assert err.value.status == 401 and err.value.body == {"code": "AUTHENTICATION_FAILED"}
    assert len(vendor.seen) == 1


def test_connection_refused_is_retriable():
    clock = FakeClock()
    client = HttpClient("http://127.0.0.1:9", clock=clock, max_retries=2)
    with pytest.raises(RetriableError):
        client.get("/x")
    assert len(clock.sleeps) == 2


def test_vendor_reset_header_blocks_the_next_request(vendor):
    clock = FakeClock(start=1000.0)
    vendor.answers = [(200, {"x-remaining": "0", "x-reset": "1060"}, {}), (200, {}, {})]

    def on_response(resp):
        if resp.headers.get("x-remaining") == "0":
            return float(resp.headers["x-reset"])
        return None

    client = HttpClient(vendor.url, clock=clock, budget=RateBudget(100, 1, clock), on_response=on_response)
    client.get("/a")
    client.get("/b")
    assert clock.now >= 1060 and clock.sleeps == [60.0]


def test_rate_budget_paces_requests():
    clock = FakeClock(start=0.0)
    budget = RateBudget(2, 1.0, clock)
    for _ in range(6):
        budget.acquire()
    assert clock.now == pytest.approx(2.0)  # 2 at once, then 2 per second


def test_pagination_loop_is_detected(vendor):
    vendor.answers = [(200, {}, {"data": [1], "meta": {"next_token": "A"}}),
                      (200, {}, {"data": [2], "meta": {"next_token": "B"}}),
                      (200, {}, {"data": [3], "meta": {"next_token": "A"}})]
    client = HttpClient(vendor.url, clock=FakeClock())
    pages = []
    with pytest.raises(PaginationLoopError):
        for _, records in client.paginate("GET", "/list", params_for=lambda t: {"token": t} if t else {},
                                          parse=lambda r: r.json()["data"], paginator=BodyTokenPaginator("meta.next_token")):
            pages.append(records)
    assert pages == [[1], [2], [3]]
    assert [s["args"] for s in vendor.seen] == [{}, {"token": "A"}, {"token": "B"}]


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == pytest.approx(10.0)
    assert parse_retry_after("garbage", 0) is None and parse_retry_after("3", 0) == 3.0
