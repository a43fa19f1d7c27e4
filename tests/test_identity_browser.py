"""The review queue and the customer page in a real headless Chromium: an agent
compares both timelines side by side, confirms, sees one timeline across channels
on the customer page and undoes the merge there.  Screenshots go where the
other browser tests put theirs."""

from __future__ import annotations

import pytest

from tests.test_browser_ui import CHROMIUM, SCREENSHOTS, browser, database_url, sign_in, site  # noqa: F401

pytestmark = [pytest.mark.browser]


def test_review_confirm_customer_page_and_undo(browser, site):  # noqa: F811
    a = site.post(external_id="s-1", channel="survey", nps=3, language="nl", text="Monteur kwam niet opdagen.",
                  customer={"email": "lotte.smit14@example.nl", "name": "Lotte Smit"})
    b = site.post(source="x_account", external_id="t-1", channel="social", language="nl",
                  text="@acme waar blijft de monteur??", customer={"x_handle": "lotte_smit14", "name": "Lotte"})
    site.user("alice", "agent")
    context, page, errors = sign_in(browser, site, "alice")
    page.click("nav.mainnav a[href='/identity/review']")
    page.wait_for_selector("section.review")
    sides = page.eval_on_selector_all("section.review .review-side", "els => els.map(e => e.getBoundingClientRect().x)")
    assert len(sides) == 2 and sides[0] < sides[1]  # side by side at 1440 px
    assert "Monteur kwam niet opdagen." in page.inner_text("section.review")
    assert "waar blijft de monteur" in page.inner_text("section.review")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "identity_review.png"), full_page=True)
    page.click("section.review button[id^=confirm-]")
    page.wait_for_selector("#review-empty")
    page.goto(f"{site.url}/customers/{a['customer_id']}")
    assert page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.channel)") == ["survey", "social"]
    assert "@lotte_smit14" in page.inner_text("#identities")
    page.screenshot(path=str(SCREENSHOTS / "customer_page.png"), full_page=True)
    page.click("#merges button[id^=undo-]")
    page.wait_for_selector("#customer-name")
    assert page.url.endswith(f"/customers/{b['customer_id']}")
    assert page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.channel)") == ["social"]
    assert errors == []
    context.close()
