"""``executor = "celery"`` against the real brokers (Redis DB 11, RabbitMQ) and real Celery workers.

A web node only stores the delivery and enqueues; a worker (in this process,
or a ``feedback-hub worker`` subprocess for the crash test) runs the job with
its own hub.  Each test uses queues of its own (``[celery] queue_prefix``), so
runs never see each other's messages.  Every test skips when its broker is
not reachable.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

pytest.importorskip("celery")  # the [test] and [production] extras bring it

from hub.config import load_config  # noqa: E402
from hub.engine import celery_app as ca  # noqa: E402
from hub.engine.dispatch import dispatch  # noqa: E402
from hub.engine.raw_events import process_raw_events  # noqa: E402
from hub.storage import models as m  # noqa: E402
from tests.test_typeform_webhook import DOCS, post, typeform_app  # noqa: E402

REDIS = "redis://127.0.0.1:6379/11"  # this suite's own Redis database
AMQP = "amqp://guest:guest@127.0.0.1:5672//"
ROOT = Path(__file__).resolve().parents[1]


def _reachable(url: str) -> bool:
    host, port = ("127.0.0.1", 6379) if url.startswith("redis") else ("127.0.0.1", 5672)
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["redis", "amqp"])
def broker(request) -> str:
    url = REDIS if request.param == "redis" else AMQP
    if not _reachable(url):
        pytest.skip(f"{request.param} broker not reachable at {ca.masked(url)}")
    return url


@pytest.fixture
def prefix(broker) -> str:
    """Queues of this test's own; deleted afterwards."""
    name = f"celerytest-{uuid.uuid4().hex[:10]}"
    yield name
    cfg = load_config(overrides={"executor": "celery", "broker_url": broker, "celery": {"queue_prefix": name}})
    app = ca.make_celery(cfg)
    with app.connection_for_write() as conn:
        for kind in ca.KINDS:
            try:
                conn.default_channel.queue_delete(ca.queue_name(name, kind))
            except Exception:  # noqa: BLE001 - a queue never declared
                pass
    app.close()


def celery_settings(broker: str, prefix: str) -> dict:
    return {"executor": "celery", "broker_url": broker,
            "celery": {"queue_prefix": prefix, "visibility_timeout_seconds": 30}}


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return check()


class Runs:
    """Counts finished ``hub.job`` runs in this process (Celery's task_postrun signal)."""

    def __init__(self):
        from celery.signals import task_postrun

        self.lock = threading.Lock()
        self.done: list[tuple[str, str]] = []  # (task id, state)
        task_postrun.connect(self._on, weak=False)
        self._signal = task_postrun

    def _on(self, task_id=None, state=None, **_):
        with self.lock:
            self.done.append((task_id, state))

    def close(self):
        self._signal.disconnect(self._on)


@pytest.fixture
def runs():
    r = Runs()
    yield r
    r.close()


def worker_for(app):
    """A real Celery worker in a thread of this process, consuming the hub's queues, with the hub's own app."""
    from celery.contrib.testing.worker import start_worker

    hub = app.extensions["hub"]
    # No AMQP heartbeats in tests: the worker's loop then wakes at once to stop, not at the next beat (~10 s).
    hub.executor.celery.conf.broker_heartbeat = 0
    return start_worker(hub.executor.celery, pool="solo", concurrency=1, perform_ping_check=False,
                        queues=ca.worker_queues(hub.config), loglevel="WARNING", shutdown_timeout=15)


def items(hub) -> int:
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(m.FeedbackItem))


# -- no broker needed ----------------------------------------------------------------
def test_unknown_jobs_and_non_json_arguments_are_refused_before_anything_is_sent():
    cfg = load_config(overrides={"executor": "celery", "broker_url": "redis://:s3cret@127.0.0.1:9/0"})
    ex = ca.CeleryExecutor(cfg)
    with pytest.raises(ca.UnknownJob, match="builtins:print"):
        ex.submit(print, "x")
    with pytest.raises(ca.UnknownJob):
        ca.resolve("os:system")
    hub = type("H", (), {})()  # not a Hub: the hub must come first
    with pytest.raises(TypeError, match="hub comes first"):
        ex.submit(dispatch, hub)
    assert "s3cret" not in ex.broker and ex.broker.startswith("redis://")
    ex.shutdown()


