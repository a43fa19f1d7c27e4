"""The scheduler: periodic pulls, dispatch, completion sync, replays.

Exactly one scheduler may run per database: each would otherwise run every
job.  It holds a lease row (``scheduler_lease``) that it renews; a second
scheduler on the same database refuses to start while the lease is live, and
takes over once a crashed holder's lease expired.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from hub.engine.completion import sync_completions
from hub.engine.dispatch import dispatch
from hub.engine.privacy import deliver_requests
from hub.engine.pulls import pull
from hub.engine.raw_events import process_raw_events
from hub.engine.retention import run_retention
from hub.engine.sla import sweep as sla_sweep
from hub.storage import models as m

if TYPE_CHECKING:
    from hub.engine.context import Hub

log = logging.getLogger(__name__)
LEASE = "scheduler"


class SchedulerBusy(RuntimeError):
    """Another scheduler holds this database's lease."""


def acquire_lease(hub: Hub, holder: str, seconds: float) -> None:
    now = hub.clock.utcnow()
    with hub.db.session() as s:
        q = select(m.SchedulerLease).where(m.SchedulerLease.name == LEASE)
        if hub.db.dialect == "postgresql":
            q = q.with_for_update()
        row = s.scalars(q).first()
        if row is None:
            s.add(m.SchedulerLease(name=LEASE, holder=holder, expires_at=now + dt.timedelta(seconds=seconds)))
        elif row.holder != holder and row.expires_at > now:
            raise SchedulerBusy(
                f"another scheduler ({row.holder}) holds this database until {row.expires_at:%H:%M:%S} UTC; "
                "run one scheduler per database")
        else:
            row.holder, row.expires_at = holder, now + dt.timedelta(seconds=seconds)


def release_lease(hub: Hub, holder: str) -> None:
    with hub.db.session() as s:
        row = s.get(m.SchedulerLease, LEASE)
        if row is not None and row.holder == holder:
            s.delete(row)


def replay_pending(hub: Hub, older_than_seconds: float = 120) -> int:
    """Process raw events still pending (e.g. the process died after the 2xx)."""
    cutoff = hub.clock.utcnow() - dt.timedelta(seconds=older_than_seconds)
    with hub.db.Session() as s:
        rows = s.execute(select(m.RawEvent.source, m.RawEvent.id).where(
            m.RawEvent.status == "pending", m.RawEvent.received_at <= cutoff).limit(5000)).all()
    by_source: dict[str, list[int]] = {}
    for source, rid in rows:
        if source in hub.registry.sources:
            by_source.setdefault(source, []).append(rid)
    for source, ids in by_source.items():
        process_raw_events(hub, source, ids)
    return sum(map(len, by_source.values()))


class HubScheduler:
    def __init__(self, hub: Hub, extra_jobs: list | None = None):
        self.hub = hub
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.cfg = hub.config.get("scheduler", {})
        self.lease_seconds = float(self.cfg.get("lease_seconds", 30))
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
        self.extra_jobs = extra_jobs or []

    def _guard(self, fn, *args):
        def run():
            try:
                if getattr(self.hub.executor, "distributed", False) and self.hub.executor.knows(fn):
                    self.hub.executor.submit(fn, *args)  # executor = "celery": a worker runs it, not this process
                else:
                    fn(*args)
            except Exception:
                log.exception("scheduled job %s%s failed", getattr(fn, "__name__", fn), args)
        return run

    def _renew(self):
        try:
            acquire_lease(self.hub, self.holder, self.lease_seconds)
        except SchedulerBusy:
            log.error("lost the scheduler lease to another process; stopping")
            self.scheduler.shutdown(wait=False)

    def start(self) -> None:
        acquire_lease(self.hub, self.holder, self.lease_seconds)  # raises SchedulerBusy
        sch = self.scheduler
        sch.add_job(self._renew, "interval", seconds=max(1.0, self.lease_seconds / 3), id="lease", name="lease")
        default_every = float(self.cfg.get("pull_interval_seconds", 60))
        for name, inst in self.hub.registry.sources.items():
            if not self.hub.registry.connector(name).streams():
                continue  # webhook-only instance
            every = float(inst.settings.get("schedule_seconds") or default_every)
            sch.add_job(self._guard(pull, self.hub, name), "interval", seconds=every, id=f"pull:{name}", name=f"pull:{name}",
                        next_run_time=dt.datetime.now(dt.UTC))
        sch.add_job(self._guard(dispatch, self.hub), "interval",
                    seconds=float(self.cfg.get("dispatch_interval_seconds", 15)), id="dispatch", name="dispatch")
        sch.add_job(self._guard(sync_completions, self.hub), "interval",
                    seconds=float(self.cfg.get("sync_interval_seconds", 120)), id="sync", name="sync")
        sch.add_job(self._guard(replay_pending, self.hub), "interval", seconds=60, id="replay", name="replay")
        # Breached SLAs are escalated within a minute (hub.engine.sla).
        sch.add_job(self._guard(sla_sweep, self.hub), "interval", seconds=60, id="sla", name="sla")
        from hub.engine.crm_identity import lookup_customers

        # Customers looked up in the CRM by e-mail or phone (sinks that can): ids and handles linked.
        sch.add_job(self._guard(lookup_customers, self.hub), "interval",
                    seconds=float(self.cfg.get("sync_interval_seconds", 120)), id="identity", name="identity")
        # CRM erasures after a GDPR erase wait out outages like follow-ups do.
        sch.add_job(self._guard(deliver_requests, self.hub), "interval",
                    seconds=float(self.cfg.get("dispatch_interval_seconds", 15)), id="privacy", name="privacy")
        from hub.engine.loop.crm_facts import sync_customer_facts

        # Renewals, churn and closed deals from CRMs that expose them (outcomes, proactive invitations).
        sch.add_job(self._guard(sync_customer_facts, self.hub), "interval",
                    seconds=float((self.hub.config.get("crm_facts") or {}).get("interval_seconds", 600)),
                    id="crm_facts", name="crm_facts")
        retention_hours = float((self.hub.config.get("retention") or {}).get("interval_hours", 24))
        sch.add_job(self._guard(run_retention, self.hub), "interval", seconds=retention_hours * 3600,
                    id="retention", name="retention")
        for job_id, fn, seconds in self.extra_jobs:
            sch.add_job(self._guard(fn), "interval", seconds=seconds, id=job_id, name=job_id, next_run_time=dt.datetime.now(dt.UTC))
        sch.start()
        log.info("scheduler %s started with jobs: %s", self.holder, ", ".join(j.id for j in sch.get_jobs()))

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        release_lease(self.hub, self.holder)
