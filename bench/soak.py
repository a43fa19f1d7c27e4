"""The multi-process soak (``make soak``): the production topology for D minutes, with kill -9 midway.

Topology, all real processes on this machine:

* PostgreSQL (a database of its own, created and dropped here) and Redis (the Celery broker);
* 2 web nodes: ``gunicorn 'hub:create_app()'`` (2 processes each);
* 2 Celery workers: ``feedback-hub worker`` (prefork, concurrency 2);
* 2 schedulers: ``feedback-hub scheduler`` (one leads, the other waits);
* the Typeform and HubSpot emulators, served over HTTP by this script.

Load: new Typeform answers at ``--rate`` per second.  Most are delivered as
signed webhooks to a random web node (re-sent until a 2xx, as Typeform does;
a quarter also a second time to the other node); one in ten is never
delivered and must arrive through the scheduled pulls.  Detractors become
cases and callbacks that the dispatcher pushes to the HubSpot emulator.

Midway one worker (its whole process group) and the leading scheduler are
killed with SIGKILL.  After the load a settle phase lets the backlog drain
(the killed worker's unacknowledged task comes back after the Redis
visibility timeout, set to 60 s here).  Then it prints:

* deliveries accepted / items for them / duplicate items / lost;
* answers only pulled / items for them;
* CRM tasks in the emulator vs follow-ups sent: duplicates and lost;
* duplicate job runs: a task (message) run twice, a periodic job queued twice
  within half its interval by one scheduler, or by two schedulers at once;
* scheduler failover time: SIGKILL of the leader -> the standby leads / queues its first job.

Exit status 1 when a figure is off (a duplicate, a loss, failover >= 30 s).
Run: ``python bench/soak.py --minutes 2`` (``make soak`` runs 10).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import flask
import requests
from sqlalchemy import create_engine, func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.sdk import Clock  # noqa: E402
from hub.sdk.testing import LiveServer  # noqa: E402
from hub.storage import models as m  # noqa: E402
from hub.storage.migrate import upgrade  # noqa: E402
from plugins.crm_hubspot.content import find_marker  # noqa: E402
from plugins.crm_hubspot.emulator import HubSpotState, make_emulator_app  # noqa: E402
from plugins.survey_typeform import TypeformEmulator  # noqa: E402

BIN = Path(sys.executable).parent
HUBSPOT_TOKEN = "pat-soak"
TF_TOKEN = "tf-soak"
TF_SECRET = "whsec-soak"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
INTERVALS = {"pull": 10.0, "dispatch": 5.0, "sync": 20.0}
VISIBILITY_TIMEOUT = 60
JOB_DONE = re.compile(r"job done (\S+) args=(.*) task=(\S+) sender=(\S+) sent_at=(\S+) redelivered=(\S+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml(cfg: dict, prefix: str = "") -> str:
    flat = [f"{k} = {json.dumps(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    tables = [toml(v, f"{prefix}{k}.") for k, v in cfg.items() if isinstance(v, dict)]
    return (f"[{prefix[:-1]}]\n" if prefix else "") + "\n".join(flat) + "\n" + "".join(tables)


class Proc:
    """One process of the topology, its log in the work directory."""

    def __init__(self, name: str, argv: list[str], env: dict, workdir: Path):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.log = self.log_path.open("w")
        # A session of its own: kill -9 reaches the process group (a worker's prefork children too).
        self.p = subprocess.Popen(argv, env=env, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.killed_at: float | None = None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        self.killed_at = time.time()
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


class Soak:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hub-soak-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        self.dbname = f"hub_celery_soak_{tag}"
        self.db_url = f"{PG}/{self.dbname}"
        self.prefix = f"soak-{tag}"
        self.procs: list[Proc] = []
        self.accepted: set[str] = set()  # tokens with at least one 2xx delivery
        self.deliveries = 0  # 2xx answers to deliveries (retries of one answer included)
        self.pull_only: set[str] = set()
        self.lock = threading.Lock()
        self.notes: list[str] = []

    # -- set-up ------------------------------------------------------------------
    def start_vendors(self) -> None:
        clock = Clock()
        self.portal = HubSpotState(clock=clock, token=HUBSPOT_TOKEN)
        if self.args.slow_crm:  # a CRM that answers late: a dispatch task is in flight when its worker dies
            self.portal.inject("timeout", count=10 ** 9, delay=self.args.slow_crm, path="batch/create")
        self.crm = LiveServer(make_emulator_app(self.portal))
        self.tf = TypeformEmulator(responses=5, step_seconds=600, token=TF_TOKEN, webhook_secret=TF_SECRET,
                                   clock=clock)
        tf_app = flask.Flask("soak-typeform")
        tf_app.register_blueprint(self.tf.blueprint())
        self.tf_server = LiveServer(tf_app)

    def create_database(self) -> None:
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", self.dbname], check=True)
        engine = create_engine(self.db_url)
        upgrade(engine)
        engine.dispose()
        self.engine = create_engine(self.db_url, pool_size=2)

    def site_file(self) -> Path:
        cfg = {
            "database_url": self.db_url, "executor": "celery", "broker_url": self.args.broker_url,
            "secret_key": "env:SOAK_SECRET_KEY", "public_url": "http://127.0.0.1:8000",
            "celery": {"queue_prefix": self.prefix, "visibility_timeout_seconds": VISIBILITY_TIMEOUT},
            "http": {"allowed_private_hosts": ["127.0.0.1"]},
            "scheduler": {"pull_interval_seconds": INTERVALS["pull"], "dispatch_interval_seconds": INTERVALS["dispatch"],
                          "sync_interval_seconds": INTERVALS["sync"]},
            "sources": {"nps": {"plugin": "survey_typeform", "form_id": self.tf.form_id, "token": TF_TOKEN,
                                "webhook_secret": TF_SECRET, "base_url": self.tf_server.url}},
            "sinks": {"hubspot": {"plugin": "crm_hubspot", "token": HUBSPOT_TOKEN, "base_url": self.crm.url,
                                  "timeout": [3, 2]}},
            "routing": {"followups": "hubspot", "unreachable": "local"},
            # A claim the killed worker held is free again within the settle phase.
            "dispatch": {"claim_timeout_seconds": 30},
        }
        path = self.workdir / "site.toml"
        path.write_text(toml(cfg))
        return path

    def env(self, site: Path) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_CONFIG=str(site), HUB_INSTANCE_PATH=str(self.workdir / "instance"), PYTHONUNBUFFERED="1",
                   SOAK_SECRET_KEY=uuid.uuid4().hex * 2)
        return env

    def start(self) -> None:
        self.start_vendors()
        self.create_database()
        env = self.env(self.site_file())
        hub_cli = [sys.executable, "-m", "hub.cli"]
        self.web_urls = []
        for i in range(2):
            port = free_port()
            self.web_urls.append(f"http://127.0.0.1:{port}")
            self.procs.append(Proc(f"web{i}", [str(BIN / "gunicorn"), "-w", "2", "--threads", "4", "-b",
                                               f"127.0.0.1:{port}", "--graceful-timeout", "10", "hub:create_app()"],
                                   env, self.workdir))
        self.workers = [Proc(f"worker{i}", [*hub_cli, "worker", "--concurrency", "2"], env, self.workdir)
                        for i in range(2)]
        self.schedulers = [Proc(f"scheduler{i}", [*hub_cli, "scheduler"], env, self.workdir) for i in range(2)]
        self.procs += self.workers + self.schedulers
        for url in self.web_urls:
            self.wait_until(lambda u=url: self._healthy(u), 60, f"web node {url} did not answer")
        self.wait_until(lambda: self.leader() is not None, 60, "no scheduler leads")

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            return requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_until(self, check, timeout: float, message: str) -> float:
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{message} (logs in {self.workdir})")
            time.sleep(0.2)
        return time.monotonic() - start

    def leader(self) -> Proc | None:
        """The scheduler that leads: alive, and its last election line says it leads."""
        for proc in self.schedulers:
            if proc.p.poll() is not None:
                continue
            lines = [ln for ln in proc.text().splitlines() if " leads" in ln or "waiting for leadership" in ln
                     or "started with jobs" in ln]
            if lines and "waiting" not in lines[-1]:
                return proc
        return None

    # -- load --------------------------------------------------------------------
    def deliver(self, token: str, url: str) -> None:
        for _ in range(200):  # Typeform re-sends until it gets a 2xx
            try:
                r = self.tf.deliver(f"{url}/webhooks/nps", token, timeout=30)
                if r.status_code < 300:
                    with self.lock:
                        self.accepted.add(token)
                        self.deliveries += 1
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.notes.append(f"delivery of {token} never acknowledged")

    def sender(self, stop: threading.Event, rng: random.Random) -> None:
        pause = 1.0 / self.args.rate
        while not stop.is_set():
            token = self.tf.add_response()
            if rng.random() < 0.1:
                with self.lock:
                    self.pull_only.add(token)
            else:
                first, second = rng.sample(self.web_urls, 2)
                self.deliver(token, first)
                if rng.random() < 0.25:
                    self.deliver(token, second)
            stop.wait(pause)

    def in_flight(self, worker: Proc) -> set[str]:
        log = worker.text()
        received = set(re.findall(r"Task hub\.job\[([0-9a-f-]+)\] received", log))
        return received - {hit.group(3) for hit in map(JOB_DONE.search, log.splitlines()) if hit}

    def kill_midway(self) -> dict:
        worker = random.choice(self.workers)
        # Strike while it holds a job (up to 30 s): that message must come back, and run once more.
        deadline = time.monotonic() + 30
        while not self.in_flight(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        leader = self.leader()
        worker.kill9()
        if leader is None:
            self.notes.append("no scheduler led at the kill")
            return {}
        leader.kill9()
        t0 = time.monotonic()
        survivor = next(p for p in self.schedulers if p is not leader)
        try:
            self.wait_until(lambda: self.leader() is survivor, 120, "the standby scheduler never led")
            took = time.monotonic() - t0
        except RuntimeError:
            took = float("inf")
        return {"worker": worker, "killed_worker": worker.name, "killed_scheduler": leader.name, "survivor": survivor,
                "leader_at": leader.killed_at, "failover_s": took}

    # -- settle and count ----------------------------------------------------------
    def items(self) -> Counter:
        with self.engine.connect() as c:
            return Counter(c.execute(select(m.FeedbackItem.external_id).where(m.FeedbackItem.source == "nps")).scalars())

    def backlog(self) -> dict:
        with self.engine.connect() as c:
            pending = c.scalar(select(func.count()).select_from(m.RawEvent).where(m.RawEvent.status == "pending"))
            outbox = c.scalar(select(func.count()).select_from(m.Followup).where(
                m.Followup.status.in_(("pending", "sending", "failed"))))
        items = self.items()
        missing = sum(1 for t in self.accepted | self.pull_only if not items[t])
        return {"raw_pending": pending, "followups_waiting": outbox, "answers_missing": missing,
                "broker_messages_left": self.broker_left()}

    def broker_left(self) -> int:
        """Messages still queued, or taken but unacknowledged (Redis: the killed worker's come back late)."""
        left = sum(self._count(name) for name in self.queues())
        if self.args.broker_url.startswith("redis"):
            import redis

            left += redis.Redis.from_url(self.args.broker_url).zcard("unacked_index")
        return left

    def _count(self, name: str) -> int:
        from kombu import Connection

        with Connection(self.args.broker_url) as conn:
            try:
                return conn.default_channel.queue_declare(name, passive=True).message_count
            except Exception:  # noqa: BLE001 - a queue not declared yet holds nothing
                return 0

    def queues(self) -> list[str]:
        return [f"{self.prefix}.{kind}" for kind in ("pull", "ingest", "dispatch", "default")]

    def in_flight_at_kill(self, killed: Proc) -> dict:
        """Tasks the killed worker had received but not finished, and whether another worker ran them after."""
        lost_there = self.in_flight(killed)
        others = "".join(p.text() for p in self.workers if p is not killed)
        rerun = {t for t in lost_there if f"task={t} " in others}
        return {"in_flight_at_kill": len(lost_there), "in_flight_run_again": len(rerun)}

    def settle(self, timeout: float) -> dict:
        start = time.monotonic()
        while True:
            left = self.backlog()
            if not any(left.values()) or time.monotonic() - start > timeout:
                left["settle_s"] = round(time.monotonic() - start, 1)
                return left
            time.sleep(2)

    def crm_counts(self) -> dict:
        """Follow-ups for HubSpot vs the tasks the emulator holds, matched by the idempotency marker."""
        tasks = Counter(find_marker(t["properties"].get("hs_task_body")) for t in self.portal.all_tasks())
        with self.engine.connect() as c:
            rows = c.execute(select(m.Followup.idempotency_key, m.Followup.status).where(
                m.Followup.sink == "hubspot")).all()
        keys = {key for key, _ in rows}
        return {"followups": len(rows), "followups_sent": sum(1 for _, st in rows if st in ("sent", "done")),
                "crm_tasks": sum(tasks.values()),
                "crm_duplicates": sum(max(0, tasks[key] - 1) for key in keys),
                "crm_lost": sum(1 for key in keys if not tasks[key]),
                "crm_strays": sum(n for key, n in tasks.items() if key not in keys)}

    def job_runs(self) -> dict:
        """Runs per task id, and periodic jobs queued twice (one scheduler too soon, or two at once)."""
        runs = []
        for proc in self.workers:
            for line in proc.text().splitlines():
                hit = JOB_DONE.search(line)
                if hit:
                    name, args, task, sender, sent_at, _ = hit.groups()
                    runs.append((name, args, task, sender, float(sent_at) if sent_at != "None" else 0.0))
        per_task = Counter(r[2] for r in runs)
        sched_senders = {f"{socket.gethostname()}:{p.p.pid}" for p in self.schedulers}
        periodic = defaultdict(list)
        for name, args, _task, sender, sent_at in runs:
            if sender in sched_senders:
                periodic[(name, args)].append((sent_at, sender))
        too_soon = overlapping = 0
        spans: dict[str, list[float]] = {}
        for (name, _args), sends in periodic.items():
            sends.sort()
            every = INTERVALS["pull"] if "pull" in name and "pull_changes" not in name else (
                INTERVALS["dispatch"] if name.endswith((":dispatch", ":deliver_requests")) else INTERVALS["sync"])
            for (t1, s1), (t2, s2) in zip(sends, sends[1:], strict=False):
                if s1 == s2 and t2 - t1 < 0.5 * every:
                    too_soon += 1
            for t, s in sends:
                span = spans.setdefault(s, [t, t])
                span[0], span[1] = min(span[0], t), max(span[1], t)
        # Two schedulers queueing in the same stretch of time: both thought they led.
        ordered = sorted(spans.values())
        for (_, a1), (b0, _) in zip(ordered, ordered[1:], strict=False):
            if b0 < a1:
                overlapping += sum(1 for sends in periodic.values() for t, _ in sends if b0 <= t <= a1)
        return {"job_runs": len(runs), "tasks_run_twice": sum(1 for n in per_task.values() if n > 1),
                "periodic_too_soon": too_soon, "periodic_two_leaders": overlapping,
                "first_job_by": {s: round(v[0], 3) for s, v in spans.items()}}

    # -- the run -------------------------------------------------------------------
    def run(self) -> dict:
        self.start()
        stop = threading.Event()
        rng = random.Random(self.args.seed)
        sender = threading.Thread(target=self.sender, args=(stop, rng), daemon=True)
        began = time.monotonic()
        sender.start()
        total = self.args.minutes * 60
        time.sleep(total / 2)
        kill = self.kill_midway()
        time.sleep(max(0.0, total - (time.monotonic() - began)))
        stop.set()
        sender.join(timeout=120)
        left = self.settle(timeout=VISIBILITY_TIMEOUT + 180)
        items = self.items()
        accepted_items = sum(1 for t in self.accepted if items[t])
        crm = self.crm_counts()
        jobs = self.job_runs()
        flight = self.in_flight_at_kill(kill["worker"]) if kill.get("worker") else {}
        survivor = kill.get("survivor")
        first_new = jobs["first_job_by"].get(f"{socket.gethostname()}:{survivor.p.pid}") if survivor else None
        return {
            "minutes": self.args.minutes,
            "deliveries_accepted": len(self.accepted), "deliveries_2xx": self.deliveries,
            "items_for_accepted": accepted_items,
            "duplicate_items": sum(n - 1 for n in items.values() if n > 1),
            "lost_deliveries": len(self.accepted) - accepted_items,
            "pull_only_answers": len(self.pull_only), "items_for_pull_only": sum(1 for t in self.pull_only if items[t]),
            "items_total": sum(items.values()),
            **crm,
            **{k: v for k, v in jobs.items() if k != "first_job_by"}, **flight,
            "killed": f"{kill.get('killed_worker')} and {kill.get('killed_scheduler')} (leader)",
            "failover_s": round(kill.get("failover_s", float("inf")), 1),
            "failover_first_job_s": round(first_new - kill["leader_at"], 1) if first_new and kill else None,
            **left, "notes": self.notes, "logs": str(self.workdir),
        }

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
        for server in (getattr(self, "crm", None), getattr(self, "tf_server", None)):
            if server:
                server.stop()
        if getattr(self, "engine", None):
            self.engine.dispose()
        if not self.args.keep:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", self.dbname], check=False)
            self._purge_broker()

    def _purge_broker(self) -> None:
        """Delete this run's queues (on RabbitMQ they would outlive the run)."""
        for name in self.queues():
            from kombu import Connection

            try:
                with Connection(self.args.broker_url) as conn:
                    conn.default_channel.queue_delete(name)
            except Exception as exc:  # noqa: BLE001 - a leftover queue is no reason to fail the run
                print(f"note: queue {name} not deleted: {type(exc).__name__}", file=sys.stderr)


def verdict(r: dict) -> list[str]:
    bad = []
    if r["lost_deliveries"] or r["duplicate_items"] or r["items_for_accepted"] != r["deliveries_accepted"]:
        bad.append("deliveries and items differ")
    if r["items_for_pull_only"] != r["pull_only_answers"]:
        bad.append("pulled answers missing")
    if r["crm_duplicates"] or r["crm_lost"] or r["crm_strays"]:
        bad.append("CRM tasks duplicated or lost")
    if r["tasks_run_twice"] or r["periodic_too_soon"] or r["periodic_two_leaders"]:
        bad.append("duplicate job runs")
    if not r["failover_s"] < 30:
        bad.append("failover not under 30 s")
    if r.get("in_flight_at_kill", 0) != r.get("in_flight_run_again", 0):
        bad.append("a task the killed worker held never ran again")
    if r.get("raw_pending") or r.get("answers_missing") or r.get("followups_waiting") or r.get("broker_messages_left"):
        bad.append("backlog not drained")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the load runs (default 10)")
    ap.add_argument("--rate", type=float, default=2.0, help="new answers per second (default 2)")
    ap.add_argument("--broker-url", default=os.environ.get("SOAK_BROKER_URL", "redis://127.0.0.1:6379/12"))
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--slow-crm", type=float, default=1.0,
                    help="seconds the HubSpot emulator holds each task-create answer (default 1; 0: none)")
    ap.add_argument("--workdir", help="where logs go (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the database and the broker's queues")
    args = ap.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the emulators' request lines
    soak = Soak(args)
    try:
        result = soak.run()
    finally:
        soak.close()
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    bad = verdict(result)
    print("soak: OK" if not bad else f"soak: FAILED ({'; '.join(bad)})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