def test_config_requires_a_broker_for_celery_and_a_known_scheme():
    from hub.config import ConfigError

    with pytest.raises(ConfigError, match="needs a broker_url"):
        load_config(overrides={"executor": "celery"})
    with pytest.raises(ConfigError, match="redis://"):
        load_config(overrides={"executor": "celery", "broker_url": "http://127.0.0.1:6379"})
    with pytest.raises(ConfigError, match="queues"):
        load_config(overrides={"celery": {"queues": ["everything"]}})


def test_a_job_is_routed_to_its_kinds_queue():
    cfg = load_config(overrides={"executor": "celery", "broker_url": "redis://127.0.0.1:9/0",
                                 "celery": {"queue_prefix": "site1"}})
    ex = ca.CeleryExecutor(cfg)
    assert ex.queue_for(ca.job_name(process_raw_events)) == "site1.ingest"
    assert ex.queue_for(ca.job_name(dispatch)) == "site1.dispatch"
    assert ca.worker_queues(cfg, ["pull"]) == ["site1.pull"]
    conf = ex.celery.conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (True, True, 1)
    assert conf.accept_content == ["json"] and conf.broker_transport_options["visibility_timeout"] == 3600
    ex.shutdown()


# -- real broker, worker in this process ----------------------------------------------------
def test_signed_webhook_is_stored_by_the_web_node_and_becomes_one_item_on_the_worker(make_app, broker, prefix, runs):
    app, hub = typeform_app(make_app, config=celery_settings(broker, prefix))
    client = app.test_client()
    r = post(client, DOCS)
    assert r.status_code == 200 and r.get_json()["stored"] == 1
    assert items(hub) == 0  # the web node stored and enqueued; nothing ran here
    with hub.db.Session() as s:
        assert s.scalars(select(m.RawEvent.status)).one() == "pending"
    with worker_for(app):
        assert wait_for(lambda: items(hub) == 1), "the worker did not ingest the delivery"
        again = post(client, DOCS)  # the vendor retries the same delivery
        assert again.status_code == 200 and again.get_json() == {"ok": True, "stored": 0, "duplicates": 1}
        time.sleep(0.3)
    assert items(hub) == 1
    assert [state for _, state in runs.done] == ["SUCCESS"]


def test_a_redelivered_task_for_the_same_raw_event_gives_one_item(make_app, broker, prefix, runs):
    app, hub = typeform_app(make_app, config=celery_settings(broker, prefix))
    assert post(app.test_client(), DOCS).status_code == 200
    with hub.db.Session() as s:
        raw_id = s.scalars(select(m.RawEvent.id)).one()
    # The broker hands the same job out twice (a redelivery after a lost ack): the same message, sent again.
    hub.executor.submit(process_raw_events, hub, "nps", [raw_id]).result(timeout=5)
    with worker_for(app):
        assert wait_for(lambda: len(runs.done) == 2), runs.done
    assert items(hub) == 1
    with hub.db.Session() as s:
        assert s.scalars(select(m.RawEvent.status)).one() == "processed"


def test_a_message_naming_an_unknown_job_is_rejected_by_the_worker(make_app, broker, prefix, runs, tmp_path):
    app, hub = typeform_app(make_app, config=celery_settings(broker, prefix))
    celery = hub.executor.celery
    # Someone with broker access sends a task of their own making: the worker must not import or call it.
    celery.send_task(ca.TASK, args=("os:system", [f"touch {tmp_path / 'pwned'}"], {}),
                     queue=ca.queue_name(prefix, "default"))
    celery.send_task(ca.TASK, args=(ca.job_name(dispatch), [], {}), queue=ca.queue_name(prefix, "dispatch"))
    with worker_for(app):
        assert wait_for(lambda: len(runs.done) == 2), runs.done
    assert sorted(state for _, state in runs.done) == ["REJECTED", "SUCCESS"]
    assert not (tmp_path / "pwned").exists()


# -- a worker process dies under a task ------------------------------------------------------
def die_once(hub, marker: str) -> None:
    """A job whose first run kills its own pool process (as the OOM killer would)."""
    root = Path(marker)
    with (root / "runs").open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    if not (root / "died").exists():
        (root / "died").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    (root / "done").touch()


