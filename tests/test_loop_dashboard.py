"""The dashboard's loop cards: revenue at risk as a picture (told us / stayed silent, stayed / left)
and detractors converted, treated vs control."""

from __future__ import annotations

import re

from hub.engine.pipeline import Entry, Pipeline
from hub.sdk import CustomerRef, FeedbackIn
from hub.storage import models as m
from tests.conftest import TEST_NOW
from tests.test_web_ui import add_user, login


def test_the_revenue_picture_and_the_conversion_card(make_app):
    app = make_app(revenue={"default_yearly_value": 250.0})
    hub = app.extensions["hub"]
    entries = [Entry(FeedbackIn(f"d{i}", "survey", TEST_NOW, nps=2, text="Slecht.",
                                customer=CustomerRef(email=f"k{i}@example.nl"))) for i in range(10)]
    with hub.db.session() as s:
        results = Pipeline(hub).ingest(s, "nps", entries)
        for r in results[:4]:  # four treated detractors answered the re-survey, three improved
            s.get(m.Case, r.case_id).resurvey_nps = 9 if r is not results[3] else 4
    add_user(hub, "anna", "agent")
    client = app.test_client()
    login(client, "anna")
    page = client.get("/dashboard").get_data(as_text=True)
    revenue = re.search(r'<svg class="loop-picture" id="revenue-picture".*?</svg>', page, re.S).group(0)
    # 10 told us, 15 silent (1.5 each); churn 0.3 and 0.8: 7 + 3 and 3 + 12.
    counts = dict(re.findall(r'<rect class="seg-([a-z-]+)"[^>]*><title>[^:]+: (\d+)</title>', revenue))
    assert counts == {"told-stayed": "7", "told-left": "3", "silent-stayed": "3", "silent-left": "12"}
    widths = {k: float(w) for k, w in re.findall(r'class="seg-([a-z-]+)" x="[\d.]+" y="0" width="([\d.]+)"', revenue)}
    assert abs(sum(widths.values()) - 640) < 0.5 and widths["silent-left"] == 640 * 12 / 25
    assert "Of 25 unhappy customers, 10 told us and 15 stayed silent." in page
    conversion = re.search(r'id="conversion-picture".*?</svg>', page, re.S).group(0)
    assert "75% (3/4)" in conversion and 'class="bar-control"' in conversion
    assert 'id="chart-nps"' in page and '<svg class="chart" id="revenue' not in page  # beside, not instead of, the charts


def test_the_loop_trends_card(make_app):
    import datetime as dt

    from sqlalchemy import select

    app = make_app(planner={"peak_hours": [9, 10, 13]})
    hub = app.extensions["hub"]
    entries = [Entry(FeedbackIn(f"d{i}", "survey", TEST_NOW, nps=1, text="Slecht.",
                                customer=CustomerRef(email=f"k{i}@example.nl"))) for i in range(4)]
    with hub.db.session() as s:
        results = Pipeline(hub).ingest(s, "nps", entries)
        cases = [s.get(m.Case, r.case_id) for r in results]
        cases[0].contacted_at = cases[0].sla_due_at - dt.timedelta(hours=1)  # in time
        cases[1].contacted_at = cases[1].sla_due_at + dt.timedelta(hours=1)  # late
        cases[0].resurvey_nps, cases[1].resurvey_nps = 9, 3
        # Callback slots: three at 11:00 local, one at 09:00 (a peak hour).
        followups = s.scalars(select(m.Followup).order_by(m.Followup.id)).all()
        for f, hour in zip(followups, (10, 10, 10, 8), strict=True):  # UTC: 11:00 and 09:00 in Amsterdam
            f.due_at = dt.datetime(2026, 11, 23, hour, tzinfo=dt.UTC)
        # One repeat contact after the closed loop of case 0, none after the others.
        s.add(m.FeedbackItem(source="api", external_id="again", channel="email", text="Weer!", risk=0,
                             occurred_at=cases[0].contacted_at + dt.timedelta(days=3),
                             customer_id=cases[0].customer_id))
    add_user(hub, "anna", "agent")
    client = app.test_client()
    login(client, "anna")
    page = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'id="outside-peaks">[^<]*<b>75%</b>', page)
    assert "closed loops 50%, unclosed loops 0%" in page
    week = re.search(r'<table class="table compact" id="loop-weeks">.*?</table>', page, re.S).group(0)
    assert "<td>2026-11-16</td><td>50%</td><td>-</td><td>25%</td>" in week  # 1 of 2 converted; 1 of 4 in time
