"""Prometheus metrics (prometheus-client): counters the engine moves, gauges read at scrape.

Counters and histograms live in this module's :data:`REGISTRY`; any module
imports them and moves them (``ITEMS_INGESTED.labels(source).inc(n)``).
Queue-like figures (outbox depth and age, raw events pending) are not kept
in memory: :class:`DatabaseCollector` asks the database at scrape time, so
every node reports the same truth and a restart loses nothing.

Several processes (gunicorn workers, Celery workers): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, the same for every
process of a node, before they start; prometheus-client then keeps the
values in files there and :func:`render` adds them up (docs/deploying.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

if TYPE_CHECKING:
    import flask

    from hub.engine.context import Hub
    from hub.sdk.schema import PushResult

log = logging.getLogger(__name__)

#: The hub's own metrics (not prometheus-client's process defaults, which multiprocess mode cannot add up).
REGISTRY = CollectorRegistry(auto_describe=True)

ITEMS_INGESTED = Counter("hub_items_ingested", "Feedback items stored (duplicates not counted), per source instance",
                         ["source"], registry=REGISTRY)
WEBHOOK_SECONDS = Histogram("hub_webhook_seconds", "Time to answer a webhook delivery, per instance",
                            ["instance"], registry=REGISTRY,
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
CRM_ERRORS = Counter("hub_crm_errors", "Follow-up pushes and CRM-sync changes a sink did not accept, per sink and kind "
                     "(outage: retried; rejected: the task itself was refused)", ["sink", "kind"], registry=REGISTRY)
BUDGET_WAITS = Counter("hub_rate_budget_waits", "Requests that waited for their rate budget, per client",
                       ["client"], registry=REGISTRY)
BUDGET_WAIT_SECONDS = Counter("hub_rate_budget_wait_seconds", "Seconds requests waited for their rate budget, "
                              "per client", ["client"], registry=REGISTRY)

#: Label of webhook deliveries to a name that is no configured instance (no label per made-up URL).
UNKNOWN = "unknown"


def count_ingested(source: str, n: int) -> None:
    if n:
        ITEMS_INGESTED.labels(source).inc(n)


def count_push_errors(sink: str, results: Iterable[PushResult]) -> None:
    for res in results:
        if not res.ok:
            CRM_ERRORS.labels(sink, "outage" if res.retriable else "rejected").inc()


def budget_waited(client: str, seconds: float) -> None:
    """The hook :class:`hub.sdk.http.HttpClient` calls after a request waited for its budget."""
    BUDGET_WAITS.labels(client or UNKNOWN).inc()
    BUDGET_WAIT_SECONDS.labels(client or UNKNOWN).inc(seconds)


def install_budget_hook() -> None:
    from hub.sdk import http

    if budget_waited not in http.BUDGET_WAIT_HOOKS:
        http.BUDGET_WAIT_HOOKS.append(budget_waited)


class DatabaseCollector:
    """Gauges computed at scrape from the database: the outbox and the raw events waiting."""

    def __init__(self, hub: Hub):
        self.hub = hub

    def describe(self):
        return []  # collected fresh each scrape; nothing to check at registration

    def collect(self):
        from hub.storage import models as m

        depth = GaugeMetricFamily("hub_outbox_depth", "Follow-ups waiting to be pushed (pending, failed, sending), "
                                  "per sink", labels=["sink"])
        age = GaugeMetricFamily("hub_outbox_oldest_age_seconds", "Age of the oldest follow-up waiting to be pushed, "
                                "per sink", labels=["sink"])
        raw = GaugeMetricFamily("hub_raw_events_pending", "Raw events stored but not processed yet, per source",
                                labels=["source"])
        up = GaugeMetricFamily("hub_database_up", "1 when the scrape could read the database")
        now = self.hub.clock.utcnow().replace(tzinfo=None)
        F = m.Followup
        try:
            with self.hub.db.ReadSession() as s:
                waiting = s.execute(select(F.sink, func.count(), func.min(F.created_at))
                                    .where(F.status.in_(("pending", "failed", "sending")))
                                    .group_by(F.sink)).all()
                pending = s.execute(select(m.RawEvent.source, func.count())
                                    .where(m.RawEvent.status == "pending").group_by(m.RawEvent.source)).all()
        except Exception as exc:  # a scrape must answer: say the database is down rather than fail
            log.warning("metrics: database unreadable (%s)", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        for sink, n, oldest in waiting:
            depth.add_metric([sink], n)
            age.add_metric([sink], max(0.0, (now - _naive(oldest)).total_seconds()) if oldest else 0.0)
        for source, n in pending:
            raw.add_metric([source], n)
        up.add_metric([], 1)
        yield from (depth, age, raw, up)


def _naive(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=None) if value.tzinfo else value


class _Forward:
    """This process's own values (single-process mode)."""

    def describe(self):
        return []

    def collect(self):
        return REGISTRY.collect()


def render(hub: Hub) -> tuple[bytes, str]:
    """The exposition text of every process's counters plus the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward())
    registry.register(DatabaseCollector(hub))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def init_app(app: flask.Flask) -> None:
    """Time webhook deliveries (per configured instance) and count budget waits."""
    import flask as _flask

    install_budget_hook()

    @app.before_request
    def _start_timer():
        if _flask.request.blueprint == "webhooks":
            _flask.g.hub_webhook_started = time.perf_counter()

    @app.after_request
    def _observe(resp):
        started = _flask.g.pop("hub_webhook_started", None)
        if started is not None:
            name = (_flask.request.view_args or {}).get("instance", "")
            registry = app.extensions["hub"].registry
            known = name in registry.sources or name in registry.sinks
            WEBHOOK_SECONDS.labels(name if known else UNKNOWN).observe(time.perf_counter() - started)
        return resp