DIE_ONCE = "tests.test_celery_executor:die_once"
BOOT = ("import sys; from hub.engine.celery_app import register_job; "
        f"register_job({DIE_ONCE!r}); from hub.cli import main; sys.argv[0] = 'feedback-hub'; main()")


@pytest.mark.slow  # a worker subprocess per broker: 5-8 s each
def test_a_task_whose_worker_process_was_killed_is_delivered_again(broker, prefix, tmp_path):
    env = {**os.environ, "HUB_EXECUTOR": "celery", "HUB_BROKER_URL": broker, "HUB_CELERY__QUEUE_PREFIX": prefix,
           "HUB_INSTANCE_PATH": str(tmp_path / "instance"), "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}",
           "PYTHONPATH": str(ROOT)}
    env.pop("HUB_CONFIG", None)
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", BOOT, "worker", "--concurrency", "1", "--queues", "default"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ca.register_job(DIE_ONCE)
        cfg = load_config(environ=env)
        ex = ca.CeleryExecutor(cfg)
        from hub.engine.context import Hub

        hub = Hub.__new__(Hub)  # the submitting side's hub is never sent: an empty one will do
        ex.submit(die_once, hub, str(tmp_path)).result(timeout=5)
        done = wait_for(lambda: (tmp_path / "done").exists(), timeout=40)
        output = (tmp_path / "worker.log").read_text()
        assert done, output[-3000:]
        pids = (tmp_path / "runs").read_text().split()
        assert len(pids) == 2 and pids[0] != pids[1]  # a fresh pool process ran it the second time
        assert "WorkerLostError" in output or "signal 9" in output
        ex.shutdown()
    finally:
        ca.JOBS.pop(DIE_ONCE, None)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_worker_command_refuses_an_unknown_queue_kind(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hub.cli import main

    monkeypatch.delenv("HUB_CONFIG", raising=False)
    env = {"HUB_EXECUTOR": "celery", "HUB_BROKER_URL": REDIS, "HUB_INSTANCE_PATH": str(tmp_path / "instance"),
           "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    r = CliRunner().invoke(main, ["worker", "--queues", "pull,everything"], env=env)
    assert r.exit_code == 2 and "everything" in r.output, r.output


# -- the multi-process soak (make soak) ------------------------------------------------------
def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.soak
def test_soak_two_minutes_with_kill_9_midway(tmp_path):
    import importlib.util
    import shutil

    if not (_reachable(REDIS) and _pg_reachable() and shutil.which("createdb")):
        pytest.skip("the soak needs PostgreSQL (createdb) and Redis on 127.0.0.1")
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    assert soak.main(["--minutes", "2", "--workdir", str(tmp_path)]) == 0


# -- one copy at a time of a single job (PostgreSQL) ----------------------------------------
def count_run(hub, path: str) -> None:
    with Path(path).open("a") as fh:
        fh.write("run\n")


COUNT_RUN = "tests.test_celery_executor:count_run"


def test_a_single_job_queued_again_while_it_runs_elsewhere_is_skipped(make_app, tmp_path):
    app = make_app(executor="celery", broker_url=REDIS)  # the broker is not contacted: the task runs here
    hub = app.extensions["hub"]
    if hub.db.dialect != "postgresql":
        pytest.skip("the one-at-a-time lock is PostgreSQL's (SQLite hubs are one machine)")
    ca.register_job(COUNT_RUN, single=True)
    out = tmp_path / "runs"
    try:
        task = hub.executor.task
        with ca.only_one(hub, COUNT_RUN, [str(out)]) as held:  # "another worker" runs it now
            assert held
            task.run(COUNT_RUN, [str(out)], {})  # the copy: skipped
            assert not out.exists()
            task.run(COUNT_RUN, [str(out) + ".other"], {})  # other arguments: another lock
        task.run(COUNT_RUN, [str(out)], {})  # the first run is over: this one goes ahead
        assert out.read_text() == "run\n" and Path(str(out) + ".other").read_text() == "run\n"
    finally:
        ca.JOBS.pop(COUNT_RUN, None)
        ca.SINGLE.discard(COUNT_RUN)
