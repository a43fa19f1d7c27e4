"""A tiny health endpoint for processes without a web server (scheduler, worker).

``feedback-hub scheduler --health-port 9101`` (and ``worker``) answer
``GET /healthz`` on ``--health-host`` (default 127.0.0.1) with 200 and
``{"status": "ok", ...}`` while the process does its work, 503 when it is
stuck or cannot reach what it needs: a docker ``HEALTHCHECK`` or a systemd
watchdog script curls it (docs/deploying.md).  It tells nothing else.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.engine.context import Hub
    from hub.engine.scheduler import HubScheduler

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    def __init__(self, check: Check, host: str = "127.0.0.1", port: int = 0):
        self.check = check
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path.split("?")[0] not in ("/healthz", "/"):
                    self.send_error(404)
                    return
                try:
                    ok, body = outer.check()
                except Exception as exc:  # a probe answers 503, never a traceback
                    ok, body = False, {"error": exc.__class__.__name__}
                data = json.dumps({"status": "ok" if ok else "unhealthy", **body}).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # probes every few seconds would flood the log
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health endpoint on http://%s:%d/healthz", *self.server.server_address[:2])
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def scheduler_check(sched: HubScheduler) -> Check:
    """Healthy while the election loop turns: a standby is healthy too (it is ready to take over)."""
    stale_after = max(15.0, 3 * max(sched.check_seconds, sched.retry_seconds))

    def check():
        fresh = time.monotonic() - sched.heartbeat < stale_after
        leading_ok = sched.role != "leader" or sched.scheduler.running
        return fresh and leading_ok and sched.role in ("leader", "standby"), {"role": sched.role}
    return check


def worker_check(hub: Hub, beat: Callable[[], float] | None = None, stale_after: float = 60.0) -> Check:
    """Healthy while the database (and the broker, with Celery) answer and the work loop turns."""
    from sqlalchemy import text

    def check():
        with hub.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        celery = getattr(hub.executor, "celery", None)
        if celery is not None:
            with celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        if beat is not None and time.monotonic() - beat() > stale_after:
            return False, {"loop": "stuck"}
        return True, {}
    return check
