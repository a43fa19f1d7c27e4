"""The web UI through Flask's test client: login and roles, CSRF, the inbox
(merge, order, filters, live updates), case actions and their audit trail,
dashboard, admin pages, language and escaping.  Runs on every backend."""

from __future__ import annotations

import datetime as dt
import html
import re

import flask
import pytest
from sqlalchemy import func, select

from hub.engine.accounts import create_user
from hub.engine.dispatch import dispatch
from hub.sdk import CustomerRef, FeedbackIn, SourceConnector, Stream, hookimpl
from hub.storage import models as m

PASSWORD = "correct-horse-1"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


# -- helpers -----------------------------------------------------------------------
def add_user(hub, username: str, role: str, locale: str | None = None) -> None:
    with hub.db.session() as s:
        user = create_user(s, username, PASSWORD, role)
        user.locale = locale


def token_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "page has no CSRF token"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD):
    token = token_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def post(client, url: str, data: dict | None = None, token_from: str = "/"):
    token = token_of(client.get(token_from).get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token})


def feedback(client, auth, **body):
    body.setdefault("occurred_at", NOW.isoformat())
    resp = client.post("/api/v1/feedback", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def seed(client, auth) -> dict[str, dict]:
    """A survey detractor and a social complaint by the same customer, and a
    happy customer."""
    survey = feedback(client, auth, external_id="s-1", channel="survey", nps=2, language="nl",
                      text="Al drie weken storing, ik ga opzeggen.",
                      customer={"email": "anna@example.nl", "name": "Anna de Vries"})
    social = feedback(client, auth, source="x_account", external_id="t-1", channel="social", language="nl",
                      reach=25000, url="https://x.com/anna_dv/status/1",
                      text="@acme weer storing! Ik zeg op als dit zo doorgaat.",
                      customer={"email": "anna@example.nl", "x_handle": "anna_dv", "name": "Anna de Vries"})
    happy = feedback(client, auth, external_id="s-2", channel="survey", nps=10, language="en",
                     text="Great service, thanks!", customer={"email": "bob@example.com", "name": "Bob Brown"})
    return {"survey": survey, "social": social, "happy": happy}


def row_ids(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr class="item[^"]*" data-id="(\d+)"', page)]


def row_risks(page: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-risk="(\d+)"', page)]


@pytest.fixture
def agent(hub, client):
    add_user(hub, "alice", "agent")
    assert login(client, "alice").status_code == 302
    return client


# -- login, roles, CSRF --------------------------------------------------------------
def test_pages_need_login_and_logout_ends_the_session(hub, client):
    add_user(hub, "alice", "agent")
    resp = client.get("/dashboard")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=/dashboard")
    assert client.get("/inbox/updates.json?after=0").status_code == 401

    bad = login(client, "alice", "wrong-password")
    assert bad.status_code == 401 and "Wrong username or password" in bad.get_data(as_text=True)
    assert client.get("/").status_code == 302

    token = token_of(client.get("/login").get_data(as_text=True))
    ok = client.post("/login?next=/dashboard", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert ok.status_code == 302 and ok.headers["Location"] == "/dashboard"
    assert client.get("/").status_code == 200

    assert post(client, "/logout").status_code == 302
    assert client.get("/").status_code == 302
    with hub.db.Session() as s:
        actions = list(s.scalars(select(m.AuditEvent.action).order_by(m.AuditEvent.id)))
    assert actions == ["user.login_failed", "user.login", "user.logout"]


def test_login_next_cannot_redirect_off_site(hub, client):
    add_user(hub, "alice", "agent")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        token = token_of(client.get("/login").get_data(as_text=True))
        resp = client.post(f"/login?next={target}", data={"username": "alice", "password": PASSWORD,
                                                           "csrf_token": token})
        assert resp.headers["Location"] == "/", target
        post(client, "/logout")


def test_deactivated_user_is_signed_out(hub, agent):
    assert agent.get("/").status_code == 200
    with hub.db.session() as s:
        s.scalars(select(m.User).where(m.User.username == "alice")).one().active = False
    assert agent.get("/").status_code == 302


def test_post_without_csrf_token_is_refused(hub, agent, client, auth):
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    resp = agent.post(f"/cases/{case_id}/note", data={"text": "forged"})
    assert resp.status_code == 400
    assert "expired or was not sent from this site" in resp.get_data(as_text=True)
    resp = agent.post(f"/cases/{case_id}/note", data={"text": "forged", "csrf_token": "not-the-token"})
    assert resp.status_code == 400
    # Login is protected too (no login CSRF).
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 400
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.AuditEvent).where(m.AuditEvent.action == "case.note")) == 0
    assert post(agent, f"/cases/{case_id}/note", {"text": "real"}).status_code == 302


def test_api_keeps_token_auth_without_csrf(client, auth):
    # The API is not CSRF-checked (bearer tokens), and cookie login does not open it.
    feedback(client, auth, external_id="api-1", channel="survey", nps=9, text="ok")
    assert client.get("/api/v1/feedback").status_code == 401


def test_viewer_reads_but_cannot_act(hub, client, auth):
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    add_user(hub, "vera", "viewer")
    login(client, "vera")
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'id="view-only"' in page and 'id="mark-contacted"' not in page
    for action, data in (("assign", {"owner": "me"}), ("note", {"text": "x"}), ("contacted", {}),
                         ("resolve", {"outcome": "explained", "root_cause": "x", "resolved": "yes"}),
                         ("plan", {"due": "2099-01-01T10:00"})):
        assert post(client, f"/cases/{case_id}/{action}", data).status_code == 403, action
    assert client.get("/admin/").status_code == 403
    assert post(client, "/admin/tokens", {"name": "sneaky"}).status_code == 403
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        assert (case.status, case.owner) == ("new", None)
        assert s.scalar(select(func.count()).select_from(m.ApiToken).where(m.ApiToken.name == "sneaky")) == 0


def test_agent_cannot_open_admin(hub, agent):
    assert agent.get("/admin/").status_code == 403
    assert agent.get("/admin/users").status_code == 403
    assert 'href="/admin/"' not in agent.get("/").get_data(as_text=True)


# -- inbox -------------------------------------------------------------------------
def test_inbox_merges_channels_worst_first(agent, client, auth):
    items = seed(client, auth)
    page = agent.get("/?view=feedback").get_data(as_text=True)
    ids = row_ids(page)
    assert {items["survey"]["id"], items["social"]["id"], items["happy"]["id"]} <= set(ids)
    risks = row_risks(page)
    assert risks == sorted(risks, reverse=True)
    assert ids.index(items["survey"]["id"]) < ids.index(items["social"]["id"]) < ids.index(items["happy"]["id"])
    assert items["survey"]["risk"] > items["social"]["risk"] > items["happy"]["risk"]
    # Each row says why: the signals behind the risk.
    assert "churn words" in page and "public reach" in page
    assert "@anna_dv" in page and "x_account" in page


def test_inbox_filters_narrow_and_live_in_the_url(hub, agent, client, auth):
    items = seed(client, auth)
    social = row_ids(agent.get("/?view=feedback&channel=social").get_data(as_text=True))
    assert social == [items["social"]["id"]]
    assert row_ids(agent.get("/?view=feedback&source=x_account").get_data(as_text=True)) == [items["social"]["id"]]
    assert row_ids(agent.get("/?view=feedback&category=promoter").get_data(as_text=True)) == [items["happy"]["id"]]
    assert row_ids(agent.get("/?view=feedback&language=en").get_data(as_text=True)) == [items["happy"]["id"]]
    assert row_ids(agent.get("/?view=feedback&q=zeg+op").get_data(as_text=True)) == [items["social"]["id"]]
    assert row_ids(agent.get("/?view=feedback&status=none").get_data(as_text=True)) == [items["happy"]["id"]]
    high = row_ids(agent.get("/?view=feedback&risk=high").get_data(as_text=True))
    assert items["happy"]["id"] not in high
    assert row_ids(agent.get("/?view=feedback&owner=me").get_data(as_text=True)) == []
    case_id = items["survey"]["case_id"]
    post(agent, f"/cases/{case_id}/assign", {"owner": "me"})
    mine = row_ids(agent.get("/?view=feedback&owner=me").get_data(as_text=True))
    assert sorted(mine) == sorted([items["survey"]["id"], items["social"]["id"]])
    # A resolved case leaves the default view but stays findable.
    post(agent, f"/cases/{case_id}/resolve", {"outcome": "explained", "root_cause": "outage", "resolved": "yes"})
    assert row_ids(agent.get("/?view=feedback").get_data(as_text=True)) == [items["happy"]["id"]]
    assert len(row_ids(agent.get("/?view=feedback&status=resolved").get_data(as_text=True))) == 2
    # Unknown values are ignored, not errors: old shared links still open.
    assert agent.get("/?view=feedback&channel=fax&risk=extreme&page=x").status_code == 200


def test_updates_endpoint_sends_new_rows_that_pass_the_filters(agent, client, auth):
    seed(client, auth)
    page = agent.get("/?view=feedback&channel=social").get_data(as_text=True)
    latest = int(re.search(r'data-after="(\d+)"', page).group(1))
    assert agent.get(f"/inbox/updates.json?after={latest}&view=feedback&channel=social").get_json()["rows"] == []
    new_survey = feedback(client, auth, external_id="s-9", channel="survey", nps=1, text="Slecht")
    new_post = feedback(client, auth, source="x_account", external_id="t-9", channel="social", text="@acme help",
                        customer={"x_handle": "carl"})
    body = agent.get(f"/inbox/updates.json?after={latest}&view=feedback&channel=social").get_json()
    assert [r["id"] for r in body["rows"]] == [new_post["id"]]
    assert body["latest"] == new_post["id"]
    assert 'class="item risk-row-' in body["rows"][0]["html"] and "is-new" in body["rows"][0]["html"]
    everything = agent.get(f"/inbox/updates.json?after={latest}&view=feedback").get_json()
    assert [r["id"] for r in everything["rows"]] == [new_survey["id"], new_post["id"]]
    assert agent.get("/inbox/updates.json?after=abc").status_code == 400


def test_inbox_pages(hub, agent, client, auth):
    for i in range(53):
        feedback(client, auth, external_id=f"p-{i}", channel="survey", nps=9, text=f"fine {i}",
                 customer={"email": f"p{i}@example.nl"})
    first = agent.get("/?view=feedback").get_data(as_text=True)
    second = agent.get("/?view=feedback&page=2").get_data(as_text=True)
    assert len(row_ids(first)) == 50 and len(row_ids(second)) == 3
    assert not set(row_ids(first)) & set(row_ids(second))
    assert "53 items" in first


# -- case page and actions ---------------------------------------------------------------
def test_case_page_shows_timeline_identities_risk_and_followup(agent, client, auth):
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    assert items["social"]["case_id"] == case_id  # one customer, one open case
    page = agent.get(f"/cases/{case_id}").get_data(as_text=True)
    timeline = page[page.index('id="timeline"'):page.index('id="audit')]
    assert 'data-channel="survey"' in timeline and 'data-channel="social"' in timeline
    assert timeline.index("Al drie weken storing") < timeline.index("@acme weer storing")  # oldest first
    assert 'href="https://x.com/anna_dv/status/1"' in timeline
    assert "anna_dv" in page and "anna@example.nl" in page and "Evidence" in page and "survey api/s-1" in page
    signals = page[page.index('id="signals"'):]
    nps = next(r["weight"] for r in items["survey"]["risk_reasons"] if r["signal"] == "nps")
    shown = f"+{nps:.0f}" if nps == round(nps) else f"+{nps:.1f}"
    assert nps > 0 and "low NPS" in signals and shown in signals and "churn words" in signals
    assert "Callback due" in page and ">local<" in page
    assert agent.get("/cases/999999").status_code == 404


def _audit(hub, case_id: int) -> list[tuple[str, str, dict]]:
    with hub.db.Session() as s:
        return [(e.actor, e.action, e.detail) for e in s.scalars(
            select(m.AuditEvent).where(m.AuditEvent.case_id == case_id).order_by(m.AuditEvent.id))]


def test_case_actions_change_the_case_and_write_the_audit_log(hub, agent, client, auth):
    add_user(hub, "bert", "agent")
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    url = f"/cases/{case_id}"

    assert post(agent, f"{url}/assign", {"owner": "me"}).status_code == 302
    assert post(agent, f"{url}/assign", {"owner": "bert"}).status_code == 302
    assert post(agent, f"{url}/assign", {"owner": "nobody"}).status_code == 302  # refused with a message
    post(agent, f"{url}/note", {"text": "Called, voicemail."})
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Amsterdam")).replace(hour=11, minute=30, second=0, microsecond=0)
    post(agent, f"{url}/plan", {"due": due.strftime("%Y-%m-%dT%H:%M")})
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        (followup,) = s.scalars(select(m.Followup).where(m.Followup.case_id == case_id)).all()
        assert (case.owner, case.status) == ("bert", "scheduled")
        assert followup.due_at == due.astimezone(dt.UTC) and followup.status == "pending"

    post(agent, f"{url}/contacted")
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        assert case.status == "contacted" and case.contacted_at is not None
        assert s.get(m.Followup, followup.id).status == "done"
    page = agent.get(url).get_data(as_text=True)
    assert "Marked as contacted." in page
    assert 'data-action="case.contacted"' in page and 'data-action="followup.completed"' in page

    post(agent, f"{url}/resolve", {"outcome": "compensated", "root_cause": "network outage", "resolved": "no"})
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        assert (case.status, case.outcome, case.root_cause, case.resolved) == (
            "resolved", "compensated", "network outage", False)
        assert case.closed_at is not None
    actions = [(actor, action) for actor, action, _ in _audit(hub, case_id)]
    assert actions == [("user:alice", "case.assigned"), ("user:alice", "case.assigned"), ("user:alice", "case.note"),
                       ("user:alice", "case.callback_planned"), ("user:alice", "followup.completed"),
                       ("user:alice", "case.contacted"), ("user:alice", "case.resolved")]
    # A resolved case takes no more status changes.
    post(agent, f"{url}/contacted")
    assert len(_audit(hub, case_id)) == 7


def test_mark_contacted_without_followup(hub, agent, client, auth):
    loud = feedback(client, auth, source="x_account", external_id="t-5", channel="social", reach=200000,
                    text="Ik zeg op, waardeloos! Mijn advocaat belt jullie.", customer={"x_handle": "loud"})
    case_id = loud["case_id"]
    with hub.db.session() as s:
        for f in s.scalars(select(m.Followup).where(m.Followup.case_id == case_id)):
            s.delete(f)
    post(agent, f"/cases/{case_id}/contacted")
    with hub.db.Session() as s:
        assert s.get(m.Case, case_id).status == "contacted"
    assert [a for _, a, _ in _audit(hub, case_id)] == ["case.contacted"]


def test_replanning_a_callback_already_in_the_crm_moves_its_task(hub, agent, client, auth):
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    report = dispatch(hub, ignore_schedule=True)
    assert report.sent == 1
    due = hub.clock.utcnow().replace(second=0, microsecond=0) + dt.timedelta(days=3)
    local = due.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Amsterdam"))
    post(agent, f"/cases/{case_id}/plan", {"due": local.strftime("%Y-%m-%dT%H:%M")})
    with hub.db.Session() as s:
        rows = s.scalars(select(m.Followup).where(m.Followup.case_id == case_id).order_by(m.Followup.id)).all()
    # One follow-up, still the CRM's task, due at the new time; the dispatcher updates the task.
    assert [(r.status, r.due_at, r.sync_pending) for r in rows] == [("sent", due, True)]
    (_, _, detail), = [e for e in _audit(hub, case_id) if e[1] == "case.callback_planned"]
    assert detail["external_id"] == rows[0].external_id and detail["moved"] is True
    # A time in the past is refused.
    post(agent, f"/cases/{case_id}/plan", {"due": "2001-01-01T10:00"})
    assert "Pick a time in the future." in agent.get(f"/cases/{case_id}").get_data(as_text=True)


# -- escaping and headers ---------------------------------------------------------------
EVIL = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> "quoted" & more'


def test_customer_text_is_escaped_everywhere(hub, agent, client, auth):
    item = feedback(client, auth, source="x_account", external_id="xss", channel="social", reach=50000,
                    text=EVIL + " ik zeg op", url="javascript:alert(1)",
                    customer={"x_handle": "<b>h4x</b>", "name": "<i>Mallory</i>"})
    pages = [agent.get("/").get_data(as_text=True), agent.get("/?view=feedback").get_data(as_text=True),
             agent.get(f"/cases/{item['case_id']}").get_data(as_text=True),
             agent.get("/inbox/updates.json?after=0&view=feedback").get_json()["rows"][0]["html"]]
    for page in pages:
        assert "<script>window" not in page and "<img src=x" not in page and "<i>Mallory" not in page
        assert html.escape("<script>window.pwned=1</script>", quote=False) in page
        assert "javascript:" not in page
    post(agent, f"/cases/{item['case_id']}/note", {"text": "<script>alert('note')</script>"})
    page = agent.get(f"/cases/{item['case_id']}").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;alert(" in page


def test_pages_carry_security_headers_and_no_inline_code(hub, client, auth):
    items = seed(client, auth)
    add_user(hub, "root", "admin")
    login(client, "root")
    for url in ("/", f"/cases/{items['survey']['case_id']}", "/dashboard", "/admin/", "/admin/users",
                "/admin/tokens", "/login"):
        resp = client.get(url)
        assert resp.status_code in (200, 302), url
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        page = resp.get_data(as_text=True)
        # The CSP forbids inline code and styles: the pages must not need them.
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), url
        assert not re.search(r"\sstyle=", page), url
        assert not re.search(r"\son[a-z]+=", page), url


# -- dashboard ------------------------------------------------------------------------
def test_dashboard_shows_the_loop_figures(hub, agent, client, auth):
    items = seed(client, auth)
    case_id = items["survey"]["case_id"]
    post(agent, f"/cases/{case_id}/contacted")
    post(agent, f"/cases/{case_id}/resolve", {"outcome": "explained", "root_cause": "outage", "resolved": "yes"})
    with hub.db.session() as s:
        s.get(m.Case, case_id).resurvey_nps = 8
    page = agent.get("/dashboard?days=7").get_data(as_text=True)
    # NPS, SLA, re-survey, hours, the planner's load, first contact, themes
    assert page.count('<svg class="chart"') == 7
    kpis = dict(re.findall(r'<div class="kpi-label">([^<]+)</div><div class="kpi-value">([^<]+)</div>', page))
    # Two NPS answers in the window: a 2 (detractor) and a 10 (promoter) -> NPS 0, 50% detractors.
    assert kpis["NPS"] == "+0" and kpis["Detractors"] == "50%"
    assert kpis["Open cases"] == "0" and kpis["Closed with a re-survey"] == "100%"
    assert kpis["Median time to first contact"] != "-"
    assert agent.get("/dashboard?days=13").status_code == 200  # unknown window: default


# -- admin ---------------------------------------------------------------------------
class _Records(Stream):
    path = "/records"
    cursor_field = "id"


class _TestSource(SourceConnector):
    plugin_name = "test_source"
    default_base_url = "http://127.0.0.1:9"
    rate_limit = (30, 60.0)
    description = "records from a test server"

    def streams(self):
        return [_Records(self)]

    def normalize(self, raw):
        rec = raw.payload
        return [FeedbackIn(external_id=str(rec["id"]), channel="social", occurred_at=NOW, text=rec["text"],
                           customer=CustomerRef(handles=(("x_handle", rec["who"]),)))]

    def health(self):
        return {"account": "acme-test"}


class _TestPlugin:
    @hookimpl
    def hub_register_connectors(self):
        return [_TestSource]


@pytest.fixture
def vendor(live_server):
    app = flask.Flask("vendor")

    @app.get("/ok/records")
    def records():
        return flask.jsonify([{"id": "1", "text": "@acme storing", "who": "dora"},
                              {"id": "2", "text": "@acme thanks", "who": "erik"}])

    return live_server(app)


def test_admin_shows_connector_health_and_pulls_now(make_app, vendor):
    app = make_app(plugins=[_TestPlugin()], sources={
        "feed": {"plugin": "test_source", "base_url": f"{vendor}/ok"},
        "broken": {"plugin": "test_source", "base_url": f"{vendor}/missing"},
    })
    hub = app.extensions["hub"]
    add_user(hub, "root", "admin")
    client = app.test_client()
    login(client, "root")
    page = client.get("/admin/").get_data(as_text=True)
    assert 'data-source="feed"' in page and "not run yet" in page and "At most 30 requests every 60 seconds." in page
    assert "{'" not in html.unescape(page)  # health facts as words, never a Python dict
    assert "config/default.toml" in page  # the configuration files in use are named
    assert "account: acme-test" in page and "test_source" in page and "records from a test server" in page

    assert post(client, "/admin/sources/feed/pull", token_from="/admin/").status_code == 302
    assert post(client, "/admin/sources/broken/pull", token_from="/admin/").status_code == 302
    assert post(client, "/admin/sources/nope/pull", token_from="/admin/").status_code == 404
    page = client.get("/admin/").get_data(as_text=True)
    broken = page[page.index('data-source="broken"'):page.index('data-source="feed"')]  # sorted by name
    feed = page[page.index('data-source="feed"'):page.index('id="sinks"')]
    assert "healthy" in feed and ">2<" in feed and "left" in feed
    assert "error" in broken and "404" in broken
    assert "check the instance&#39;s settings" in broken  # the error comes with a hint
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.FeedbackItem).where(m.FeedbackItem.source == "feed")) == 2
        pulls = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "source.pull")).all()
        assert [(p.actor, p.detail["instance"]) for p in pulls] == [("user:root", "feed"), ("user:root", "broken")]


