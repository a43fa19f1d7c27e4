"""Signed Typeform webhooks under gunicorn against a bare Flask app on the same
gunicorn and the same bodies, measured in the same run.

Both servers run ``gunicorn -w 2`` on 127.0.0.1 with the same settings: a
config file whose one hook freezes each worker's start-up objects (as the
deployed gunicorn.conf.py does) and marks it ready, ``gthread`` workers with ``--gunicorn-threads`` (4, as
``gunicorn.conf.py`` deploys; 1 gives sync workers).  Threads matter for the
hub: a PostgreSQL commit waits for its WAL flush (~5 ms on a busy disk), and
only concurrent requests share one flush.  The bare app
answers 200 after reading the body; the hub verifies the signature, stores
the raw event pending, commits and answers (``/webhooks/nps``).  Every body is
a real Typeform delivery (``tests/fixtures/typeform/webhook_form_response_docs_example.json``)
with a token of its own, signed with HMAC-SHA256 as Typeform signs.

Where processing runs during the measurement (``--processing``): by default
in one ``feedback-hub worker --interval 0.2`` process beside gunicorn
(``webhook_processing = "worker"``: the web node only stores; the worker
claims pending deliveries in batches), which competes for the same 2 cores
at a lower CPU priority (``--worker-nice``, default 10; 0 for the same);
with ``--processing executor`` in the gunicorn workers themselves (each one's
raw-event drainer thread), which competes for their GIL too: every database
round trip of a request hands the GIL to the drainer for a switch interval.
Nothing is deferred to after the measurement except the backlog not reached
yet, which is drained (and timed) before the count.

Phases, per database (SQLite file, then ``--database-url`` PostgreSQL):

1. max rate: ``wrk`` (Debian package; a second process) with ``--threads``
   and ``--connections`` for ``--seconds``, against the bare app, then the hub;
2. latency: an open-loop generator (a second process, Python threads, one
   connection each) sending at half the hub's max rate; each latency counts
   from the request's scheduled time, so a stall is not hidden;
3. drain, then count: every delivery answered 2xx must be exactly one item
   (raw events = items = acknowledged, none pending or failed).

Goals (issue 17): hub/bare >= 0.30; p99 at half rate < 50 ms.

    .venv/bin/python bench/webhooks.py [--seconds 8] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/typeform/webhook_form_response_docs_example.json"
SECRET = "bench-webhook-secret"
BIN = Path(sys.executable).parent

BARE_APP = '''
import flask
app = flask.Flask("bare")

@app.post("/webhooks/<instance>")
def receive(instance):
    flask.request.get_data()
    return flask.jsonify(ok=True)
'''

READY_HOOK = '''
import gc
import os
import pathlib


def post_worker_init(worker):
    # What the deployed gunicorn.conf.py does for the hub (hub.app.settle_for_serving): what the
    # worker loaded is frozen, so no full garbage collection walks it inside a request.
    gc.freeze()
    pathlib.Path({ready_dir!r}, str(os.getpid())).touch()
'''

WRK_SCRIPT = r'''
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local bodies, sigs, idx = {}, {}, 0
function init(args)
  local n, i = tonumber(args[2]), 0
  for line in io.lines(args[1]) do
    if i % n == tid then
      local tab = line:find("\t", 1, true)
      sigs[#sigs + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
    i = i + 1
  end
end
function request()
  idx = idx % #bodies + 1
  return wrk.format("POST", "/webhooks/nps", {["Content-Type"] = "application/json",
                    ["Typeform-Signature"] = sigs[idx]}, bodies[idx])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "duration_us": %d, "status": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, e.status,
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bodies(start: int, count: int) -> list[tuple[str, bytes]]:
    base = json.loads(FIXTURE.read_text())
    out = []
    for i in range(start, start + count):
        event = copy.deepcopy(base)
        event["form_response"]["token"] = f"bench{i:08d}"
        body = json.dumps(event, separators=(",", ":")).encode()
        sig = "sha256=" + base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
        out.append((sig, body))
    return out


def write_bodies(path: Path, bodies: list[tuple[str, bytes]]) -> None:
    with path.open("wb") as f:
        for sig, body in bodies:
            f.write(sig.encode() + b"\t" + body + b"\n")


class Server:
    """``gunicorn -w 2`` serving ``app`` until :meth:`stop`."""

    def __init__(self, app: str, env: dict[str, str], workers: int, threads: int):
        self.port = free_port()
        # The same settings for both apps: a config file of one hook, READY_HOOK (never
        # ./gunicorn.conf.py of a checkout, which would apply to one app only: the bare one runs
        # elsewhere), no access log.
        tmp = Path(env["BENCH_TMP"])
        self.ready_dir = tmp / f"ready-{self.port}"
        self.ready_dir.mkdir()
        conf = tmp / f"gunicorn_bench_{self.port}.conf.py"
        conf.write_text(READY_HOOK.format(ready_dir=str(self.ready_dir)))
        self.workers = workers
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(conf), "-k", "gthread" if threads > 1 else "sync", "--threads",
             str(threads), "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
             "--backlog", "2048", "--log-level", "warning", app], env=env, cwd=env.get("BENCH_CWD", ROOT))
        # Ready when every worker has built its app and they answer, not when the master listens: a hub
        # worker builds its app after the fork (seconds of CPU on a busy machine; one still building
        # would take them from the measurement).  GET is refused (405) by both apps and stores nothing.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(list(self.ready_dir.iterdir())) >= self.workers and self._answers(8):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{app} did not start")

    def _answers(self, n: int) -> bool:
        ok = []

        def probe():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/webhooks/nps")
                conn.getresponse().read()
                ok.append(True)
            except (OSError, http.client.HTTPException):
                pass

        probes = [threading.Thread(target=probe) for _ in range(n)]
        for t in probes:
            t.start()
        for t in probes:
            t.join()
        return len(ok) == n

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def ready_line(proc: subprocess.Popen, marker: str, timeout: float) -> None:
    """Wait until ``proc`` prints a line containing ``marker``; the rest of its output is dropped."""
    found = threading.Event()

    def read():
        for line in proc.stdout:
            if marker in line:
                found.set()
        found.set()  # it ended: do not wait for the timeout

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout) or proc.poll() is not None:
        raise RuntimeError(f"{proc.args[-3:]} did not print {marker!r}")


def wrk(port: int, bodies: Path, threads: int, connections: int, seconds: float) -> dict:
    script = bodies.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "5s",
                          "-s", str(script), f"http://127.0.0.1:{port}", "--", str(bodies), str(threads)],
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    got = json.loads(line[4:])
    got["rate"] = (got["requests"] - got["status"]) / (got["duration_us"] / 1e6)
    return got


# -- the open-loop generator (run in its own process: --_load) ------------------------
def open_loop(port: int, bodies_file: str, rate: float, seconds: float, threads: int) -> dict:
    lines = Path(bodies_file).read_bytes().splitlines()
    total = min(len(lines), int(rate * seconds))
    lock = threading.Lock()
    nxt = [0]
    latencies: list[float] = []
    status: dict[int, int] = {}
    acked: list[str] = []
    start = time.perf_counter() + 0.2

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while True:
            with lock:
                k = nxt[0]
                nxt[0] += 1
            if k >= total:
                return
            sig, body = lines[k].split(b"\t", 1)
            due = start + k / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                conn.request("POST", "/webhooks/nps", body=body,
                             headers={"Content-Type": "application/json", "Typeform-Signature": sig.decode()})
                resp = conn.getresponse()
                answer = resp.read()
                code = resp.status
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
                code, answer = 0, b""
            done = time.perf_counter()
            with lock:
                latencies.append(done - due)
                status[code] = status.get(code, 0) + 1
                if code == 200 and json.loads(answer).get("stored") == 1:
                    acked.append(json.loads(body)["form_response"]["token"])

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"sent": total, "rate": total / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "max_ms": latencies[-1] * 1000, "status": status, "acked": acked}


def run_open_loop(port: int, bodies: Path, rate: float, seconds: float, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--_load", str(port), str(bodies), str(rate), str(seconds),
                          str(threads)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


# -- the hub --------------------------------------------------------------------------------
def hub_site(tmp: Path, database_url: str, processing: str) -> Path:
    site = tmp / "site.toml"
    site.write_text(f'''database_url = "{database_url}"
executor = "threads"
webhook_processing = "{processing}"

[http]
allowed_private_hosts = ["127.0.0.1"]

[sources.nps]
plugin = "survey_typeform"
form_id = "lT4Z3j"
webhook_secret = "env:BENCH_TYPEFORM_SECRET"
base_url = "http://127.0.0.1:9"
''')
    return site


def prepare_database(database_url: str) -> None:
    """Migrate the database; a PostgreSQL database that does not exist yet is created first."""
    sys.path.insert(0, str(ROOT))
    from sqlalchemy.engine import make_url

    from hub.storage.database import make_engine
    from hub.storage.migrate import upgrade

    url = make_url(database_url)
    if url.get_backend_name() == "postgresql" and url.database:
        from sqlalchemy import text

        admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False),
                            isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}):
                print(f"creating database {url.database}", flush=True)
                conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
        admin.dispose()
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()


def missing(database_url: str, tokens: list[str]) -> int:
    """How many of these acknowledged deliveries' tokens have no item."""
    from sqlalchemy import select

    from hub.storage import models as m
    from hub.storage.database import make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        found = set(conn.scalars(select(m.FeedbackItem.external_id).where(m.FeedbackItem.external_id.in_(tokens))))
    engine.dispose()
    return len(set(tokens) - found)


