"""Repeat contacts counted for scoring: the database counts each item's window.

``prior_contacts`` of an item is how many items of its customer lie in
``[occurred_at - window, occurred_at)``: stored ones (counted by the database,
one index range per window) plus earlier items of the same batch.  Checked here
against a brute-force count over random times, on every backend.
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import event

from hub.engine.pipeline import Entry, Pipeline
from hub.sdk import CustomerRef, FeedbackIn, hookimpl
from hub.storage import models as m
from hub.storage.database import count_in_windows

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(days=30)
F = m.FeedbackItem


class Recorder:
    def __init__(self):
        self.seen: dict[str, int] = {}

    @hookimpl
    def hub_score_feedback(self, item, context):
        self.seen[item.external_id] = context.prior_contacts


def _item(ext: str, email: str, when: dt.datetime) -> Entry:
    return Entry(FeedbackIn(ext, "survey", when, nps=8, customer=CustomerRef(email=email)))


def _brute(history: list[tuple[str, dt.datetime]], email: str, when: dt.datetime) -> int:
    return sum(1 for e, t in history if e == email and when - WINDOW <= t < when)


def test_prior_contacts_match_a_brute_force_count(make_app):
    rec = Recorder()
    hub = make_app(plugins=(rec,)).extensions["hub"]
    rng = random.Random(17)
    emails = ["a@x.nl", "b@x.nl", "c@x.nl"]
    history: list[tuple[str, dt.datetime]] = []
    n = 0
    for _batch in range(4):
        entries = []
        for _ in range(25):
            email = rng.choice(emails)
            # Whole days sometimes, so items land exactly on a window's edges.
            offset = dt.timedelta(days=rng.randrange(90)) if rng.random() < 0.4 else \
                dt.timedelta(seconds=rng.randrange(90 * 86400))
            entries.append(_item(f"i{n}", email, NOW - offset))
            n += 1
        expected = {}
        for e in entries:  # stored items, then the batch's earlier ones, in order
            email, when = e.item.customer.email, e.item.occurred_at
            expected[e.item.external_id] = _brute(history, email, when)
            history.append((email, when))
        with hub.db.session() as s:
            Pipeline(hub).ingest(s, "t", entries, NOW)
        assert {k: rec.seen[k] for k in expected} == expected
    assert max(rec.seen.values()) >= 5  # the windows were not all empty


def test_count_in_windows_counts_half_open_ranges(make_app):
    hub = make_app().extensions["hub"]
    times = [NOW - dt.timedelta(days=d) for d in (0, 1, 2, 3, 10)]
    with hub.db.session() as s:
        res = Pipeline(hub).ingest(s, "t", [_item(f"w{i}", "w@x.nl", t) for i, t in enumerate(times)], NOW)
        cid = res[0].customer_id
    with hub.db.Session() as s:
        got = count_in_windows(s, F.customer_id, F.occurred_at, [
            (cid, NOW - dt.timedelta(days=3), NOW),  # days 3, 2, 1: the start counts, the end does not
            (cid, NOW - dt.timedelta(days=2), NOW + dt.timedelta(seconds=1)),  # 2, 1, 0
            (cid, NOW - dt.timedelta(days=9), NOW - dt.timedelta(days=3)),  # none
            (cid + 999, NOW - dt.timedelta(days=99), NOW),  # no such customer
            (cid, NOW - dt.timedelta(days=99), NOW + dt.timedelta(days=1)),  # all five
        ])
    assert got == [3, 3, 0, 0, 5]


def test_each_window_is_an_index_range(make_app):
    """The statement count_in_windows sends, explained: a range of the (customer_id, occurred_at) index."""
    hub = make_app().extensions["hub"]
    if hub.db.dialect != "sqlite":
        return  # PostgreSQL's plan of an almost empty table depends on its statistics: not a stable check
    sent = []
    event.listen(hub.db.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, params, _ctx, _many: sent.append((statement, params)))
    with hub.db.Session() as s:
        count_in_windows(s, F.customer_id, F.occurred_at, [(1, NOW - WINDOW, NOW)])
        (statement, params), = [(q, p) for q, p in sent if "count(" in q]
        plan = " ".join(str(r[-1]) for r in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))
    assert "ix_feedback_item_customer_occurred" in plan, plan
    assert "occurred_at>? AND occurred_at<?" in plan, plan  # a range, not every row of the customer
