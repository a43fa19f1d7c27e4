"""Merge and split as real operations: what a merge moves, that a split
restores exactly that, and one open case with one live callback after a merge."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.engine.dispatch import dispatch
from hub.engine.merge import MergeError, merge, split
from hub.engine.pipeline import Entry, Pipeline
from hub.sdk import CrmSink, CustomerRef, FeedbackIn, PushResult, hookimpl
from hub.storage import models as m
from tests.conftest import TEST_NOW

ANGRY = "Al drie weken storing en niemand belt terug. Belachelijk. Ik ga overstappen!"


class CancellingSinkPlugin:
    """A CRM sink that creates tasks and can cancel them (as CRMs with a task API can)."""

    def __init__(self):
        self.pushed: list = []
        self.cancelled: list = []
        plugin = self

        class CancellingSink(CrmSink):
            plugin_name = "cancelling"

            def push(self, followups):
                plugin.pushed.extend(followups)
                return [PushResult(f.id, ok=True, external_id=f"task-{f.id}") for f in followups]

            def cancel(self, followups):
                plugin.cancelled.extend(f.external_id for f in followups)
                return [PushResult(f.id, ok=True, external_id=f.external_id) for f in followups]

        self.cls = CancellingSink

    @hookimpl
    def hub_register_crm_sinks(self):
        return [self.cls]


@pytest.fixture
def crm(make_app):
    plugin = CancellingSinkPlugin()
    app = make_app(plugins=(plugin,), sinks={"crm": {"plugin": "cancelling"}},
                   routing={"followups": "crm", "unreachable": "crm"})
    return app.extensions["hub"], plugin


def _two_unhappy_customers(hub):
    """A (survey, e-mail) and B (X post with a legal threat: an urgent, earlier SLA), each with an open case."""
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        (a,) = Pipeline(hub).ingest(s, "nps", [Entry(FeedbackIn(
            "s1", "survey", now, nps=6, text="Het kan wat sneller.", customer=CustomerRef(email="bram@example.nl", name="Bram Vos")))])
        (b,) = Pipeline(hub).ingest(s, "x", [Entry(FeedbackIn(
            "t1", "social", now, reach=40_000, text="@acme dit gaat naar de Geschillencommissie, mijn advocaat belt",
            customer=CustomerRef(name="Bram", handles=(("x_handle", "bram_v"),))))])
    assert a.case_id and b.case_id and a.customer_id != b.customer_id
    return a, b


def snapshot(hub) -> dict:
    """Everything a merge may touch, as plain values."""
    with hub.db.Session() as s:
        return {
            "customers": sorted((c.id, c.name, c.value, tuple(sorted((c.attributes or {}).items())), c.merged_into_id)
                                for c in s.scalars(select(m.Customer))),
            "identities": sorted((i.id, i.customer_id, i.kind, i.value, i.confidence)
                                 for i in s.scalars(select(m.Identity))),
            "items": sorted((i.id, i.customer_id, i.case_id) for i in s.scalars(select(m.FeedbackItem))),
            "cases": sorted((c.id, c.customer_id, c.status, c.sla_due_at, c.risk, c.priority, c.owner, c.outcome,
                             c.closed_at) for c in s.scalars(select(m.Case))),
            "followups": sorted((f.id, f.case_id, f.status, f.last_error, f.external_id, f.cancelled_at, f.sync_pending)
                                for f in s.scalars(select(m.Followup))),
        }


def test_merging_two_customers_with_open_cases_gives_one_case_with_the_earlier_sla_and_one_live_task(crm):
    hub, plugin = crm
    a, b = _two_unhappy_customers(hub)
    assert dispatch(hub).sent == 2  # both tasks are in the CRM
    with hub.db.Session() as s:
        sla_a, sla_b = s.get(m.Case, a.case_id).sla_due_at, s.get(m.Case, b.case_id).sla_due_at
    assert sla_b < sla_a
    with hub.db.session() as s:
        survivor = merge(s, a.customer_id, b.customer_id, actor="user:anna", now=hub.clock.utcnow(),
                         reason="same person: confirmed on the phone", hub=hub)
        assert survivor.id == a.customer_id
    with hub.db.Session() as s:
        open_cases = s.scalars(select(m.Case).where(m.Case.customer_id == a.customer_id,
                                                    m.Case.status.notin_(("resolved", "closed")))).all()
        assert [c.id for c in open_cases] == [a.case_id]
        (case,) = open_cases
        assert case.sla_due_at == sla_b  # the earlier SLA
        assert case.priority == "urgent"
        items = s.execute(select(m.FeedbackItem.external_id, m.FeedbackItem.case_id, m.FeedbackItem.customer_id)).all()
        assert sorted(items) == [("s1", a.case_id, a.customer_id), ("t1", a.case_id, a.customer_id)]  # both timelines
        other = s.get(m.Case, b.case_id)
        assert other.status == "closed" and other.customer_id == a.customer_id
        live = s.scalars(select(m.Followup).where(m.Followup.status.in_(("pending", "sending", "sent", "failed")))).all()
        assert [f.case_id for f in live] == [a.case_id]  # one live CRM task
        dead = s.scalar(select(m.Followup).where(m.Followup.case_id == b.case_id))
        assert dead.status == "dead" and "merged into case" in dead.last_error
        assert s.get(m.Customer, b.customer_id).merged_into_id == a.customer_id
        actions = [(e.actor, e.action, e.case_id) for e in s.scalars(select(m.AuditEvent).order_by(m.AuditEvent.id))]
        record = s.scalar(select(m.CustomerMerge))
        assert record.actor == "user:anna" and record.reason == "same person: confirmed on the phone"
    assert plugin.cancelled == []  # withdrawn through the outbox, not inside the merge
    dispatch(hub)
    assert plugin.cancelled == [f"task-{dead.id}"]  # the redundant task cancelled in the CRM
    assert dispatch(hub).sent == 0 and plugin.cancelled == [f"task-{dead.id}"]  # once
    assert ("user:anna", "customer.merged", None) in actions
    assert ("user:anna", "case.merged", b.case_id) in actions
    # A later post of the handle joins the one customer and the one case.
    with hub.db.session() as s:
        (later,) = Pipeline(hub).ingest(s, "x", [Entry(FeedbackIn("t2", "social", hub.clock.utcnow(), text=ANGRY,
                                                                  customer=CustomerRef(handles=(("x_handle", "bram_v"),))))])
    assert (later.customer_id, later.case_id) == (a.customer_id, a.case_id)


def test_merge_then_split_restores_identities_items_and_cases_exactly(crm):
    hub, _plugin = crm
    a, b = _two_unhappy_customers(hub)
    dispatch(hub)
    with hub.db.session() as s:
        s.get(m.Customer, b.customer_id).attributes = {"lifecycle": "customer"}
        s.get(m.Customer, b.customer_id).value = 1200.0
    before = snapshot(hub)
    with hub.db.session() as s:
        merge(s, a.customer_id, b.customer_id, actor="user:anna", now=hub.clock.utcnow(), hub=hub)
    merged = snapshot(hub)
    assert merged != before
    assert {i[1] for i in merged["identities"]} == {a.customer_id}
    with hub.db.session() as s:
        back = split(s, a.customer_id, [("x_handle", "bram_v")], actor="user:bob", now=hub.clock.utcnow(),
                     reason="two different people")
        assert back.id == b.customer_id  # the merged customer comes back under its own id
    assert snapshot(hub) == before
    with hub.db.Session() as s:
        record = s.scalar(select(m.CustomerMerge))
        assert record.split_by == "user:bob" and record.split_at is not None
        split_event = s.scalar(select(m.AuditEvent).where(m.AuditEvent.action == "customer.split"))
        assert split_event.actor == "user:bob"
        assert split_event.detail["restored_customer_id"] == b.customer_id
        assert split_event.detail["merge_id"] == record.id
    # Split again: nothing of that merge is left to undo, so it is an error or a plain split, never a double undo.
    with hub.db.session() as s, pytest.raises(MergeError):
        split(s, a.customer_id, [("x_handle", "bram_v")], actor="user:bob", now=hub.clock.utcnow())


def test_split_of_identities_no_merge_brought_makes_a_new_customer_with_their_items(hub):
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        first, second, both = Pipeline(hub).ingest(s, "t", [
            Entry(FeedbackIn("s1", "survey", now, nps=9, text="Top", customer=CustomerRef(email="fam@example.nl"))),
            Entry(FeedbackIn("t1", "social", now, text="@acme hoi",
                             customer=CustomerRef(email="fam@example.nl", handles=(("x_handle", "zoon_k"),)))),
            Entry(FeedbackIn("t2", "social", now, text="@acme nog een vraag",
                             customer=CustomerRef(handles=(("x_handle", "zoon_k"),)))),
        ])
    assert first.customer_id == second.customer_id == both.customer_id
    with hub.db.session() as s:
        new = split(s, first.customer_id, [("x_handle", "zoon_k")], actor="user:anna", now=now)
        new_id = new.id
    with hub.db.Session() as s:
        owners = dict(s.execute(select(m.FeedbackItem.external_id, m.FeedbackItem.customer_id)).all())
        kinds = dict(s.execute(select(m.Identity.kind, m.Identity.customer_id)).all())
    # The post that carried only the handle moves; the one with both stays with the address.
    assert owners == {"s1": first.customer_id, "t1": first.customer_id, "t2": new_id}
    assert kinds == {"email": first.customer_id, "x_handle": new_id}


def test_bad_merges_and_splits_are_refused_and_change_nothing(crm):
    hub, _plugin = crm
    a, b = _two_unhappy_customers(hub)
    before = snapshot(hub)
    now = hub.clock.utcnow()
    for call, message in (
        (lambda s: merge(s, a.customer_id, a.customer_id, actor="t", now=now), "itself"),
        (lambda s: merge(s, a.customer_id, 99999, actor="t", now=now), "no customer"),
        (lambda s: split(s, a.customer_id, [("email", "nobody@example.nl")], actor="t", now=now), "has no email"),
        (lambda s: split(s, a.customer_id, [("email", "bram@example.nl")], actor="t", now=now), "at least one"),
    ):
        with hub.db.Session() as s, pytest.raises(MergeError, match=message):
            call(s)
    assert snapshot(hub) == before
    with hub.db.session() as s:
        merge(s, a.customer_id, b.customer_id, actor="t", now=now)
    with hub.db.session() as s, pytest.raises(MergeError, match="was merged into"):
        merge(s, b.customer_id, a.customer_id, actor="t", now=now)


def test_now_is_the_tests_clock(crm):
    hub, _ = crm
    assert hub.clock.utcnow() == TEST_NOW
