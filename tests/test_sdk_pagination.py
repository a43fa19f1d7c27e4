"""Paginators, ``validate_response``, per-request options and child streams, against real
local HTTP servers (a Graph-shaped stand-in built from the copied Graph payloads) on a FakeClock."""

from __future__ import annotations

import copy
import datetime as dt
import json

import flask
import pytest
import requests
from sqlalchemy import func, select

from hub.engine.pulls import pull, source_status
from hub.sdk import (
    BodyTokenPaginator,
    CustomerRef,
    FakeClock,
    FatalError,
    FeedbackIn,
    HttpClient,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PaginationLoopError,
    RateBudget,
    RateLimitedError,
    Setting,
    SourceConnector,
    Stream,
    hookimpl,
    path_get,
)
from hub.sdk import http as http_module
from hub.sdk.http import RecentTokens
from hub.storage import models as m
from tests.conftest import fixture_path


def load(name: str):
    return json.loads(fixture_path(f"facebook/{name}").read_text())


PAGING = load("paging_cursor_docs.json")["paging"]
FEED = load("page_feed_edge_airbyte_fixture.json")["data"]
COMMENTS = load("post_with_nested_comments_recorded_2013.json")["comments"]["data"]
THROTTLED = load("error_4_app_request_limit_issue.json")
BAD_TOKEN = load("error_190_460_generic_docs.json")
PAGE_ID = "112704783733939"


def _cursor(index: int) -> str:
    import base64

    return base64.b64encode(str(index).encode()).decode()


def _index(cursor: str) -> int:
    import base64

    return int(base64.b64decode(cursor))


class Graph:
    """Graph stand-in: cursor-paged edges in Graph's published ``paging`` shape.

    Like the real API it keeps ``paging.cursors.after`` on the last page and
    leaves out ``paging.next`` there.  The posts are the Airbyte feed entries
    (Airbyte had blanked most ids to "123"; each gets a distinct id here), the
    comments the recorded 2013 ones, three per post (ids made distinct).
    """

    def __init__(self):
        self.posts = [{**p, "id": p["id"] if p["id"] != "123" else f"{PAGE_ID}_{900 + n}"}
                      for n, p in enumerate(FEED)]
        self.comments = {p["id"]: [{**copy.deepcopy(COMMENTS[k % 2]), "id": f"{p['id']}_{k}"} for k in range(3)]
                         for p in self.posts}
        self.log: list[tuple[str, dict]] = []
        #: Answers to give before the normal ones: (status, body).
        self.errors: list[tuple[int, dict]] = []
        self.fail_comment_call: int | None = None
        self.comment_calls = 0
        #: Host the ``paging`` links name (None: this server's own).
        self.link_host: str | None = None
        self.app = flask.Flask(__name__)
        self.app.add_url_rule("/v19.0/<node>/<edge>", "edge", self.edge)
        self.app.add_url_rule("/<node>/<edge>", "edge_unversioned", self.edge)

    def edge(self, node: str, edge: str):
        args = dict(flask.request.args)
        self.log.append((f"{node}/{edge}", {**args, "X-Page": flask.request.headers.get("X-Page")}))
        if self.errors:
            status, body = self.errors.pop(0)
            return body, status
        if edge == "feed":
            rows = self.posts
        else:
            self.comment_calls += 1
            if self.fail_comment_call is not None and self.comment_calls >= self.fail_comment_call:
                return {"error": {"message": "Unsupported get request.", "type": "GraphMethodException",
                                  "code": 100}}, 404
            rows = self.comments[node]
        limit = int(args.get("limit", 25))
        start = _index(args["after"]) + 1 if "after" in args else 0
        page = rows[start:start + limit]
        if not page:
            return {"data": []}  # what Graph answers past the end
        paging = copy.deepcopy(PAGING)
        paging["cursors"] = {"before": _cursor(start), "after": _cursor(start + len(page) - 1)}
        base = f"{self.link_host or flask.request.host_url}v19.0/{node}/{edge}?limit={limit}"
        paging["previous"] = f"{base}&before={_cursor(start)}"
        if start + len(page) < len(rows):
            paging["next"] = f"{base}&after={paging['cursors']['after']}"
        else:
            del paging["next"]
        if start == 0:
            del paging["previous"]
        return {"data": page, "paging": paging}


@pytest.fixture
def graph(live_server):
    g = Graph()
    g.url = live_server(g.app)
    return g


def data(resp: requests.Response) -> list:
    return resp.json().get("data") or []


