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
