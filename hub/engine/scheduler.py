"""The scheduler: periodic pulls, dispatch, completion sync, replays.

Exactly one scheduler may run jobs per database: each would otherwise run
every job.  It is elected (:mod:`hub.engine.leader`): a PostgreSQL advisory
lock, or on SQLite a lease row (``scheduler_lease``) that it renews.
:meth:`HubScheduler.start` tries once and raises :class:`SchedulerBusy`;
:meth:`HubScheduler.serve` (``feedback-hub scheduler``) waits as a standby
until it leads, stops its jobs the moment it loses leadership and campaigns
again, and releases at once when told to stop (SIGTERM).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from hub.engine.completion import sync_completions
from hub.engine.dispatch import dispatch
from hub.engine.leader import Elector, make_elector
from hub.engine.privacy import deliver_requests
from hub.engine.pulls import pull
from hub.engine.raw_events import process_raw_events
from hub.engine.retention import run_retention
from hub.engine.sla import sweep as sla_sweep
from hub.engine.waiting import wait_unless, wait_until
from hub.storage import models as m
from hub.storage.search import index_new_items, refresh_statistics

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


def statistics_job(hub: Hub) -> None:
    """Planner statistics kept current (``refresh_statistics``: PRAGMA optimize / ANALYZE),
    and rows stored outside an ingest batch (merges, CRM look-ups) taken into
    SQLite's text index (``index_new_items``)."""
    try:
        with hub.db.session() as session:
            index_new_items(session)
        refresh_statistics(hub.db.engine)
    except Exception:  # a busy database waits for the next run; the job must not die
        log.exception("refreshing the planner statistics failed")


class HubScheduler:
    # Standby rounds a leader that lost its lock waits before campaigning again.
    LOST_BACKOFF_ROUNDS = 3

    def __init__(self, hub: Hub, extra_jobs: list | None = None, elector: Elector | None = None):
        self.hub = hub
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.cfg = hub.config.get("scheduler", {})
        self.lease_seconds = float(self.cfg.get("lease_seconds", 30))
        #: How often the leader proves it still leads, and a standby asks again.
        self.check_seconds = float(self.cfg.get("leader_check_seconds", 2))
        self.retry_seconds = float(self.cfg.get("standby_retry_seconds", 5))
        self.elector: Elector = elector or make_elector(hub, self.holder, self.lease_seconds)
        self.scheduler = self._new_scheduler()
        self.extra_jobs = extra_jobs or []
        self.role = "starting"  # starting | standby | leader | stopped (health checks read it)
        self.heartbeat = 0.0  # time.monotonic() of the last election round: a stuck loop shows in health
        self._lost = threading.Event()  # set by the watcher when leadership is gone
        self._halt = threading.Event()  # set by shutdown(): the watcher ends
        self._elect_lock = threading.Lock()  # the elector's connection is used by one thread at a time
        self._idle = threading.Condition()
        self._running = 0  # job runs under way

    @staticmethod
    def _new_scheduler() -> BackgroundScheduler:
        return BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})

    def _guard(self, fn, *args):
        def run():
            try:
                if getattr(self.hub.executor, "distributed", False) and self.hub.executor.knows(fn):
                    self.hub.executor.submit(fn, *args)  # executor = "celery": a worker runs it, not this process
                else:
                    fn(*args)
            except Exception:
                log.exception("scheduled job %s%s failed", getattr(fn, "__name__", fn), args)
        return self._tracked(run)

    def _tracked(self, run):
        """Count runs under way, so a stop with a grace period can wait for them."""
        def tracked():
            with self._idle:
                self._running += 1
            try:
                run()
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()
        return tracked

    def start(self) -> None:
        """Lead now or raise :class:`SchedulerBusy` (one attempt; ``serve`` waits instead)."""
        self.heartbeat = time.monotonic()
        with self._elect_lock:
            won = self.elector.acquire()
        if not won:
            self.role = "standby"
            raise SchedulerBusy(self.elector.busy_reason() + "; run one scheduler per database")
        self._lost.clear()
        self._halt.clear()
        try:
            self.scheduler = self._new_scheduler()
            self._add_jobs(self.scheduler)
            self.scheduler.start()
        except BaseException:
            self.shutdown()
            raise
        self.role = "leader"
        log.info("scheduler %s leads; jobs: %s", self.holder, ", ".join(j.id for j in self.scheduler.get_jobs()))
        threading.Thread(target=self._watch, name="leader-watch", daemon=True).start()

    def _watch(self) -> None:
        while not wait_unless(self._halt, self.check_seconds):
            self.heartbeat = time.monotonic()
            with self._elect_lock:
                if self._halt.is_set():
                    return
                kept = self.elector.keep()
            if not kept:
                log.error("scheduler %s lost leadership; its jobs stop now", self.holder)
                self._stop_jobs()
                self.role = "standby"
                self._lost.set()
                return

    def runs_under_way(self) -> int:
        with self._idle:
            return self._running

    def _stop_jobs(self) -> None:
        # No new runs from here on; a run already under way finishes (the jobs
        # are idempotent: outbox and raw-event claims keep them from doubling).
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def serve(self, stop: threading.Event, grace_seconds: float = 0.0) -> None:
        """Campaign until ``stop``: wait as a standby, lead, and after a loss campaign again."""
        waiting_since = None
        try:
            while not stop.is_set():
                try:
                    self.start()
                except SchedulerBusy as exc:
                    if waiting_since is None or time.monotonic() - waiting_since > 60:
                        log.info("scheduler %s waiting for leadership (%s); retrying every %gs", self.holder, exc,
                                 self.retry_seconds)
                        waiting_since = time.monotonic()
                    wait_unless(stop, self.retry_seconds)
                    continue
                waiting_since = None
                while not stop.is_set() and not self._lost.is_set():
                    wait_unless(stop, 0.2)
                if self._lost.is_set():
                    # The node whose connection just failed is the suspect one: it sits out
                    # a few standby rounds, so a waiting standby takes over instead of the
                    # loser winning the lock straight back and flapping.
                    wait_unless(stop, self.LOST_BACKOFF_ROUNDS * self.retry_seconds)
        finally:
            self.shutdown(grace_seconds)

    def _add_jobs(self, sch: BackgroundScheduler) -> None:
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
        # Planner statistics kept current (hub.storage.search: PRAGMA optimize / ANALYZE).
        sch.add_job(self._guard(statistics_job, self.hub), "interval", id="statistics", name="statistics",
                    seconds=float(self.cfg.get("statistics_interval_seconds", 3600)))
        for job_id, fn, seconds in self.extra_jobs:
            sch.add_job(self._guard(fn), "interval", seconds=seconds, id=job_id, name=job_id, next_run_time=dt.datetime.now(dt.UTC))

    def shutdown(self, grace_seconds: float = 0.0) -> None:
        """Stop the jobs and give up leadership (a standby takes over within its retry).

        ``grace_seconds``: first let runs under way finish for up to this long
        (``run`` does, its web server answers them meanwhile); the default
        gives leadership up at once (SIGTERM to ``feedback-hub scheduler``).
        """
        self._halt.set()
        self._stop_jobs()
        if grace_seconds > 0:
            wait_until(lambda: self._running == 0, grace_seconds)
        with self._elect_lock:
            self.elector.release()
        self.role = "stopped"
