"""Completion: a callback happened.  Follow-ups close when the CRM says its
task is done (periodic sync, or a sink's webhook) or when staff record it in
the hub; the case moves to ``contacted`` and ``hub_followup_completed`` fires
once committed, which is where closing the loop hangs on.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.engine import crm_sync
from hub.engine.cases import advance
from hub.sdk.http import HttpError
from hub.sdk.schema import Completion
from hub.storage import models as m
from hub.storage.database import after_commit
from hub.storage.rows import followup_views

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)


def complete_followups(hub: Hub, completions: list[Completion], actor: str = "sync", *, in_crm: bool = False,
                       session: Session | None = None) -> int:
    """Mark follow-ups done and their cases ``contacted``; fires
    ``hub_followup_completed`` after commit.  Already-done ones are skipped.

    ``in_crm``: the CRM reported them done; otherwise (done in the hub) their
    CRM tasks are completed at the next dispatch.  ``session``: work in the
    caller's transaction (committed by the caller) instead of a new one.
    """
    if not completions:
        return 0
    now = hub.clock.utcnow()
    done: list[tuple[int, str | None]] = []
    with nullcontext(session) if session is not None else hub.db.session() as s:
        by_id = {c.followup_id: c for c in completions}
        rows = s.scalars(select(m.Followup).where(m.Followup.id.in_(list(by_id)), m.Followup.status != "done")).all()
        for row in rows:
            comp = by_id[row.id]
            row.status, row.completed_at = "done", comp.completed_at or now
            if in_crm:
                row.crm_status = crm_sync.COMPLETED
            else:
                crm_sync.mark(row, now)  # the CRM's task is completed too
            case = s.get(m.Case, row.case_id)
            detail = {"followup_id": row.id, "outcome": comp.outcome}
            if case is None:
                s.add(m.AuditEvent(at=now, actor=actor, action="followup.completed", case_id=row.case_id,
                                   detail=detail))
            elif advance(case, "contacted", actor=actor, now=now, action="followup.completed", **detail):
                # when the call happened, not when the hub heard of it
                case.contacted_at = comp.completed_at or now
                case.outcome = case.outcome or comp.outcome
            done.append((row.id, comp.outcome))
        s.flush()
        if done:
            views = {v.id: v for v in followup_views(s, list(rows), hub.case_url, hub.registry.identity_kinds)}
            after_commit(s, lambda: [hub.hook.hub_followup_completed(followup=views[i], outcome=o) for i, o in done])
    return len(done)


def sync_completions(hub: Hub, batch: int = 100) -> int:
    """Ask each sink which of its sent follow-ups are completed; close them."""
    total = 0
    for sink_name in hub.registry.sinks:
        sink = hub.registry.sink(sink_name)
        last_id = 0
        while True:
            with hub.db.Session() as s:
                rows = s.scalars(select(m.Followup).where(
                    m.Followup.sink == sink_name, m.Followup.status == "sent", m.Followup.id > last_id
                ).order_by(m.Followup.id).limit(batch)).all()
                if not rows:
                    break
                last_id = rows[-1].id
                views = followup_views(s, list(rows), hub.case_url, hub.registry.identity_kinds)
            try:
                if crm_sync.reads_task_states(sink):
                    # One read tells completions and changes made in the CRM (rescheduled, reassigned).
                    states = sink.task_states(views)
                    completions = [Completion(st.followup_id, completed_at=st.completed_at)
                                   for st in states if st.completed]
                    crm_sync.apply_states(hub, sink_name, [st for st in states if not st.completed])
                else:
                    completions = sink.sync_completed(views)
            except HttpError as exc:
                log.warning("completion sync of %s failed: %s", sink_name, exc)
                break
            total += complete_followups(hub, completions, actor=f"sink:{sink_name}", in_crm=True)
    return total
