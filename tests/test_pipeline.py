"""Pipeline internals: batch path cost, identities, cases, planner."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, select

from hub.engine.pipeline import STEPS, Entry, Pipeline
from hub.engine.planner import SlotPlanner
from hub.sdk import CustomerRef, FeedbackIn, hookimpl
from hub.sdk.contracts import parse_feedback
from hub.sdk.demo_data import generate_feedback
from hub.sdk.schema import IdentityKind
from hub.storage import models as m

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


class SocialKinds:
    """Identity kinds as a source plugin declares them: a handle (normalized
    like a social network's), a Facebook-like user id (neither reachable) and
    a member number through which the firm can call back (reachable)."""

    @hookimpl
    def hub_register_identity_kinds(self):
        return [IdentityKind("handle", reachable=False, label="Social", display="@{value}",
                             normalize=lambda v: v.lstrip("@").lower()),
                IdentityKind("facebook_user", reachable=False, label="Facebook"),
                IdentityKind("member_no", reachable=True, label="member", normalize=lambda v: v.upper())]


def handle(value: str) -> CustomerRef:
    return CustomerRef(handles=(("handle", value),))


def _route_app(make_app):
    """A hub whose follow-ups go to a recording sink, or to ``local`` for unreachable customers."""
    from tests.helpers import RecordingSinkPlugin

    app = make_app(plugins=(RecordingSinkPlugin(), SocialKinds()), sinks={"rec": {"plugin": "recording"}},
                   routing={"followups": "rec", "unreachable": "local"})
    return app.extensions["hub"]


def _routes(hub) -> dict[str, str]:
    """external id -> sink of its case's follow-up."""
    with hub.db.Session() as s:
        return dict(s.execute(select(m.FeedbackItem.external_id, m.Followup.sink).join(
            m.Followup, m.Followup.case_id == m.FeedbackItem.case_id)).all())


def _items(n: int, seed: int = 1, prefix: str = "b") -> list[FeedbackIn]:
    objs = generate_feedback(random.Random(seed), n, start=NOW - dt.timedelta(days=3), end=NOW, prefix=prefix)
    return [parse_feedback(o)[1] for o in objs]


def _statements(hub, n: int, prefix: str) -> int:
    count = 0

    def on_exec(*_args):
        nonlocal count
        count += 1

    event.listen(hub.db.engine, "before_cursor_execute", on_exec)
    try:
        with hub.db.session() as s:
            Pipeline(hub).ingest(s, "bench", [Entry(i) for i in _items(n, prefix=prefix)], NOW)
    finally:
        event.remove(hub.db.engine, "before_cursor_execute", on_exec)
    return count


def test_batch_path_cost_does_not_grow_with_batch_size(hub):
    small = _statements(hub, 20, "s")
    large = _statements(hub, 400, "l")
    # Multi-row INSERTs may be split by the driver into a few statements, but
    # never one (or more) per item.
    assert large < 40, large
    assert large <= small + 15
    # A page of 1,000 (the generated feed's handles, e-mails and names run the
    # identity rules' match-key and name look-ups too): still a fixed handful.
    page = _statements(hub, 1000, "p")
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.Identity).where(m.Identity.confidence < 1))  # rules ran
    assert page < 50, page  # (ids reserved per bulk-written table: one look-up each on SQLite)
    assert page <= small + 20


def test_the_steps_run_in_the_documented_order():
    import hub.engine.pipeline as pipeline

    names = [step.__name__ for step in STEPS]
    assert names == ["dedupe", "enrich", "resolve_identity", "score", "decide", "open_cases", "plan_outbox",
                     "store_items", "apply_changes", "index_text", "announce"]
    doc = pipeline.__doc__
    assert [doc.index(f"``{n}``") for n in names] == sorted(doc.index(f"``{n}``") for n in names)


