"""The customer page, the review queue and inbox search by who wrote it, through Flask's test client."""

from __future__ import annotations

import re

from sqlalchemy import select

from hub.storage import models as m
from tests.test_web_ui import add_user, login, token_of


def _post(client, auth, **item):
    r = client.post("/api/v1/feedback", json=item, headers=auth)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def _people(client, auth):
    a = _post(client, auth, external_id="s1", channel="survey", nps=2, text="Al weken storing, niemand belt",
              customer={"email": "bram.vos16@example.nl", "name": "Bram Vos"})
    b = _post(client, auth, external_id="t1", channel="social", text="@acme nog steeds geen internet",
              customer={"x_handle": "bram_v", "name": "B. Vos"})
    _post(client, auth, external_id="s2", channel="survey", nps=3, text="Nog altijd niets",
          customer={"email": "bram.vos16@example.nl", "x_handle": "bram_v"})
    return a, b


def _form_post(client, page_url: str, url: str, data: dict):
    token = token_of(client.get(page_url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def test_review_queue_confirm_then_customer_page_then_undo(client, auth, hub):
    a, b = _people(client, auth)
    add_user(hub, "anna", "agent")
    login(client, "anna")
    page = client.get("/identity/review").get_data(as_text=True)
    # Both timelines side by side: the survey answers and the post.
    assert "Al weken storing" in page and "nog steeds geen internet" in page
    (sid,) = re.findall(r'data-suggestion="(\d+)"', page)
    r = _form_post(client, "/identity/review", f"/identity/suggestions/{sid}/confirm", {})
    assert r.status_code == 302
    page = client.get(f"/customers/{a['customer_id']}").get_data(as_text=True)
    assert page.count('class="tl-item') == 3  # survey and social in one timeline
    assert "@bram_v" in page and "bram.vos16@example.nl" in page
    assert "100%" in page and "survey api/s1" in page  # confidence and evidence of each identity
    with hub.db.Session() as s:
        record = s.scalar(select(m.CustomerMerge))
        assert record.actor == "user:anna"
    assert f'id="undo-{record.id}"' in page
    handle_id = re.search(r'name="identity" value="(\d+)"', page.split(f'id="undo-{record.id}"')[0].split(
        'data-merge=')[-1]).group(1)
    r = _form_post(client, f"/customers/{a['customer_id']}", f"/customers/{a['customer_id']}/split",
                   {"identity": handle_id})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/customers/{b['customer_id']}")
    back = client.get(f"/customers/{b['customer_id']}").get_data(as_text=True)
    assert back.count('class="tl-item') == 1 and "nog steeds geen internet" in back


def test_reject_in_the_queue_and_nothing_left(client, auth, hub):
    _people(client, auth)
    add_user(hub, "anna", "agent")
    login(client, "anna")
    (sid,) = re.findall(r'data-suggestion="(\d+)"', client.get("/identity/review").get_data(as_text=True))
    _form_post(client, "/identity/review", f"/identity/suggestions/{sid}/reject", {})
    assert 'id="review-empty"' in client.get("/identity/review").get_data(as_text=True)


def test_merge_from_the_customer_page_and_a_viewer_cannot(app, client, auth, hub):
    a, b = _people(client, auth)
    add_user(hub, "vera", "viewer")
    add_user(hub, "anna", "agent")
    login(client, "vera")
    url = f"/customers/{a['customer_id']}"
    assert 'id="merge-submit"' not in client.get(url).get_data(as_text=True)
    r = _form_post(client, url, f"{url}/merge", {"other_customer_id": str(b["customer_id"])})
    assert r.status_code == 403
    client = app.test_client()
    login(client, "anna")
    r = _form_post(client, url, f"{url}/merge", {"other_customer_id": f"#{b['customer_id']}", "reason": "same"})
    assert r.status_code == 302
    with hub.db.Session() as s:
        assert s.get(m.Customer, b["customer_id"]).merged_into_id == a["customer_id"]
    r = _form_post(client, url, f"{url}/merge", {"other_customer_id": "abc"})
    assert r.status_code == 302  # refused with a message, nothing changed


def test_cases_and_inbox_rows_link_to_the_customer_page(client, auth, hub):
    a, _b = _people(client, auth)
    add_user(hub, "anna", "agent")
    login(client, "anna")
    case = client.get(f"/cases/{a['case_id']}").get_data(as_text=True)
    assert f'href="/customers/{a["customer_id"]}"' in case
    inbox = client.get("/").get_data(as_text=True)
    assert f'/customers/{a["customer_id"]}' in inbox


def test_inbox_search_finds_items_by_name_email_and_handle(client, auth, hub):
    a, b = _people(client, auth)
    _post(client, auth, external_id="s9", channel="survey", nps=1, text="Onbeschoft geholpen",
          customer={"email": "kim@example.nl", "name": "Kim de Boer"})
    add_user(hub, "anna", "agent")
    login(client, "anna")

    def shown(q: str) -> bool:
        page = client.get("/", query_string={"q": q, "view": "feedback", "status": "all"}).get_data(as_text=True)
        return "Onbeschoft geholpen" in page

    assert shown("Onbeschoft")  # the text, as before
    assert shown("de boer")  # the name
    assert shown("KIM@example")  # the e-mail
    assert not shown("bram_v")
    page = client.get("/", query_string={"q": "@bram_v", "view": "feedback", "status": "all"}).get_data(as_text=True)
    assert "nog steeds geen internet" in page  # the handle


def test_customer_search_page(client, auth, hub):
    a, b = _people(client, auth)
    add_user(hub, "anna", "agent")
    login(client, "anna")
    page = client.get("/customers", query_string={"q": "bram_v", "merge_into": a["customer_id"]}).get_data(
        as_text=True)
    assert f'/customers/{b["customer_id"]}' in page and "Merge into customer" in page
    assert 'id="no-customers"' in client.get("/customers?q=nobody").get_data(as_text=True)
