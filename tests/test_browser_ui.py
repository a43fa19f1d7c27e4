"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright; never a downloaded browser).

One browser per module, a fresh context (cookies) per test, few page loads.
Runs on SQLite only: the UI's SQL is covered on every backend by
``tests/test_web_ui.py``; here the browser is what is under test.

The last test takes screenshots of the demo data (``hub.demo.mode.feed``)
into ``build/screenshots/`` (untracked), or into the folder named by
``HUB_SCREENSHOTS``: ``make screenshots`` sets it to ``docs/screenshots`` to
refresh the README's pictures.  ``make test`` never rewrites tracked files.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select

from hub.engine.accounts import create_token, create_user
from hub.storage import models as m

TZ = ZoneInfo("Europe/Amsterdam")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / os.environ.get("HUB_SCREENSHOTS", "build/screenshots")
PASSWORD = "browser-pass-1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} missing: apt-get install chromium chromium-driver (make browser)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture
def database_url(tmp_path, sqlite_template) -> str:
    """SQLite only (overrides the per-backend fixture for this module)."""
    path = tmp_path / "hub.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Site:
    """A hub on a live server with an API token and users."""

    def __init__(self, app, url: str):
        self.app = app
        self.hub = app.extensions["hub"]
        self.url = url
        with self.hub.db.session() as s:
            self.token = create_token(s, "browser-tests")

    def user(self, name: str, role: str) -> str:
        with self.hub.db.session() as s:
            create_user(s, name, PASSWORD, role)
        return name

    def post(self, **body) -> dict:
        body.setdefault("occurred_at", self.hub.clock.utcnow().isoformat())  # the hub's clock, not the wall's
        resp = requests.post(f"{self.url}/api/v1/feedback", json=body, timeout=10,
                             headers={"Authorization": f"Bearer {self.token}"})
        assert resp.status_code == 201, resp.text
        return resp.json()


@pytest.fixture
def site(make_app, live_server) -> Site:
    # The demo's X posts come from the source "x_webcare": its reply link, so the case page shows the panel.
    app = make_app(web={"poll_seconds": 0.4},
                   webcare={"reply_links": {"x_webcare": "https://x.com/intent/post?in_reply_to={external_id}&text={text}"}})
    return Site(app, live_server(app))


