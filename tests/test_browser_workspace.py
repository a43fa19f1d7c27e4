"""The workspace in Debian's Chromium (Playwright), at a laptop's 1366x768,
1440x900 and a phone's 390x844: no horizontal scrollbar on the inbox, a case,
the dashboard and the admin page; axe-core finds no serious or critical
accessibility violation there (WCAG 2.1 A/AA rules); the to-do view has one
row per case; "My callbacks today" lists only the agent's cases due today
(by the app's FakeClock); a write from an outdated case page is refused.

axe-core comes from npm (``make browser`` installs the version pinned in
``tests/browser/package-lock.json`` into ``build/axe``); without it the
accessibility checks are skipped and the rest still runs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.storage import models as m
from tests.conftest import TEST_NOW
from tests.test_browser_ui import (  # noqa: F401  (database_url: SQLite only, as there)
    CHROMIUM,
    ROOT,
    Site,
    database_url,
)
from tests.test_browser_ui import sign_in as _sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (make browser)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

AXE = ROOT / "build" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
VIEWPORTS = {"laptop": {"width": 1366, "height": 768}, "wide": {"width": 1440, "height": 900},
             "phone": {"width": 390, "height": 844}}
LONG_NAME = "Maximiliaan-Johannes-Bartholomeus-van-den-Hoogenband-tot-Oud-Zuilen-en-Westbroek" + "x" * 38  # 120
LONG_WORD = "https://example.nl/" + "a" * 160


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def site(make_app, live_server) -> Site:
    app = make_app(web={"poll_seconds": 0.4}, webcare={"presence_poll_seconds": 0.3,
                                                       "reply_links": {"x_account": "https://social.example/"
                                                                       "reply?to={external_id}&text={text}"}})
    return Site(app, live_server(app))


def stories(site: Site) -> dict[str, dict]:
    """Two channels of one customer with a very long name, a public post with
    an unbroken 160-character link, and others to fill the list."""
    first = site.post(external_id="w-1", channel="survey", nps=1, language="nl",
                      text="Al drie weken storing, ik ga opzeggen. " + LONG_WORD,
                      customer={"email": "long@example.nl", "name": LONG_NAME})
    second = site.post(source="x_account", external_id="1861234567890123456", channel="social", language="nl",
                       reach=25000, url="https://social.example/status/1861234567890123456",
                       text="@acme weer storing! " + "Onacceptabel" * 12,
                       customer={"email": "long@example.nl", "x_handle": "maximiliaan_vdh_" + "z" * 40})
    others = [site.post(external_id=f"w-o{i}", channel="survey", nps=i % 4, language="en",
                        text=f"Complaint number {i}: the engineer did not show up", customer={"email": f"o{i}@ex.nl"})
              for i in range(6)]
    site.post(external_id="w-happy", channel="survey", nps=10, language="en", text="Lovely",
              customer={"email": "happy@example.com"})
    return {"first": first, "second": second, "others": others}


def sign_in(browser, site, username, viewport=None):
    context, page, errors = _sign_in(browser, site, username, viewport=viewport)
    context.set_default_timeout(30_000)  # 2 cores shared by busy suites: generous, never slept
    return context, page, errors


def overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def axe_violations(page) -> list[dict]:
    page.evaluate(AXE.read_text())
    return page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 4).map(n => n.target.join(' '))}));
    }""")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_four_pages_fit_the_window_and_pass_axe(browser, site, viewport):
    made = stories(site)
    site.user("demo", "admin")
    context, page, errors = sign_in(browser, site, "demo", viewport=VIEWPORTS[viewport])
    case_id = made["first"]["case_id"]
    pages = {"inbox": "/", "case": f"/cases/{case_id}", "dashboard": "/dashboard", "admin": "/admin/"}
    found: dict[str, list] = {}
    for name, path in pages.items():
        page.goto(f"{site.url}{path}")
        page.wait_for_load_state("load")
        assert overflow(page) <= 0, f"{name} is {overflow(page)} px wider than the {viewport} window"
        if AXE.exists():
            found[name] = axe_violations(page)
    if viewport == "phone":
        # The header collapses behind a menu button; the rows are cards.
        page.goto(f"{site.url}/")
        assert not page.is_visible("#mainnav") and page.is_visible("#menu-toggle")
        page.click("#menu-toggle")
        assert page.is_visible("#mainnav") and page.get_attribute("#menu-toggle", "aria-expanded") == "true"
        assert page.evaluate("getComputedStyle(document.querySelector('#rows tr')).display") == "grid"
        assert page.is_visible(f'#rows tr[data-case="{case_id}"] .c-status')
        # Chart labels are drawn at a size a phone can read (the card scrolls, the page does not).
        page.goto(f"{site.url}/dashboard")
        sizes = page.eval_on_selector_all("svg.chart text", """els => els.map(e => [
            e.getBoundingClientRect().height, e.closest('section') && e.closest('section').id, e.textContent])""")
        small = [s for s in sizes if s[0] < 11]  # a text box of 11 px: letters of about 9 px and more
        assert sizes and not small, small[:10]
    else:
        page.goto(f"{site.url}/")
        # Every column, Status included, is inside the window.
        box = page.locator("#inbox thead th.c-status").bounding_box()
        assert box and box["x"] + box["width"] <= VIEWPORTS[viewport]["width"]
    assert errors == []
    context.close()
    if not AXE.exists():
        pytest.skip("axe-core not installed (make browser): page widths checked, accessibility not")
    assert found == {name: [] for name in pages}