def walk(client: HttpClient, path: str, paginator, params=None, **kwargs) -> list[list]:
    return [page.records for page in client.pages(
        "GET", path, params_for=params or (lambda token: {"limit": 2, **({"after": token} if token else {})}),
        parse=data, paginator=paginator, **kwargs)]


# -- paths ----------------------------------------------------------------------------
def test_paths_read_dotted_jsonpath_and_indexed_values_and_never_raise():
    doc = {"paging": {"cursors": {"after": "QVFI"}}, "data": [{"id": "1"}, {"id": "2"}], "n": 0}
    assert path_get(doc, "paging.cursors.after") == path_get(doc, "$.paging.cursors.after") == "QVFI"
    assert path_get(doc, "data[-1].id") == "2" and path_get(doc, "data[0].id") == "1"
    assert path_get(doc, "data[5].id") is None and path_get(doc, "paging.next") is None
    assert path_get(doc, "n.deeper") is None and path_get(None, "a.b") is None and path_get(doc, "n") == 0


# -- body token: has_more apart from the token --------------------------------------------
def test_graphs_last_page_keeps_its_cursor_but_has_more_ends_the_run(graph):
    client = HttpClient(graph.url, clock=FakeClock())
    graph_style = BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next")
    pages = walk(client, f"/{PAGE_ID}/feed", graph_style)
    assert [len(p) for p in pages] == [2, 2] and len(graph.log) == 2
    assert [p["id"] for page in pages for p in page] == [p["id"] for p in graph.posts]
    assert graph.log[1][1]["after"] == _cursor(1)

    # The token alone would fetch one more page: the last page still had a cursor.
    graph.log.clear()
    walk(client, f"/{PAGE_ID}/feed", BodyTokenPaginator("paging.cursors.after"))
    assert len(graph.log) == 3 and graph.log[2][1]["after"] == _cursor(3)


def test_a_has_more_flag_stops_even_with_a_token(live_server):
    app = flask.Flask(__name__)
    seen = []

    @app.get("/list")
    def listing():
        seen.append(flask.request.args.get("cursor"))
        more = len(seen) < 2
        return {"results": [len(seen)], "has_more": more, "next_cursor": f"c{len(seen)}"}

    client = HttpClient(live_server(app), clock=FakeClock())
    pages = [p.records for p in client.pages("GET", "/list", params_for=lambda t: {"cursor": t} if t else {},
                                             parse=lambda r: r.json()["results"],
                                             paginator=BodyTokenPaginator("next_cursor", has_more_path="has_more"))]
    assert pages == [[1], [2]] and seen == [None, "c1"]


# -- next URL and Link header -------------------------------------------------------------
def test_next_url_is_followed_as_given_and_only_on_the_apis_host(graph):
    client = HttpClient(graph.url, clock=FakeClock())
    pages = walk(client, f"/{PAGE_ID}/feed", NextUrlPaginator("paging.next"))
    assert [len(p) for p in pages] == [2, 2]
    assert graph.log[1] == (f"{PAGE_ID}/feed", {"limit": "2", "after": _cursor(1), "X-Page": None})

    graph.link_host = "https://graph.example.net/"  # a link off the API's host would carry our token there
    graph.log.clear()
    with pytest.raises(FatalError, match="not following it"):
        walk(client, f"/{PAGE_ID}/feed", NextUrlPaginator("paging.next"))
    assert len(graph.log) == 1


def test_link_header_next_is_followed_relative_or_absolute(live_server):
    app = flask.Flask(__name__)
    seen = []

    @app.get("/issues")
    def issues():
        page = int(flask.request.args.get("page", 1))
        seen.append(dict(flask.request.args))
        resp = flask.jsonify([{"n": page}])
        if page == 1:
            resp.headers["Link"] = '</issues?page=2&per_page=1>; rel="next", </issues?page=3>; rel="last"'
        elif page == 2:
            resp.headers["Link"] = (f'<{flask.request.host_url}issues?page=1>; rel="prev", '
                                    f'<{flask.request.host_url}issues?page=3&per_page=1>; rel="next"')
        return resp

    client = HttpClient(live_server(app), clock=FakeClock())
    pages = [p.records for p in client.pages("GET", "/issues", params_for=lambda t: {"per_page": 1},
                                             parse=lambda r: r.json(), paginator=LinkHeaderPaginator())]
    assert pages == [[{"n": 1}], [{"n": 2}], [{"n": 3}]]
    assert seen == [{"per_page": "1"}, {"page": "2", "per_page": "1"}, {"page": "3", "per_page": "1"}]


