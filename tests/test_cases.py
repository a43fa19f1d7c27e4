"""The case lifecycle: one table, used by the UI, the dispatcher and the
completion sync; the database refuses a status no code knows."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from hub.engine import cases as lifecycle
from hub.engine.completion import complete_followups
from hub.engine.dispatch import dispatch
from hub.sdk import CASE_STATUSES, Completion
from hub.storage import models as m
from tests.helpers import recording_app
from tests.test_web_ui import add_user, login, post

ROOT = Path(__file__).resolve().parent.parent


def _case(hub, status: str = "new", owner: str | None = None, followup: str | None = None) -> int:
    """A case (and optionally one follow-up in status ``followup``), written directly."""
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        case = m.Case(status=status, owner=owner, opened_at=now, updated_at=now,
                      closed_at=now if status in ("resolved", "closed") else None)
        s.add(case)
        s.flush()
        if followup:
            s.add(m.Followup(case_id=case.id, sink="rec", idempotency_key=f"test-{case.id}", due_at=now,
                             status=followup, next_attempt_at=now, created_at=now))
        return case.id


def _state(hub, case_id: int) -> tuple[m.Case, list[tuple[str, dict]], list[str]]:
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        events = [(e.action, e.detail) for e in s.scalars(
            select(m.AuditEvent).where(m.AuditEvent.case_id == case_id).order_by(m.AuditEvent.id))]
        followups = list(s.scalars(select(m.Followup.status).where(m.Followup.case_id == case_id)
                                   .order_by(m.Followup.id)))
        s.expunge(case)
        return case, events, followups


# -- the table ---------------------------------------------------------------------------
def test_the_table_covers_every_status_and_only_known_ones():
    assert set(lifecycle.TRANSITIONS) == set(CASE_STATUSES)
    for status, targets in lifecycle.TRANSITIONS.items():
        assert set(targets) <= set(CASE_STATUSES) and status not in targets
    # every status is reachable from new, and a finished case can be reopened
    reachable, todo = {"new"}, ["new"]
    while todo:
        for nxt in lifecycle.allowed(todo.pop()):
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert reachable == set(CASE_STATUSES)
    assert "closed" in lifecycle.allowed("resolved")
    assert {"new", "assigned"} <= set(lifecycle.allowed("closed"))


def test_an_invalid_transition_is_a_clear_error_and_changes_nothing(hub):
    case_id = _case(hub, "closed")
    with hub.db.Session() as s:
        case = s.get(m.Case, case_id)
        with pytest.raises(lifecycle.InvalidTransition) as err:
            lifecycle.transition(case, "scheduled", actor="test", now=hub.clock.utcnow())
        assert str(err.value) == f"case {case_id}: cannot go from closed to scheduled; allowed: assigned, new"
        assert (err.value.current, err.value.to) == ("closed", "scheduled")
        assert case.status == "closed" and not s.new
        with pytest.raises(lifecycle.InvalidTransition, match="from new to new"):
            lifecycle.transition(m.Case(id=7, status="new"), "new", actor="test", now=hub.clock.utcnow())


def test_transition_sets_timestamps_and_writes_the_audit_event(hub):
    case_id = _case(hub, "new", owner="bert")
    t0 = hub.clock.utcnow()
    with hub.db.session() as s:
        case = s.get(m.Case, case_id)
        lifecycle.transition(case, "contacted", actor="user:alice", now=t0, note="by phone")
    hub.clock.sleep(3600)
    t1 = hub.clock.utcnow()
    with hub.db.session() as s:
        case = s.get(m.Case, case_id)
        lifecycle.transition(case, "resolved", actor="user:alice", now=t1)
        lifecycle.transition(case, "closed", actor="user:alice", now=t1 + dt.timedelta(minutes=5))
    case, events, _ = _state(hub, case_id)
    assert (case.status, case.contacted_at, case.closed_at) == ("closed", t0, t1)  # closed_at: when the loop ended
    assert events == [("case.contacted", {"from": "new", "to": "contacted", "note": "by phone"}),
                      ("case.resolved", {"from": "contacted", "to": "resolved"}),
                      ("case.closed", {"from": "resolved", "to": "closed"})]
    with hub.db.session() as s:
        lifecycle.reopen(s.get(m.Case, case_id), actor="user:alice", now=t1)
    case, events, _ = _state(hub, case_id)
    assert (case.status, case.closed_at, case.contacted_at) == ("assigned", None, t0)  # it has an owner
    assert events[-1] == ("case.reopened", {"from": "closed", "to": "assigned"})


def test_advance_moves_only_forward(hub):
    resolved, scheduled = _case(hub, "resolved"), _case(hub, "scheduled")
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        assert not lifecycle.advance(s.get(m.Case, resolved), "contacted", actor="sync", now=now)
        assert not lifecycle.advance(s.get(m.Case, scheduled), "assigned", actor="ui", now=now, action="case.assigned")
        assert lifecycle.advance(s.get(m.Case, scheduled), "contacted", actor="sync", now=now)
    assert _state(hub, resolved)[0].status == "resolved" and _state(hub, resolved)[1] == []
    case, events, _ = _state(hub, scheduled)
    assert case.status == "contacted"
    assert events == [("case.assigned", {}), ("case.contacted", {"from": "scheduled", "to": "contacted"})]


def test_no_code_outside_the_lifecycle_sets_a_case_status():
    """``<something case>.status = ...`` only in hub/engine/cases.py."""
    offenders = []
    for path in (ROOT / "hub").rglob("*.py"):
        if path == ROOT / "hub" / "engine" / "cases.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AugAssign | ast.AnnAssign) else []
            flat = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
            for t in flat:
                if (isinstance(t, ast.Attribute) and t.attr == "status" and isinstance(t.value, ast.Name)
                        and "case" in t.value.id.lower()):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"set the status through hub.engine.cases: {offenders}"


# -- the database ------------------------------------------------------------------------
@pytest.mark.parametrize(("table", "row"), [
    ("case", lambda now: m.Case(status="archived", opened_at=now, updated_at=now)),
    ("raw_event", lambda now: m.RawEvent(source="api", payload={}, received_at=now, status="later")),
])
def test_the_database_refuses_an_unknown_status(hub, table, row):
    now = hub.clock.utcnow()
    with hub.db.Session() as s:
        s.add(row(now))
        with pytest.raises(sa.exc.IntegrityError, match=f"ck_{table}_status|CHECK constraint failed"):
            s.flush()


def test_the_database_refuses_an_unknown_followup_status(hub):
    case_id = _case(hub, followup="pending")
    with hub.db.Session() as s, pytest.raises(sa.exc.IntegrityError, match="ck_followup_status|CHECK constraint"):
        s.execute(sa.update(m.Followup).where(m.Followup.case_id == case_id).values(status="cancelled"))
        s.flush()


# -- dispatcher and completion follow the same table ------------------------------------
@pytest.mark.parametrize(("start", "after_push", "after_completion"), [
    ("new", "scheduled", "contacted"),
    ("assigned", "scheduled", "contacted"),  # the dispatcher used to leave an assigned case alone
    ("contacted", "contacted", "contacted"),
    ("resolved", "resolved", "resolved"),  # a late push or CRM sync never reopens a case
])
def test_dispatch_and_completion_move_cases_by_the_table(make_app, start, after_push, after_completion):
    app, _rec = recording_app(make_app)
    hub = app.extensions["hub"]
    case_id = _case(hub, start, followup="pending")
    assert dispatch(hub, ignore_schedule=True).sent == 1
    case, events, followups = _state(hub, case_id)
    assert (case.status, followups) == (after_push, ["sent"])
    if after_push != start:
        assert events[-1] == ("case.scheduled", {"from": start, "to": "scheduled", "followup_id": events[-1][1][
            "followup_id"]})
    with hub.db.Session() as s:
        fid = s.scalar(select(m.Followup.id).where(m.Followup.case_id == case_id))
    assert complete_followups(hub, [Completion(fid, "reached")], actor="sink:rec") == 1
    case, events, followups = _state(hub, case_id)
    assert (case.status, followups) == (after_completion, ["done"])
    assert events[-1][0] == "followup.completed"
    assert ("from" in events[-1][1]) == (after_completion != after_push)


# -- the UI reaches closed ---------------------------------------------------------------
@pytest.fixture
def agent(hub, client):
    add_user(hub, "alice", "agent")
    assert login(client, "alice").status_code == 302
    return client


def test_the_ui_closes_a_resolved_case_and_reopens_it(hub, agent):
    case_id = _case(hub, "contacted", owner="alice")
    url = f"/cases/{case_id}"
    assert 'id="reopen"' not in agent.get(url).get_data(as_text=True)
    post(agent, f"{url}/resolve", {"outcome": "explained", "root_cause": "billing", "resolved": "yes"})
    page = agent.get(url).get_data(as_text=True)
    assert 'id="close"' in page and 'id="reopen"' in page and 'id="resolve"' not in page
    assert post(agent, f"{url}/close", {"reason": "customer happy"}).status_code == 302
    case, events, _ = _state(hub, case_id)
    assert case.status == "closed" and case.closed_at is not None
    assert events[-1] == ("case.closed", {"from": "resolved", "to": "closed", "reason": "customer happy",
                                          "followups_cancelled": None})
    page = agent.get(url).get_data(as_text=True)
    assert "Case closed." in page and 'id="close"' not in page
    post(agent, f"{url}/close")  # twice: refused, nothing written
    assert len(_state(hub, case_id)[1]) == len(events)
    assert "This case is already closed." in agent.get(url).get_data(as_text=True)

    post(agent, f"{url}/reopen")
    case, events, _ = _state(hub, case_id)
    assert (case.status, case.closed_at, events[-1][0]) == ("assigned", None, "case.reopened")
    assert 'id="resolve"' in agent.get(url).get_data(as_text=True)


def test_the_ui_closes_an_open_case_without_callback_and_cancels_the_push(make_app):
    app, rec = recording_app(make_app)
    hub = app.extensions["hub"]
    client = app.test_client()
    add_user(hub, "alice", "agent")
    login(client, "alice")
    case_id = _case(hub, "new", followup="pending")
    assert "Close without callback" in client.get(f"/cases/{case_id}").get_data(as_text=True)
    post(client, f"/cases/{case_id}/close", {"reason": "spam"})
    case, events, followups = _state(hub, case_id)
    assert (case.status, followups) == ("closed", ["dead"])
    assert events[-1][1]["followups_cancelled"] and events[-1][1]["reason"] == "spam"
    assert dispatch(hub, ignore_schedule=True).claimed == 0 and rec.pushed == []