def test_todo_has_one_row_per_case_and_my_callbacks_today_only_mine(browser, site):
    made = stories(site)
    hub = site.hub
    mine, theirs = made["others"][0]["case_id"], made["others"][1]["case_id"]
    later = made["others"][2]["case_id"]
    with hub.db.session() as s:
        for case_id, owner, due in ((mine, "alice", TEST_NOW + dt.timedelta(hours=3)),
                                    (theirs, "bob", TEST_NOW + dt.timedelta(hours=3)),
                                    (later, "alice", TEST_NOW + dt.timedelta(days=1))):
            s.get(m.Case, case_id).owner = owner
            for f in s.scalars(select(m.Followup).where(m.Followup.case_id == case_id)):
                f.due_at = due
        open_cases = set(s.scalars(select(m.Case.id).where(m.Case.status.in_(("new", "assigned", "scheduled")))))
    site.user("alice", "agent")
    site.user("bob", "agent")
    context, page, errors = sign_in(browser, site, "alice", viewport=VIEWPORTS["laptop"])
    listed = page.eval_on_selector_all("#rows tr.case-row", "els => els.map(e => +e.dataset.case)")
    assert sorted(listed) == sorted(open_cases) and len(listed) == len(set(listed))
    first = made["first"]["case_id"]
    assert page.get_attribute(f'#rows tr[data-case="{first}"]', "data-items") == "2"
    page.click('#views a[data-view="callbacks"]')
    page.wait_for_url("**/?view=callbacks")
    assert page.eval_on_selector_all("#rows tr.case-row", "els => els.map(e => +e.dataset.case)") == [mine]
    # Bulk: tick two cases of the to-do list and assign them to bob.
    page.click('#views a[data-view="todo"]')
    page.check(f'#rows tr[data-case="{theirs}"] input[name=case_id]')
    page.check(f'#rows tr[data-case="{later}"] input[name=case_id]')
    assert "2" in page.inner_text("#bulk-count")
    page.select_option("#bulk select[name=owner]", "bob")
    page.click("#bulk-assign")
    page.wait_for_selector(".flash-ok")
    with hub.db.Session() as s:
        assert {s.get(m.Case, theirs).owner, s.get(m.Case, later).owner} == {"bob"}
    assert errors == []
    context.close()


def test_a_stale_write_is_refused_and_the_page_says_the_case_changed(browser, site):
    made = stories(site)
    case_id = made["first"]["case_id"]
    site.user("alice", "agent")
    site.user("bob", "agent")
    alice_ctx, alice, alice_errors = sign_in(browser, site, "alice")
    bob_ctx, bob, bob_errors = sign_in(browser, site, "bob")
    alice.goto(f"{site.url}/cases/{case_id}")
    bob.goto(f"{site.url}/cases/{case_id}")
    # Each sees that the other has the case open.
    alice.wait_for_selector("#presence-others:not([hidden])")
    assert "bob" in alice.inner_text("#presence-others")
    bob.click("#assign-me")
    bob.wait_for_selector(".flash-ok")
    # Alice's open page learns of the change without a reload...
    alice.wait_for_selector("#presence-changed:not([hidden])")
    # ...and a write from it is refused.
    alice.click(".resolve summary")
    alice.fill("input[name=root_cause]", "storing")
    alice.click("#resolve")
    alice.wait_for_selector(".flash-error")
    assert "Not saved: bob changed this case since you opened it" in alice.inner_text(".flash-error")
    with site.hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        assert (case.status, case.owner, case.outcome) == ("assigned", "bob", None)
    # Reloaded, the same action goes through.
    alice.click(".resolve summary")
    alice.fill("input[name=root_cause]", "storing")
    alice.click("#resolve")
    alice.wait_for_selector(".flash-ok")
    with site.hub.db.Session() as s:
        assert s.get(m.Case, case_id).status == "resolved"
    assert alice_errors == [] and bob_errors == []
    alice_ctx.close()
    bob_ctx.close()


def test_reply_panel_fills_the_link_with_a_canned_answer(browser, site):
    made = stories(site)
    case_id = made["second"]["case_id"]
    with site.hub.db.session() as s:
        s.add(m.CannedAnswer(language="nl", title="Excuses", text="Sorry! Stuur ons een DM.",
                             updated_at=TEST_NOW, updated_by="demo"))
    site.user("alice", "agent")
    context, page, errors = sign_in(browser, site, "alice")
    page.goto(f"{site.url}/cases/{case_id}")
    page.click("#reply-panel button[data-canned]")
    assert page.input_value("#reply-text") == "Sorry! Stuur ons een DM."
    href = page.get_attribute("#reply-panel a[data-reply-template]", "href")
    assert href == "https://social.example/reply?to=1861234567890123456&text=Sorry!%20Stuur%20ons%20een%20DM."
    page.click("#mark-answered")
    page.wait_for_selector("#answered-publicly")
    assert errors == []
    context.close()


def test_keyboard_reaches_the_inbox_rows_and_the_skip_link(browser, site):
    stories(site)
    site.user("alice", "agent")
    context, page, errors = sign_in(browser, site, "alice")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    for _ in range(60):  # through the views, saved views, filters and a checkbox to the first case link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName === 'A' && !!document.activeElement.closest('#rows')"):
            break
    assert page.evaluate("!!document.activeElement.closest('#rows')")
    page.keyboard.press("Enter")
    page.wait_for_url("**/cases/*")
    assert errors == []
    context.close()