# -- offset and page number ---------------------------------------------------------------
@pytest.fixture
def numbered(live_server):
    app = flask.Flask(__name__)
    app.config["rows"] = list(range(5))
    seen: list[dict] = []

    @app.get("/items")
    def items():
        seen.append(dict(flask.request.args))
        rows = app.config["rows"]
        if "page" in flask.request.args:
            size = int(flask.request.args["per_page"])
            start = (int(flask.request.args["page"]) - 1) * size
            return {"items": rows[start:start + size], "meta": {"pages": -(-len(rows) // size)}}
        offset, limit = int(flask.request.args["offset"]), int(flask.request.args["limit"])
        return {"items": rows[offset:offset + limit], "total": len(rows)}

    return app, live_server(app), seen


def items(resp):
    return resp.json()["items"]


def test_offset_pages_advance_by_records_and_stop_on_a_short_page_or_the_total(numbered):
    app, url, seen = numbered
    client = HttpClient(url, clock=FakeClock())

    def offset_params(token):
        return {"offset": token or 0, "limit": 2}

    got = [p.records for p in client.pages("GET", "/items", params_for=offset_params, parse=items,
                                           paginator=OffsetPaginator(2))]
    assert got == [[0, 1], [2, 3], [4]] and [s["offset"] for s in seen] == ["0", "2", "4"]

    app.config["rows"] = list(range(4))  # an exact multiple: the total saves the empty round trip
    seen.clear()
    got = [p.records for p in client.pages("GET", "/items", params_for=offset_params, parse=items,
                                           paginator=OffsetPaginator(2, total_path="total"))]
    assert got == [[0, 1], [2, 3]] and len(seen) == 2
    seen.clear()
    list(client.pages("GET", "/items", params_for=offset_params, parse=items, paginator=OffsetPaginator(2)))
    assert len(seen) == 3  # without the total it must ask once more


def test_page_numbers_count_up_and_stop_at_total_pages_or_an_empty_page(numbered):
    app, url, seen = numbered
    client = HttpClient(url, clock=FakeClock())

    def page_params(token):
        return {"page": token or 1, "per_page": 2}

    got = [p.records for p in client.pages("GET", "/items", params_for=page_params, parse=items,
                                           paginator=PageNumberPaginator(total_pages_path="meta.pages"))]
    assert got == [[0, 1], [2, 3], [4]] and [s["page"] for s in seen] == ["1", "2", "3"]
    app.config["rows"] = list(range(4))
    seen.clear()
    got = [p.records for p in client.pages("GET", "/items", params_for=page_params, parse=items,
                                           paginator=PageNumberPaginator())]
    assert got == [[0, 1], [2, 3], []] and len(seen) == 3  # stopped by the empty page
    seen.clear()
    list(client.pages("GET", "/items", params_for=page_params, parse=items,
                      paginator=PageNumberPaginator(page_size=2, total_pages_path="meta.pages")))
    assert len(seen) == 2


def test_a_token_seen_twice_is_still_a_loop(live_server):
    app = flask.Flask(__name__)

    @app.get("/feed")
    def feed():  # a buggy API: always the same "next" cursor
        return {"data": [1], "paging": {"cursors": {"after": "QQ=="}, "next": "yes"}}

    client = HttpClient(live_server(app), clock=FakeClock())
    with pytest.raises(PaginationLoopError, match="twice"):
        walk(client, "/feed", BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next"))


def test_recent_tokens_remember_the_latest_only():
    recent = RecentTokens(limit=3)
    for n in range(10):
        recent.add(f"t{n}")
    recent.add("t9")  # again: no second entry
    assert len(recent) == 3
    assert [t in recent for t in ("t6", "t7", "t8", "t9")] == [False, True, True, True]
    with pytest.raises(ValueError):
        RecentTokens(limit=0)


def test_a_long_walk_keeps_a_bounded_window_of_tokens_and_still_sees_a_loop(live_server, monkeypatch):
    monkeypatch.setattr(http_module, "LOOP_WINDOW", 4)
    app = flask.Flask(__name__)

    @app.get("/feed")
    def feed():  # 30 distinct cursors, then back to cursor 28: a loop of two pages
        after = int(flask.request.args.get("after", "0"))
        nxt = after + 1 if after < 30 else 28
        return {"data": [after], "paging": {"cursors": {"after": str(nxt)}, "next": "yes"}}

    windows = []
    real_add = RecentTokens.add

    def add(self, token):
        real_add(self, token)
        windows.append(len(self))

    monkeypatch.setattr(RecentTokens, "add", add)
    client = HttpClient(live_server(app), clock=FakeClock())
    with pytest.raises(PaginationLoopError, match="twice"):
        walk(client, "/feed", BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next"),
             params=lambda token: {"after": token} if token else {})
    assert len(windows) == 30 and max(windows) == 4  # 30 tokens seen, never more than 4 kept


# -- per-request options ----------------------------------------------------------------
class RecordingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.timeouts = []

    def request(self, method, url, **kwargs):
        self.timeouts.append(kwargs.get("timeout"))
        return super().request(method, url, **kwargs)


def test_request_options_give_each_page_its_headers_and_timeout(graph):
    session = RecordingSession()
    client = HttpClient(graph.url, clock=FakeClock(), session=session, timeout=(5.0, 30.0))
    walk(client, f"/{PAGE_ID}/feed", BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next"),
         options_for=lambda token: {"headers": {"X-Page": token or "first"}, "timeout": 7.5 if token else None})
    assert [entry[1]["X-Page"] for entry in graph.log] == ["first", _cursor(1)]
    assert session.timeouts == [(5.0, 30.0), 7.5]  # None keeps the client's timeout


# -- a Graph-like source through the core's pull ----------------------------------------------
GRAPH_THROTTLING = {4, 17, 32, 613}


class CommentsStream(Stream):
    name = "comments"
    path = "/{post_id}/comments"
    raw_kind = "comment"
    paginator = BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next")

    def request_params(self, cursor, page_token, since):
        assert cursor is None  # the parent's cursor bounds a child's run
        return {"limit": 2, **({"after": page_token} if page_token else {})}

    def parse_records(self, response):
        return data(response)

    def dedupe_key(self, record):
        return record["id"]

    def to_raw(self, record, response):
        raw = super().to_raw(record, response)
        return type(raw)(payload={"comment": record, "post_id": self.context["post_id"]},
                         dedupe_key=raw.dedupe_key, kind=raw.kind)


class FeedStream(Stream):
    name = "feed"
    path = "/{page_id}/feed"
    cursor_field = "created_time"
    is_sorted = False  # newest first
    raw_kind = "post"
    paginator = BodyTokenPaginator("paging.cursors.after", has_more_path="paging.next")
    children = (CommentsStream,)

    def request_params(self, cursor, page_token, since):
        return {"limit": 2, **({"after": page_token} if page_token else {})}

    def request_options(self, page_token):
        return {"headers": {"X-Page": page_token or "first"}}

    def parse_records(self, response):
        return data(response)

    def dedupe_key(self, record):
        return record["id"]

    def child_context(self, record):
        return {"post_id": record["id"]}


class PageConnector(SourceConnector):
    plugin_name = "test_graph_page"
    default_base_url = "http://invalid"
    settings = [Setting("page_id", required=True)]

    def validate_response(self, response):
        if response.status_code == 400:
            error = (response.json() or {}).get("error") or {}
            if error.get("code") in GRAPH_THROTTLING:
                raise RateLimitedError(f"Graph throttling: {error.get('message')}", 400, error, response,
                                       retry_after=60.0)
        super().validate_response(response)

    def streams(self):
        return [FeedStream(self)]

    def normalize(self, raw):
        if raw.kind == "post":
            return []  # the page's own posts are not feedback
        c = raw.payload["comment"]
        return [FeedbackIn(external_id=c["id"], channel="social", text=c["message"], thread_id=raw.payload["post_id"],
                           occurred_at=dt.datetime.strptime(c["created_time"], "%Y-%m-%dT%H:%M:%S%z"),
                           customer=CustomerRef(name=c["from"]["name"]))]


class Plugin:
    @hookimpl
    def hub_register_connectors(self):
        return [PageConnector]


@pytest.fixture
def clock():
    return FakeClock(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp())


@pytest.fixture
def hub(make_app, graph, clock):
    app = make_app(plugins=(Plugin(),), clock=clock,
                   sources={"fbpage": {"plugin": "test_graph_page", "base_url": graph.url, "page_id": PAGE_ID}})
    return app.extensions["hub"]


def count(hub, model, *where) -> int:
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def feed_state(hub) -> m.ConnectorState:
    with hub.db.Session() as s:
        return s.scalars(select(m.ConnectorState).where(m.ConnectorState.stream == "feed")).one()


def test_the_core_pages_and_counts_child_streams(hub, graph):
    report = pull(hub, "fbpage")
    feed = report.streams["feed"]
    comments = report.streams["feed/comments"]
    assert (feed.pages, feed.records, feed.new_items) == (2, 4, 0)
    assert (comments.pages, comments.records, comments.new_items) == (8, 12, 12)  # 4 posts x (2 + 1)
    assert (report.pages, report.records, report.new_items) == (10, 16, 12)
    assert count(hub, m.FeedbackItem) == 12
    assert count(hub, m.RawEvent, m.RawEvent.status == "skipped") == 4  # the posts, marked
    feed_calls = [args for path, args in graph.log if path.endswith("/feed")]
    assert [a["X-Page"] for a in feed_calls] == ["first", _cursor(1)]  # the stream's request_options
    assert all(args["X-Page"] is None for path, args in graph.log if path.endswith("/comments"))
    assert [e[0] for e in graph.log[:4]] == [f"{PAGE_ID}/feed", f"{graph.posts[0]['id']}/comments",
                                             f"{graph.posts[0]['id']}/comments", f"{graph.posts[1]['id']}/comments"]
    with hub.db.Session() as s:
        item = s.scalars(select(m.FeedbackItem).where(m.FeedbackItem.external_id == f"{graph.posts[2]['id']}_1")).one()
        assert item.thread_id == graph.posts[2]["id"] and item.text == COMMENTS[1]["message"]
    st = feed_state(hub)
    assert st.cursor == max(p["created_time"] for p in graph.posts) and "children" not in (st.state or {})
    assert [s["name"] for s in source_status(hub)] == ["fbpage"]


def test_a_run_that_dies_in_a_child_resumes_where_it_stopped(hub, graph):
    graph.fail_comment_call = 6  # post 0: 2 calls, post 1: 2 calls, post 2: page 1 ok, page 2 fails
    with pytest.raises(FatalError, match="404"):
        pull(hub, "fbpage")
    assert count(hub, m.FeedbackItem) == 2 + 3 + 3
    st = feed_state(hub)
    assert st.cursor is None  # nothing finished: the old cursor stays
    assert len(st.state["children"]["done"]) == 2
    post2 = graph.posts[2]["id"]
    assert st.state["children"]["partial"]["token"] == _cursor(1)

    graph.fail_comment_call = None
    graph.log.clear()
    report = pull(hub, "fbpage")
    comment_calls = [(path, args.get("after")) for path, args in graph.log if path.endswith("/comments")]
    post3 = graph.posts[3]["id"]
    # Finished parents are not read again; post 2 continues from its last committed page's cursor.
    assert comment_calls == [(f"{post2}/comments", _cursor(1)), (f"{post3}/comments", None),
                             (f"{post3}/comments", _cursor(1))]
    assert report.streams["feed/comments"].records == 1 + 3 and report.streams["feed"].duplicates == 4
    assert count(hub, m.FeedbackItem) == 12
    assert "children" not in (feed_state(hub).state or {})
    assert feed_state(hub).cursor == max(p["created_time"] for p in graph.posts)


def test_validate_response_turns_graphs_400_throttle_into_a_wait(hub, graph, clock):
    graph.errors = [(400, THROTTLED)]
    report = pull(hub, "fbpage")
    assert report.new_items == 12
    assert clock.sleeps[0] == 60.0  # the classified wait, not a backoff guess
    assert graph.log[0][1] == graph.log[1][1]  # the same request, sent again


def test_validate_response_leaves_other_400s_fatal_and_unretried(hub, graph, clock):
    graph.errors = [(400, BAD_TOKEN)]
    with pytest.raises(FatalError) as err:
        pull(hub, "fbpage")
    assert err.value.status == 400 and len(graph.log) == 1 and clock.sleeps == []
    assert "HTTP 400" in source_status(hub)[0]["last_error"]


def test_a_rate_limited_answer_pauses_the_instances_budget(graph):
    clock = FakeClock(1000.0)
    budget = RateBudget(100, 1.0, clock)

    def validate(response):
        if response.status_code == 400 and response.json()["error"]["code"] == 4:
            raise RateLimitedError("throttled", 400, response.json(), response, retry_after=30.0)
        client.check_status(response)

    client = HttpClient(graph.url, clock=clock, budget=budget, validate=validate)
    graph.errors = [(400, THROTTLED)]
    assert len(data(client.get(f"/{PAGE_ID}/feed"))) == 4
    assert budget.blocked_until == 1030.0 and clock.now >= 1030.0


def test_a_looping_next_url_is_reported_without_its_query(live_server):
    app = flask.Flask(__name__)

    @app.get("/feed")
    def feed():  # Graph's next links carry the access token
        return {"data": [1], "paging": {"next": f"{flask.request.host_url}feed?access_token=EAAB-secret&after=QQ"}}

    client = HttpClient(live_server(app), clock=FakeClock())
    with pytest.raises(PaginationLoopError) as err:
        walk(client, "/feed", NextUrlPaginator("paging.next"))
    assert "/feed" in str(err.value) and "EAAB-secret" not in str(err.value)