def test_admin_manages_tokens(hub, client):
    add_user(hub, "root", "admin")
    login(client, "root")
    resp = post(client, "/admin/tokens", {"name": "crm-export"}, token_from="/admin/tokens")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    value = re.search(r'<code class="token">([^<]+)</code>', resp.get_data(as_text=True)).group(1)
    api = {"Authorization": f"Bearer {value}"}
    assert client.get("/api/v1/feedback", headers=api).status_code == 200
    page = client.get("/admin/tokens").get_data(as_text=True)
    assert value not in page and value[:10] in page  # shown once, then only the prefix
    with hub.db.Session() as s:
        token_id = s.scalars(select(m.ApiToken.id).where(m.ApiToken.name == "crm-export")).one()
    post(client, f"/admin/tokens/{token_id}/revoke", token_from="/admin/tokens")
    assert client.get("/api/v1/feedback", headers=api).status_code == 401
    assert post(client, "/admin/tokens", {"name": "bad name!"}, token_from="/admin/tokens").status_code == 400
    with hub.db.Session() as s:
        actions = list(s.scalars(select(m.AuditEvent.action).where(m.AuditEvent.action.like("token.%"))))
    assert actions == ["token.created", "token.revoked"]


def test_admin_manages_users(hub, client):
    add_user(hub, "root", "admin")
    login(client, "root")
    resp = post(client, "/admin/users", {"username": "nina", "password": "nina-pass-123", "role": "viewer",
                                          "locale": "nl"}, token_from="/admin/users")
    assert resp.status_code == 302
    assert post(client, "/admin/users", {"username": "x", "password": "short", "role": "agent"},
                token_from="/admin/users").status_code == 400
    with hub.db.Session() as s:
        nina = s.scalars(select(m.User).where(m.User.username == "nina")).one()
        root = s.scalars(select(m.User).where(m.User.username == "root")).one()
    assert (nina.role, nina.locale) == ("viewer", "nl")
    post(client, f"/admin/users/{nina.id}", {"role": "agent", "active": "y"}, token_from="/admin/users")
    post(client, f"/admin/users/{root.id}", {"role": "viewer", "active": "y"}, token_from="/admin/users")
    with hub.db.Session() as s:
        assert s.get(m.User, nina.id).role == "agent"
        assert s.get(m.User, root.id).role == "admin"  # cannot demote yourself
    other = hub_client = client.application.test_client()
    assert login(hub_client, "nina", "nina-pass-123").status_code == 302
    assert "Inbox" in other.get("/").get_data(as_text=True)