def test_identity_resolution_links_channels_and_batch(make_app):
    hub = make_app(plugins=(SocialKinds(),)).extensions["hub"]
    with hub.db.session() as s:
        res = Pipeline(hub).ingest(s, "t", [
            Entry(FeedbackIn("1", "survey", NOW, nps=3, customer=CustomerRef(email="A@x.nl",
                                                                             handles=(("handle", "@ann"),)))),
            Entry(FeedbackIn("2", "social", NOW, text="help", customer=handle(" ANN"))),
            Entry(FeedbackIn("3", "email", NOW, text="hi", customer=CustomerRef(email="a@x.nl"))),
            Entry(FeedbackIn("4", "survey", NOW, nps=9, customer=CustomerRef())),
            Entry(FeedbackIn("5", "survey", NOW, nps=9, customer=CustomerRef())),
        ], NOW)
    assert res[0].customer_id == res[1].customer_id == res[2].customer_id
    assert len({r.customer_id for r in res}) == 3  # anonymous answers are separate customers
    assert res[0].case_id == res[1].case_id == res[2].case_id  # merged into one open case
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.Case)) == 1
        assert s.scalar(select(func.count()).select_from(m.Followup)) == 1
        stored = set(s.execute(select(m.Identity.kind, m.Identity.value)).all())
    assert stored == {("email", "a@x.nl"), ("handle", "ann")}  # each value normalized by its kind


def test_duplicates_inside_a_batch_store_once(hub):
    item = FeedbackIn("dup", "survey", NOW, nps=2, customer=CustomerRef(email="d@x.nl"))
    with hub.db.session() as s:
        res = Pipeline(hub).ingest(s, "t", [Entry(item), Entry(item), Entry(item)], NOW)
    assert [r.created for r in res] == [True, False, False]
    assert len({r.item_id for r in res}) == 1


def test_resurvey_answer_is_linked_to_its_case(hub):
    with hub.db.session() as s:
        first = Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("a", "survey", NOW, nps=2,
                                                               customer=CustomerRef(email="r@x.nl")))], NOW)[0]
    with hub.db.session() as s:
        again = Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("b", "survey", NOW, nps=9, resurvey_case_id=first.case_id,
                                                               customer=CustomerRef(email="r@x.nl")))], NOW)[0]
    assert again.case_id == first.case_id
    with hub.db.Session() as s:
        case = s.get(m.Case, first.case_id)
        assert (case.resurvey_nps, case.resurvey_score, case.resurvey_scale) == (9, 9, "nps")


def test_a_csat_resurvey_answer_is_the_cases_outcome_on_its_own_scale(hub):
    from hub.engine.loop.outcomes import ledger

    with hub.db.session() as s:
        first = Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("a", "survey", NOW, nps=2,
                                                               customer=CustomerRef(email="c@x.nl")))], NOW)[0]
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("b", "survey", NOW, score=5, scale="csat",
                                                       resurvey_case_id=first.case_id,
                                                       customer=CustomerRef(email="c@x.nl")))], NOW)
    with hub.db.Session() as s:
        case = s.get(m.Case, first.case_id)
        assert (case.resurvey_nps, case.resurvey_score, case.resurvey_scale) == (None, 5, "csat")
        [outcome] = [o for o in ledger(s) if o.case_id == first.case_id]
    # CSAT 5 is a promoter on its scale (as NPS 9-10 is): the detractor converted.
    assert (outcome.score_before, outcome.score_after, outcome.category_after) == (2, 5, "promoter")


def test_planner_avoids_peaks_and_spreads_within_sla():
    cfg = {"timezone": "Europe/Amsterdam", "business_hours": [9, 17], "peak_hours": [9, 10, 13], "slot_capacity": 2,
           "sla_hours": {"normal": 48}}
    planner = SlotPlanner(cfg)
    monday_7am_local = dt.datetime(2026, 11, 23, 7, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    now = monday_7am_local.astimezone(dt.UTC)
    due = [planner.plan(now, planner.sla_due("normal", now)).astimezone(ZoneInfo("Europe/Amsterdam"))
           for _ in range(5)]
    assert [(d.hour, d.minute) for d in due] == [(11, 0), (11, 30), (12, 0), (12, 30), (14, 0)]
    # A deadline with no business hour before it: never a callback at night, the first
    # business slot after it (Monday 09:00), flagged as a risk to the SLA.
    friday_night = dt.datetime(2026, 11, 27, 22, 0, tzinfo=dt.UTC)
    urgent = friday_night + dt.timedelta(hours=4)
    monday = planner.plan(friday_night, urgent).astimezone(ZoneInfo("Europe/Amsterdam"))
    assert (monday.date(), monday.hour, planner.last.sla_at_risk) == (dt.date(2026, 11, 30), 9, True)


def test_case_priority_rises_with_a_worse_item(hub):
    with hub.db.session() as s:
        a = Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("a", "survey", NOW, nps=6,
                                                           customer=CustomerRef(email="p@x.nl")))], NOW)[0]
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("b", "social", NOW, reach=200000,
                                                       text="Ik zeg op en stap naar de Geschillencommissie",
                                                       customer=CustomerRef(email="p@x.nl")))], NOW)
    with hub.db.Session() as s:
        case = s.get(m.Case, a.case_id)
        assert case.risk >= 80 and case.priority == "urgent"


