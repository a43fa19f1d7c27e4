"""One pass of the loop's outbox, run by every dispatch (scheduler and ``feedback-hub dispatch``):
plan what is due (re-surveys, review requests), send what may go, note what was answered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.engine.loop import invitations, promoters, resurvey

if TYPE_CHECKING:
    from hub.engine.context import Hub


def run_invitations(hub: Hub) -> invitations.InvitationReport:
    now = hub.clock.utcnow()
    resurvey.plan_resurveys(hub, now)
    promoters.plan_review_requests(hub, now)
    report = invitations.send_due(hub)
    invitations.mark_answered(hub, hub.clock.utcnow())
    return report