def counts(database_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from hub.storage import models as m
    from hub.storage.database import make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        raw = dict(conn.execute(select(m.RawEvent.status, func.count()).group_by(m.RawEvent.status)).all())
        items = conn.scalar(select(func.count()).select_from(m.FeedbackItem))
        distinct = conn.scalar(select(func.count(func.distinct(m.FeedbackItem.external_id))))
    engine.dispose()
    return {"items": items, "distinct_items": distinct, **{f"raw_{k}": v for k, v in raw.items()}}


def wait_drained(database_url: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if counts(database_url).get("raw_pending", 0) == 0:
            return time.monotonic() - start
        time.sleep(0.25)
    raise RuntimeError(f"raw events still pending after {timeout:.0f} s")


def bench_backend(label: str, database_url: str, args, tmp: Path, bare: dict, env: dict[str, str]) -> dict:
    prepare_database(database_url)
    if any(counts(database_url).values()):  # the same tokens again would be duplicates: cheaper, and not counted
        raise SystemExit(f"{label}: the database is not empty: give an empty or disposable one")
    site = hub_site(tmp, database_url, args.processing)
    hub_env = {**env, "HUB_CONFIG": str(site), "HUB_INSTANCE_PATH": str(tmp / f"instance-{label}"),
               "BENCH_TYPEFORM_SECRET": SECRET}
    # Enough unique deliveries for the max-rate phase (a body is never sent twice there): the hub
    # may come close to the bare app's rate, so half as many again as the bare app answered.
    pool = int(max(2000, bare["rate"]) * args.seconds * 1.5) + 1000
    max_bodies = tmp / f"hub-{label}.txt"
    write_bodies(max_bodies, make_bodies(0, pool))
    server = Server("hub:create_app()", hub_env, args.workers, args.gunicorn_threads)
    worker = None
    if args.processing == "worker":  # beside the web node, on the same 2 cores
        # At a lower CPU priority (--worker-nice), as a node that answers vendors should run its
        # worker: acknowledgements first, processing in the CPU they leave (the backlog it leaves
        # is drained and timed before the count).
        nice = ["nice", "-n", str(args.worker_nice)] if args.worker_nice else []
        worker = subprocess.Popen([*nice, str(BIN / "feedback-hub"), "worker", "--interval", "0.2"], env=hub_env,
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True)
        # Measured once it has warmed up (its language models loaded: seconds of CPU, once per
        # process), as a worker that has been running: the phase times deliveries, not a start-up.
        ready_line(worker, "worker running", 120)
    try:
        top = wrk(server.port, max_bodies, args.threads, args.connections, args.seconds)
        if top["requests"] > pool:  # bodies sent twice: duplicates, not items; the count would mislead
            raise SystemExit(f"{label}: wrk sent {top['requests']:,} requests but only {pool:,} bodies exist")
        drain_max = wait_drained(database_url, 300)
        half = max(1.0, top["rate"] / 2)
        half_bodies = tmp / f"half-{label}.txt"
        write_bodies(half_bodies, make_bodies(pool, int(half * args.seconds) + 10))
        lat = run_open_loop(server.port, half_bodies, half, args.seconds, args.load_threads)
        drain_half = wait_drained(database_url, 300)
    finally:
        server.stop()
        if worker is not None:
            worker.terminate()
            worker.wait(30)
    got = counts(database_url)
    acked = top["requests"] - top["status"] + len(lat["acked"])
    # Exactly one item per acknowledged delivery: the open-loop phase's acknowledged tokens each have an
    # item; items are unique, all raw events processed (none pending or failed); deliveries wrk had in
    # flight when it stopped may be stored without an answer (a vendor would redeliver: a duplicate).
    lost = missing(database_url, lat["acked"])
    ok = (lost == 0 and got["items"] == got["distinct_items"] == got.get("raw_processed", 0) >= acked
          and not got.get("raw_failed") and not got.get("raw_pending"))
    return {"label": label, "max": top, "half": lat, "drain_s": (drain_max, drain_half), "counts": got,
            "acked": acked, "lost": lost, "exactly_once": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--gunicorn-threads", type=int, default=4,
                        help="threads per gunicorn worker (gthread, as gunicorn.conf.py deploys; 1: sync workers)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--load-threads", type=int, default=16, help="open-loop generator threads")
    parser.add_argument("--processing", choices=("worker", "executor"), default="worker",
                        help="worker: a `feedback-hub worker` process beside gunicorn processes the deliveries "
                             "(webhook_processing = \"worker\"); executor: each gunicorn worker's drainer thread")
    parser.add_argument("--worker-nice", type=int, default=10,
                        help="nice increment of the `feedback-hub worker` process (0: the web node's priority)")
    parser.add_argument("--database-url", help="also run on this (empty or disposable) PostgreSQL database")
    parser.add_argument("--no-sqlite", action="store_true", help="with --database-url: PostgreSQL only")
    parser.add_argument("--_load", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._load:
        port, path, rate, seconds, threads = args._load
        print(json.dumps(open_loop(int(port), path, float(rate), float(seconds), int(threads))))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HUB_CONFIG", None)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env["BENCH_TMP"] = str(tmp)
        (tmp / "bare_app.py").write_text(BARE_APP)
        bare_bodies = tmp / "bare.txt"
        write_bodies(bare_bodies, make_bodies(10_000_000, 5000))  # the bare app keeps nothing: reuse is fine
        server = Server("bare_app:app", {**env, "BENCH_CWD": str(tmp), "PYTHONPATH": f"{tmp}:{ROOT}"}, args.workers,
                        args.gunicorn_threads)
        try:
            bare = wrk(server.port, bare_bodies, args.threads, args.connections, args.seconds)
        finally:
            server.stop()
        results = [] if args.no_sqlite else [bench_backend("sqlite", f"sqlite:///{tmp}/hub.db", args, tmp, bare, env)]
        if args.database_url:
            results.append(bench_backend("postgresql", args.database_url, args, tmp, bare, env))
    print(f"processing: {args.processing}" + (f" (worker at nice +{args.worker_nice})"
                                                if args.processing == "worker" and args.worker_nice else ""))
    print(f"bare Flask (gunicorn -w {args.workers} --threads {args.gunicorn_threads}, wrk -t{args.threads} -c{args.connections}): "
          f"{bare['rate']:,.0f} req/s, p50 {bare['p50_us'] / 1000:.1f} ms, p99 {bare['p99_us'] / 1000:.1f} ms")
    for r in results:
        top, half = r["max"], r["half"]
        print(f"hub {r['label']}: {top['rate']:,.0f} signed deliveries/s (ratio {top['rate'] / bare['rate']:.2f}, "
              f"goal >= 0.30; wrk p50 {top['p50_us'] / 1000:.1f} ms, p99 {top['p99_us'] / 1000:.1f} ms, "
              f"non-2xx {top['status']}, timeouts {top['timeout']})")
        print(f"  at half that rate ({half['rate']:,.0f}/s open loop): p50 {half['p50_ms']:.1f} ms, "
              f"p99 {half['p99_ms']:.1f} ms (goal < 50), max {half['max_ms']:.1f} ms, statuses {half['status']}")
        print(f"  drained {r['drain_s'][0]:.1f} s after the max phase, {r['drain_s'][1]:.1f} s after the half one; "
              f"acknowledged {r['acked']:,} ({r['lost']} of the half phase's without an item), counts {r['counts']}: "
              f"exactly one item each: {r['exactly_once']}")
    for r in results:  # bench/README.md: the summary's lines, one per database
        ratio = r["max"]["rate"] / bare["rate"]
        print("BENCH " + json.dumps({
            "name": f"webhooks_{r['label']}", "value": round(r["max"]["rate"]), "unit": "deliveries/s",
            "baseline": round(bare["rate"]), "ratio": round(ratio, 3),
            "goal": "ratio >= 0.30, p99 < 50 ms at half rate, 1 item each",
            "pass": bool(ratio >= 0.30 and r["half"]["p99_ms"] < 50 and r["exactly_once"])}))


if __name__ == "__main__":
    main()