def test_mild_posts_join_the_case_a_later_angry_post_opens(hub):
    mild = lambda n, t: Entry(FeedbackIn(n, "social", t, text="@acme hoe zit het met mijn aansluiting?",  # noqa: E731
                                         thread_id="th1", customer=handle("kees")))
    angry = Entry(FeedbackIn("a3", "social", NOW, text="@acme belachelijk, ik ga overstappen en zeg op!",
                             thread_id="th1", reach=5000, customer=handle("kees")))
    with hub.db.session() as s:
        first = Pipeline(hub).ingest(s, "x", [mild("a1", NOW - dt.timedelta(hours=2))], NOW)
    assert first[0].case_id is None
    with hub.db.session() as s:
        rest = Pipeline(hub).ingest(s, "x", [mild("a2", NOW - dt.timedelta(hours=1)), angry], NOW)
    assert rest[1].case_id is not None
    with hub.db.Session() as s:
        case_ids = s.scalars(select(m.FeedbackItem.case_id).order_by(m.FeedbackItem.id)).all()
    assert case_ids == [rest[1].case_id] * 3


def test_old_feedback_is_scored_but_opens_no_case(hub):
    old = NOW - dt.timedelta(days=90)
    with hub.db.session() as s:
        res = Pipeline(hub).ingest(s, "backfill", [Entry(FeedbackIn("o1", "survey", old, nps=0, text="opzeggen",
                                                                    customer=CustomerRef(email="o@x.nl")))], NOW)
    assert res[0].case_id is None
    with hub.db.Session() as s:
        item = s.get(m.FeedbackItem, res[0].item_id)
        assert item.category == "detractor" and item.risk >= 45
        assert s.scalar(select(func.count()).select_from(m.Followup)) == 0


def test_followups_for_customers_without_contact_details_go_to_the_unreachable_route(make_app):
    hub = _route_app(make_app)
    with hub.db.session() as s:  # known by e-mail from an earlier survey
        Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("s", "survey", NOW - dt.timedelta(days=60), nps=9,
                                                       customer=CustomerRef(email="k@x.nl", handles=(("handle", "kim"),))))],
                             NOW)
    angry = "@acme belachelijk, ik ga overstappen"
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "x", [
            Entry(FeedbackIn("t1", "social", NOW, text=angry, reach=20000, customer=handle("kim"))),
            Entry(FeedbackIn("t2", "social", NOW, text=angry, reach=20000, customer=handle("anon"))),
            Entry(FeedbackIn("s2", "survey", NOW, nps=1, customer=CustomerRef(email="new@x.nl"))),
        ], NOW)
    assert _routes(hub) == {"t1": "rec", "t2": "local", "s2": "rec"}


def test_a_kind_a_plugin_declares_works_end_to_end(make_app):
    hub = _route_app(make_app)
    angry = "Belachelijk, al weken storing. Ik zeg op!"
    fb = lambda ext, user, **kw: Entry(FeedbackIn(ext, "social", NOW, text=angry, reach=3000,  # noqa: E731
                                                  customer=CustomerRef(handles=(("facebook_user", user),)), **kw))
    with hub.db.session() as s:
        first = Pipeline(hub).ingest(s, "fb", [fb("c1", "10157")], NOW)[0]
    with hub.db.session() as s:
        second, other = Pipeline(hub).ingest(s, "fb", [fb("c2", " 10157 "), fb("c3", "20288")], NOW)
        member = CustomerRef(handles=(("member_no", "a-7"),))
        Pipeline(hub).ingest(s, "crm", [Entry(FeedbackIn("m1", "survey", NOW, nps=0, text=angry, customer=member))], NOW)
    assert second.customer_id == first.customer_id != other.customer_id  # same (kind, value): one customer
    assert second.case_id == first.case_id
    assert _routes(hub) == {"c1": "local", "c2": "local", "c3": "local", "m1": "rec"}
    assert hub.registry.identity_kinds["facebook_user"].reachable is False
    with hub.db.Session() as s:
        assert s.scalar(select(m.Identity.value).where(m.Identity.kind == "member_no")) == "A-7"
        assert s.scalar(select(func.count()).select_from(m.Identity).where(m.Identity.kind == "facebook_user")) == 2


