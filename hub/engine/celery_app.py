"""Celery as the distributed executor (``executor = "celery"``, docs/celery.md).

The hub's jobs stay plain functions (``pull(hub, name)``,
``process_raw_events(hub, source, ids)``, ``dispatch(hub)`` ...).  A web node
or the scheduler calls ``hub.executor.submit(job, hub, *args)``; this module
turns that into ONE generic Celery task, ``hub.job``, that carries the job's
dotted name and its plain JSON arguments.  The hub itself never travels: the
worker (``feedback-hub worker``) runs the job with its own hub, built from the
same configuration, inside the Flask app context.

Only jobs on the allow-list (:data:`JOBS`, extended by :func:`register_job`)
are sent or run: a message naming anything else is refused on both sides, so
the broker can never be used to call an arbitrary function.

Delivery is at least once: ``acks_late`` acknowledges a message after the job
ran, ``task_reject_on_worker_lost`` puts it back when the worker process died
under it, and on Redis an unacknowledged message goes to another worker after
``[celery] visibility_timeout_seconds``.  So every job here must be
idempotent when run twice: raw events are taken only while ``pending``,
outbox rows (follow-ups, invitations, alerts, privacy requests) are claimed
before they are sent, pulls resume from their stored cursor and items are
unique per (source, external id).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.exceptions import Reject
from kombu import Queue
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import text

if TYPE_CHECKING:
    import flask

log = logging.getLogger(__name__)

TASK = "hub.job"
KINDS = ("pull", "ingest", "dispatch", "default")

#: The jobs a broker message may name (``module:function``) and the kind of
#: work (queue) each belongs to.  Pulls wait on vendors, ingest on scoring,
#: dispatch on the CRM: separate queues let a site give each its own workers.
JOBS: dict[str, str] = {
    "hub.engine.pulls:pull": "pull",
    "hub.engine.raw_events:process_raw_events": "ingest",
    "hub.engine.scheduler:replay_pending": "ingest",
    "hub.engine.dispatch:dispatch": "dispatch",
    "hub.engine.privacy:deliver_requests": "dispatch",
    "hub.engine.crm_sync:push_changes": "dispatch",
    "hub.engine.crm_sync:pull_changes": "default",
    "hub.engine.completion:sync_completions": "default",
    "hub.engine.sla:sweep": "default",
    "hub.engine.crm_identity:lookup_customers": "default",
    "hub.engine.loop.crm_facts:sync_customer_facts": "default",
    "hub.engine.retention:run_retention": "default",
}


def _sender() -> str:
    """Who queues a job (host:pid, taken per call: gunicorn and prefork fork after import)."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: Jobs of which one copy at a time may run, per arguments (``pull`` of one
#: source): what APScheduler's ``max_instances = 1`` gave the in-process
#: scheduler, across workers.  A copy queued while another still runs (a pull
#: slower than its interval, a Redis redelivery after the visibility timeout)
#: is skipped.  Dispatch and webhook processing are left out: they claim rows,
#: so several run side by side on purpose.
SINGLE: set[str] = {
    "hub.engine.pulls:pull",
    "hub.engine.scheduler:replay_pending",
    "hub.engine.crm_sync:pull_changes",
    "hub.engine.completion:sync_completions",
    "hub.engine.sla:sweep",
    "hub.engine.crm_identity:lookup_customers",
    "hub.engine.loop.crm_facts:sync_customer_facts",
    "hub.engine.retention:run_retention",
}


class UnknownJob(ValueError):
    """A job that is not on the allow-list (:data:`JOBS`)."""