# -- language -------------------------------------------------------------------------
def test_language_from_browser_then_from_the_user(hub, client):
    nl = client.get("/login", headers={"Accept-Language": "nl-NL,nl;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="nl">' in nl and "Inloggen" in nl
    en = client.get("/login", headers={"Accept-Language": "de-DE,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="en">' in en and "Sign in" in en
    add_user(hub, "henk", "admin", locale="nl")
    login(client, "henk")
    page = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Beheer" in page and "Afmelden" in page
    post(client, "/me/locale", {"locale": "en", "next": "/dashboard"})
    page = client.get("/", headers={"Accept-Language": "nl"}).get_data(as_text=True)
    assert "Sign out" in page and "Afmelden" not in page


def test_a_request_never_speaks_the_language_of_the_one_before_it(hub, client):
    """The locale is kept per request (hub.web.i18n, a context variable), and the
    test client runs every request in this one thread, as a gunicorn thread does:
    the Dutch user's pages, then anyone else's, then an English user's."""
    from hub.web.i18n import current_locale

    add_user(hub, "els", "agent", locale="nl")
    add_user(hub, "bob", "agent", locale="en")
    login(client, "els")
    assert "Afmelden" in client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert current_locale() == "en"  # outside any request: the default, not Els's
    other = client.application.test_client()
    page = other.get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Sign in" in page and "Inloggen" not in page
    login(other, "bob")
    page = other.get("/", headers={"Accept-Language": "nl"}).get_data(as_text=True)
    assert "Sign out" in page and "Afmelden" not in page
    assert "Afmelden" in client.get("/").get_data(as_text=True)