def test_identities_of_undeclared_kinds_are_stored_but_never_reachable(make_app):
    hub = _route_app(make_app)
    with hub.db.session() as s:
        res = Pipeline(hub).ingest(s, "x", [
            Entry(FeedbackIn(str(n), "survey", NOW, nps=0, text="Ik zeg op!",
                             customer=CustomerRef(handles=(("pager", " 0612 "),)))) for n in (1, 2)], NOW)
    assert res[0].customer_id == res[1].customer_id
    assert _routes(hub) == {"1": "local", "2": "local"}
    with hub.db.Session() as s:
        assert s.execute(select(m.Identity.kind, m.Identity.value)).all() == [("pager", "0612")]


def test_a_plugin_may_replace_a_core_kind(make_app):
    class StrictEmail:
        @hookimpl
        def hub_register_identity_kinds(self):
            return [IdentityKind("email", reachable=False, label="e-mail (unverified)")]

    from tests.helpers import RecordingSinkPlugin

    app = make_app(plugins=(RecordingSinkPlugin(), StrictEmail()), sinks={"rec": {"plugin": "recording"}},
                   routing={"followups": "rec", "unreachable": "local"})
    hub = app.extensions["hub"]
    assert hub.registry.identity_kinds["phone"].reachable  # the other core kinds stay
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("e", "survey", NOW, nps=0, text="Ik zeg op!",
                                                       customer=CustomerRef(email="Mixed@Case.nl")))], NOW)
    assert _routes(hub) == {"e": "local"}
    with hub.db.Session() as s:  # no normalize declared: stored as given (stripped)
        assert s.scalar(select(m.Identity.value)) == "Mixed@Case.nl"


def test_announced_views_match_the_stored_rows(make_app):
    from hub.storage.rows import case_view, feedback_view

    seen: dict[str, list] = {"items": [], "cases": []}

    class Listener:
        @hookimpl
        def hub_feedback_ingested(self, item):
            seen["items"].append(item)

        @hookimpl
        def hub_case_opened(self, case):
            seen["cases"].append(case)

    hub = make_app(plugins=(Listener(),)).extensions["hub"]
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "t", [Entry(i) for i in _items(30)], NOW)
        assert seen == {"items": [], "cases": []}  # nothing before the commit
    with hub.db.Session() as s:
        items = s.scalars(select(m.FeedbackItem).order_by(m.FeedbackItem.id)).all()
        cases = s.scalars(select(m.Case).order_by(m.Case.id)).all()
        assert cases and seen["items"] == [feedback_view(r) for r in items]
        assert seen["cases"] == [case_view(c) for c in cases]


def test_sinks_see_a_customer_known_only_by_a_handle_as_its_kind_shows_it(make_app):
    from hub.engine.dispatch import dispatch
    from tests.helpers import RecordingSinkPlugin

    rec = RecordingSinkPlugin()
    app = make_app(plugins=(rec, SocialKinds()), sinks={"rec": {"plugin": "recording"}},
                   routing={"followups": "rec", "unreachable": "rec"})
    hub = app.extensions["hub"]
    now = hub.clock.utcnow()
    who = CustomerRef(name=None, handles=(("handle", "@Kees"), ("pager", "0612")))
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "x", [Entry(FeedbackIn("k1", "social", now, text="Belachelijk, ik zeg op!",
                                                       reach=9000, customer=who))])
    assert dispatch(hub).sent == 1
    (f,) = rec.pushed
    assert f.customer.handles == (("handle", "kees"), ("pager", "0612"))
    assert f.customer.handle == f.customer.shown_as == "@kees"  # the declared kind's display
    assert (f.customer.email, f.customer.phone) == (None, None)


def test_an_enricher_returning_an_unknown_field_does_not_fail_the_batch(make_app, caplog):
    class Typo:
        @hookimpl
        def hub_enrich_feedback(self, item, config):
            return {"langauge": "nl", "url": "https://example.nl/r/1"}

    hub = make_app(plugins=(Typo(),)).extensions["hub"]
    with hub.db.session() as s:
        res = Pipeline(hub).ingest(s, "t", [Entry(FeedbackIn("e1", "survey", NOW, nps=9))], NOW)
    assert res[0].created
    with hub.db.Session() as s:
        assert s.get(m.FeedbackItem, res[0].item_id).url == "https://example.nl/r/1"  # known keys still apply
    assert "'langauge'" in caplog.text