def job_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def register_job(fn: Callable[..., Any] | str, kind: str = "default", *, single: bool = False) -> str:
    """Allow one more job (a plugin's): ``fn`` is a module-level function taking the hub first;
    ``single``: one copy at a time per arguments (:data:`SINGLE`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    name = fn if isinstance(fn, str) else job_name(fn)
    module, _, attr = name.partition(":")
    if not module or not attr or "." in attr or "<" in name:
        raise ValueError(f"{name!r} is not a module-level function (module:function)")
    JOBS[name] = kind
    if single:
        SINGLE.add(name)
    return name


@contextmanager
def only_one(hub: Any, name: str, args: list) -> Iterator[bool]:
    """Whether this run of a :data:`SINGLE` job may go ahead: no other holds its lock.

    PostgreSQL: a session advisory lock on a connection of its own, held for
    the run; a worker that dies loses its connection and with it the lock, so
    the redelivered copy runs.  SQLite is not guarded: a hub on SQLite is one
    machine, where an overlapping copy is wasteful but safe (items are unique
    per external id, cursors move only with committed rows).
    """
    if name not in SINGLE or hub.db.dialect != "postgresql":
        yield True
        return
    digest = hashlib.blake2b(f"hub.job:{name}:{json.dumps(args)}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    with hub.db.engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        conn.commit()  # no transaction left open for the run's length
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


def resolve(name: str) -> Callable[..., Any]:
    """The function an allowed job name stands for; :class:`UnknownJob` otherwise."""
    if not isinstance(name, str) or name not in JOBS:
        raise UnknownJob(f"job {name!r} is not one the hub runs (allowed: {', '.join(sorted(JOBS))})")
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def masked(url: str) -> str:
    """The broker URL with its password replaced, for logs and errors."""
    return maybe_sanitize_url(url, mask="***")


def queue_name(prefix: str, kind: str) -> str:
    return f"{prefix}.{kind}"


def make_celery(cfg: Any) -> Celery:
    """A Celery app built from the hub configuration (never the process-wide default app)."""
    from hub.config import resolve_secret

    broker = resolve_secret(cfg["broker_url"], cfg, "broker_url")
    ccfg = cfg.get("celery") or {}
    prefix = ccfg.get("queue_prefix", "hub")
    app = Celery("feedback_hub", set_as_current=False)
    app.conf.update(
        broker_url=broker,
        # JSON only: a pickle message from the broker would run code.
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True,  # callers need to know a job was queued, not its value
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds one message beyond those it runs
        broker_transport_options={"visibility_timeout": float(ccfg.get("visibility_timeout_seconds", 3600))},
        task_queues=[Queue(queue_name(prefix, k)) for k in KINDS],
        task_default_queue=queue_name(prefix, "default"),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=4,
        # A broker outage at submit time is retried briefly; the raw event or
        # outbox row is already stored, so a replay picks it up afterwards.
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
        worker_hijack_root_logger=False,  # keep the hub's log format (and JSON logs when configured)
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    app.hub_queue_prefix = prefix
    app.hub_flask_app = None  # set by CeleryExecutor.bind: the app whose hub runs the jobs
    app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True)(_run_job)
    return app


def _run_job(task, name: str, args: list, kwargs: dict) -> None:
    """The one task: run the named job with this worker's hub, in its app context."""
    try:
        fn = resolve(name)
    except UnknownJob as exc:
        log.error("refused a task for %s", exc)
        raise Reject(str(exc), requeue=False) from None
    flask_app = task.app.hub_flask_app
    if flask_app is None:  # a worker that was never bound to a hub cannot run anything
        raise RuntimeError("this Celery app is not bound to a hub (start it with `feedback-hub worker`)")
    req = task.request
    from hub.engine.context import hub_of

    hub = hub_of(flask_app)
    with only_one(hub, name, args) as go:
        if not go:
            log.info("job %s %s already runs on another worker; this copy is skipped (task=%s)", name,
                     json.dumps(args)[:120], req.id)
            return
        with flask_app.app_context():
            fn(hub, *args, **(kwargs or {}))
    # One line per finished run, with who queued it and when: bench/soak.py
    # counts runs per task id (redeliveries) and per job and time slot.
    log.info("job done %s args=%s task=%s sender=%s sent_at=%s redelivered=%s", name,
             json.dumps(args)[:120], req.id, getattr(req, "hub_sender", None), getattr(req, "hub_sent_at", None),
             bool((req.delivery_info or {}).get("redelivered")))