def sign_in(browser, site: Site, username: str, viewport=None):
    context = browser.new_context(viewport=viewport or {"width": 1440, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(f"{site.url}/")
    assert page.url.startswith(f"{site.url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#inbox")
    return context, page, errors


def seed(site: Site) -> dict[str, dict]:
    survey = site.post(external_id="s-1", channel="survey", nps=2, language="nl",
                       text="Al drie weken storing, ik ga opzeggen.",
                       customer={"email": "anna@example.nl", "name": "Anna de Vries"})
    social = site.post(source="x_account", external_id="t-1", channel="social", language="nl", reach=25000,
                       text="@acme weer storing! Ik zeg op als dit zo doorgaat.", url="https://x.com/anna_dv/status/1",
                       customer={"email": "anna@example.nl", "x_handle": "anna_dv", "name": "Anna de Vries"})
    happy = site.post(external_id="s-2", channel="survey", nps=9, language="en", text="Quick and friendly.",
                      customer={"email": "bob@example.com", "name": "Bob Brown"})
    return {"survey": survey, "social": social, "happy": happy}


def rows(page) -> list[dict]:
    return page.eval_on_selector_all("#rows tr.item", """els => els.map(e => ({
        id: +e.dataset.id, risk: +e.dataset.risk, channel: e.dataset.channel, fresh: e.classList.contains('is-new')}))""")


def test_agent_works_the_inbox_and_a_case(browser, site):
    items = seed(site)
    site.user("alice", "agent")
    context, page, errors = sign_in(browser, site, "alice")
    # The to-do list has the one case of both channels; All feedback lists the items.
    assert page.eval_on_selector_all("#rows tr.case-row", "els => els.map(e => +e.dataset.items)") == [2]
    page.click('#views a[data-view="feedback"]')
    page.wait_for_url("**/?view=feedback")

    # One list, both channels, worst first.
    listed = rows(page)
    assert {"survey", "social"} <= {r["channel"] for r in listed}
    assert [r["risk"] for r in listed] == sorted((r["risk"] for r in listed), reverse=True)
    assert listed[0]["id"] == items["survey"]["id"] and listed[1]["id"] == items["social"]["id"]

    # The channel filter narrows the list, and the view is a shareable URL.
    page.select_option("select[name=channel]", "social")
    page.wait_for_url("**/?view=feedback&channel=social")
    assert [r["id"] for r in rows(page)] == [items["social"]["id"]]
    page.click("text=Reset")
    page.wait_for_url(f"{site.url}/?view=feedback")

    # A new item posted through the API appears without a reload, highlighted.
    page.evaluate("window.__sameDocument = true")
    new = site.post(source="x_account", external_id="t-2", channel="social", reach=120000, language="en",
                    text="@acme charged twice again. Cancelling if this isn't fixed today.",
                    customer={"x_handle": "carl_k"})
    page.wait_for_selector(f'#rows tr.item.is-new[data-id="{new["id"]}"]')
    assert page.evaluate("window.__sameDocument") is True
    assert page.is_visible("#live")
    fresh = rows(page)
    assert [r["risk"] for r in fresh] == sorted((r["risk"] for r in fresh), reverse=True)

    # The case page tells the customer's story across both channels.
    page.click(f'#rows tr[data-id="{items["survey"]["id"]}"] .c-text a')
    page.wait_for_url(f"**/cases/{items['survey']['case_id']}")
    assert page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.channel)") == ["survey", "social"]
    assert page.inner_text("#case-status").strip() == "new"

    # Mark contacted: the status and the audit log change.
    page.click("#mark-contacted")
    page.wait_for_selector('#audit li[data-action="case.contacted"]')
    assert page.inner_text("#case-status").strip() == "contacted"
    assert "alice" in page.inner_text('#audit li[data-action="case.contacted"] .actor')
    with site.hub.db.Session() as s:
        assert s.get(m.Case, items["survey"]["case_id"]).status == "contacted"

    # A form whose CSRF token was taken out is refused.
    page.fill("textarea[name=text]", "forged note")
    page.evaluate("document.querySelector('form[action$=\"/note\"] input[name=csrf_token]').remove()")
    with page.expect_navigation() as nav:
        page.click("#add-note")
    assert nav.value.status == 400
    assert "expired or was not sent from this site" in page.inner_text("#error-message")
    with site.hub.db.Session() as s:
        notes = s.scalar(select(func.count()).select_from(m.AuditEvent).where(m.AuditEvent.action == "case.note"))
    assert notes == 0
    assert errors == []
    context.close()


def test_viewer_cannot_act(browser, site):
    items = seed(site)
    site.user("vera", "viewer")
    context, page, errors = sign_in(browser, site, "vera")
    case_id = items["survey"]["case_id"]
    page.goto(f"{site.url}/cases/{case_id}")
    assert page.is_visible("#view-only")
    assert page.locator("#actions, #mark-contacted, #assign-me").count() == 0
    # Even with a valid token, the server refuses the viewer's action.
    token = page.get_attribute("form[action='/logout'] input[name=csrf_token]", "value")
    resp = page.request.post(f"{site.url}/cases/{case_id}/contacted", form={"csrf_token": token})
    assert resp.status == 403
    with site.hub.db.Session() as s:
        assert s.get(m.Case, case_id).status == "new"
    assert errors == []
    context.close()


def test_script_in_a_post_is_shown_as_text_and_runs_nothing(browser, site):
    evil = '<script>window.pwned = 1; alert("x")</script><img src=x onerror="window.pwned = 2; alert(2)">'
    first = site.post(source="x_account", external_id="evil-1", channel="social", reach=60000,
                      text=evil + " ik zeg op", customer={"x_handle": "mallory", "name": "<b>Mallory</b>"})
    site.user("alice", "agent")
    context, page, errors = sign_in(browser, site, "alice")
    page.goto(f"{site.url}/?view=feedback")
    # Also through the live-update path, which inserts server-rendered rows.
    second = site.post(source="x_account", external_id="evil-2", channel="social", reach=60000,
                       text=evil + " opzeggen", customer={"x_handle": "mallory2"})
    page.wait_for_selector(f'#rows tr[data-id="{second["id"]}"]')
    for item_id in (first["id"], second["id"]):
        assert "<script>window.pwned" in page.inner_text(f'#rows tr[data-id="{item_id}"] .c-text')
    assert page.locator("#rows img, #rows script").count() == 0
    assert "<b>Mallory</b>" in page.inner_text(f'#rows tr[data-id="{first["id"]}"] .c-customer')
    page.goto(f"{site.url}/cases/{first['case_id']}")
    assert "<script>window.pwned" in page.inner_text("#timeline")
    assert page.locator("#timeline img, #timeline script").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert errors == []
    context.close()


def simulate_team_work(hub, rng: random.Random) -> None:
    """Give the demo cases a history (opened when the feedback came, some
    contacted, resolved and re-surveyed) so the dashboard has a story."""
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        firsts = dict(s.execute(select(m.FeedbackItem.case_id, func.min(m.FeedbackItem.occurred_at))
                                .where(m.FeedbackItem.case_id.is_not(None)).group_by(m.FeedbackItem.case_id)).all())
        for case in s.scalars(select(m.Case).order_by(m.Case.id)):
            opened = firsts[case.id]
            age = (now - opened).total_seconds() / 3600
            case.opened_at = opened
            case.sla_due_at = opened + dt.timedelta(hours={"urgent": 4, "high": 24}.get(case.priority, 48))
            if age > 6 and rng.random() < 0.75:
                case.contacted_at = opened + dt.timedelta(hours=min(age - 1, rng.lognormvariate(2.3, 0.9)))
                case.status, case.owner = "contacted", rng.choice(["demo", "sanne", "ahmed"])
                if age > 48 and rng.random() < 0.8:
                    case.status, case.closed_at = "resolved", case.contacted_at + dt.timedelta(hours=2)
                    case.outcome = rng.choice(["callback_done", "solved_remotely", "compensated", "explained"])
                    case.root_cause = rng.choice(["network outage", "billing error", "missed appointment"])
                    case.resolved = rng.random() < 0.8
                    if rng.random() < 0.6:
                        case.resurvey_nps = rng.choice([6, 7, 8, 8, 9, 9, 10])
            elif rng.random() < 0.3:
                case.owner, case.status = rng.choice(["demo", "sanne"]), "assigned"
        # Callbacks as the planner spreads them over business hours.
        hours = [9, 10, 11, 11, 12, 13, 14, 14, 15, 15, 16, 16]
        for f in s.scalars(select(m.Followup)):
            case = s.get(m.Case, f.case_id)
            day = (case.opened_at + dt.timedelta(hours=rng.choice([4, 20, 28]))).astimezone(TZ)
            f.due_at = day.replace(hour=rng.choice(hours), minute=rng.choice([0, 15, 30, 45])).astimezone(dt.UTC)
            f.created_at = case.opened_at
            if case.contacted_at:
                f.status, f.completed_at = "done", case.contacted_at
        for name in ("sanne", "ahmed"):
            create_user(s, name, PASSWORD, "agent")


def cross_channel_story(site: Site) -> int:
    """The worst detractor also complains on X, and the social connector knew
    their address: one customer, one case, two channels."""
    with site.hub.db.Session() as s:
        case = s.scalars(select(m.Case).where(m.Case.status == "new").order_by(m.Case.risk.desc())).first()
        email = s.scalars(select(m.Identity.value).where(m.Identity.customer_id == case.customer_id,
                                                         m.Identity.kind == "email")).first()
    site.post(source="x_webcare", external_id="x-story-1", channel="social", language="nl", reach=18400,
              url="https://x.com/i/web/status/1861234567890123456",
              text="@acme nog steeds geen reactie op mijn klacht. Ik zeg op en ga naar de Geschillencommissie.",
              customer={"email": email, "x_handle": "jsmith_nl"})
    return case.id


def test_screenshots_for_the_readme(browser, site):
    from hub.demo.mode import feed

    assert feed(site.hub, random.Random(7), 300, days_back=21) == 300
    simulate_team_work(site.hub, random.Random(7))
    case_id = cross_channel_story(site)
    with site.hub.db.session() as s:  # what admins keep for the reply panel
        now = site.hub.clock.utcnow()
        s.add_all([m.CannedAnswer(language="nl", title="Excuses storing", updated_at=now, updated_by="demo",
                                  text="Wat vervelend! We kijken er direct naar. Stuur je ons een DM met je postcode?"),
                   m.CannedAnswer(language="en", title="Sorry, outage", updated_at=now, updated_by="demo",
                                  text="So sorry about this! We're on it. Could you DM us your postcode?")])
    site.user("demo", "admin")
    context, page, errors = sign_in(browser, site, "demo", viewport={"width": 1440, "height": 1100})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "inbox.png"))
    page.goto(f"{site.url}/cases/{case_id}")
    assert page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.channel)")[-1] == "social"
    page.screenshot(path=str(SCREENSHOTS / "case.png"), full_page=True)
    page.goto(f"{site.url}/dashboard")
    # The five figures, the top themes among detractors, the planner's load (and what later issues add).
    assert page.locator("svg.chart").count() >= 7
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
    for name in ("inbox", "case", "dashboard"):
        data = (SCREENSHOTS / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert errors == []
    context.close()