class CeleryExecutor:
    """``hub.executor`` when ``executor = "celery"``: jobs go to the broker, a worker runs them."""

    distributed = True

    def __init__(self, cfg: Any):
        self.celery = make_celery(cfg)
        self.task = self.celery.tasks[TASK]
        self.broker = masked(self.celery.conf.broker_url)
        log.debug("executor: celery via %s (queues %s.*)", self.broker, self.celery.hub_queue_prefix)

    def bind(self, flask_app: flask.Flask) -> None:
        self.celery.hub_flask_app = flask_app

    def knows(self, fn: Callable[..., Any]) -> bool:
        return job_name(fn) in JOBS

    def queue_for(self, name: str) -> str:
        return queue_name(self.celery.hub_queue_prefix, JOBS[name])

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(hub, *args, **kwargs)``; the future holds the task id once the broker has it.

        Refuses (raises) a job off the allow-list and arguments that are not
        plain JSON.  A broker that cannot be reached is logged and recorded on
        the future, like a failed job in the thread pool: callers do not wait.
        """
        from hub.engine.context import Hub

        name = job_name(fn)
        resolve(name)
        if not args or not isinstance(args[0], Hub):
            raise TypeError(f"{name}: submit(job, hub, *args): the hub comes first (the worker uses its own)")
        plain = list(args[1:])
        try:
            json.dumps([plain, kwargs], allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: arguments must be plain JSON to travel to a worker ({exc})") from None
        fut: Future = Future()
        try:
            sent = self.task.apply_async(args=(name, plain, kwargs), queue=self.queue_for(name),
                                         headers={"hub_sender": _sender(), "hub_sent_at": round(time.time(), 3)})
        except Exception as exc:  # noqa: BLE001 - an outage must not fail the request that stored the work
            log.error("could not queue job %s on %s: %s", name, self.broker, type(exc).__name__)
            fut.set_exception(exc)
            return fut
        log.debug("queued job %s task=%s", name, sent.id)
        fut.set_result(sent.id)
        return fut

    def shutdown(self, wait: bool = True) -> None:
        self.celery.close()  # the producer pool's broker connections


def worker_queues(cfg: Any, kinds: Iterable[str] | None = None) -> list[str]:
    ccfg = cfg.get("celery") or {}
    chosen = list(kinds or ccfg.get("queues") or KINDS)
    bad = [k for k in chosen if k not in KINDS]
    if bad:
        raise ValueError(f"unknown queue kind(s) {', '.join(bad)} (use {', '.join(KINDS)})")
    return [queue_name(ccfg.get("queue_prefix", "hub"), k) for k in chosen]


def run_worker(flask_app: flask.Flask, *, kinds: Iterable[str] | None = None, concurrency: int = 2,
               pool: str = "prefork", loglevel: str = "INFO") -> int:
    """Run a Celery worker for this hub until it is stopped (SIGTERM: warm shutdown)."""
    from celery.signals import worker_process_init

    from hub.engine.context import hub_of

    hub = hub_of(flask_app)
    executor = hub.executor
    if not isinstance(executor, CeleryExecutor):
        raise RuntimeError('run_worker needs executor = "celery"')
    executor.bind(flask_app)

    def _after_fork(**_):
        # A forked pool process must not share the parent's database
        # connections: drop them (without closing the parent's sockets).
        hub.db.engine.dispose(close=False)

    worker_process_init.connect(_after_fork, weak=False)
    queues = worker_queues(hub.config, kinds)
    log.info("celery worker on %s, queues %s, %s x %d", executor.broker, ",".join(queues), pool, concurrency)
    worker = executor.celery.Worker(
        queues=queues, concurrency=concurrency, pool=pool, loglevel=loglevel,
        hostname=f"hub-{os.getpid()}@{socket.gethostname()}",
        without_gossip=True, without_mingle=True, without_heartbeat=True, optimization="fair", quiet=True,
    )
    worker.start()
    return worker.exitcode or 0
