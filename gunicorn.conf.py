"""gunicorn settings for a feedback-hub web node (docs/deploying.md).

    gunicorn -c gunicorn.conf.py 'hub:create_app()'

Every value can be set from the environment (``GUNICORN_*``: systemd
EnvironmentFile, docker ``environment:``; not ``HUB_*``, which the hub reads as
its configuration); the defaults suit a node behind a reverse proxy on the
same host.  The web node only serves pages, the API and webhooks: run the scheduler
(``feedback-hub scheduler``) and the workers (``feedback-hub worker``) as
processes of their own, never inside gunicorn.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Threads serve slow clients and the background polls of the inbox without a
# process each; processes give CPU parallelism (scoring an ingest is CPU work).
workers = _int("GUNICORN_WORKERS", min(8, multiprocessing.cpu_count() * 2))
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread"

# preload_app off: each worker builds its own app after the fork, so it owns
# its database pool and executor threads.  With preload the master's
# SQLAlchemy connections would be shared by every forked worker (two
# processes on one socket corrupt the protocol) and threads started in the
# master do not survive a fork; that would need engine.dispose() in post_fork
# and no threads at import.  Costs a second or so of start-up per worker.
preload_app = False

# A webhook answers in milliseconds; a long request is a stuck one.
timeout = _int("GUNICORN_TIMEOUT", 60)
# SIGTERM: stop accepting, let requests under way finish for this long.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)  # above the proxy's idle timeout to upstreams is safer
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)  # >0 recycles workers (a slow leak's safety net)
max_requests_jitter = max_requests // 10

# The reverse proxy's address: only it may say the request came over HTTPS
# (X-Forwarded-Proto), which makes the session cookie's links and redirects https.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
# The path without its query (%(U)s, not %(r)s): a query may carry a token
# (a vendor's verify_token, an access_token). %(L)s: request time in seconds.
if os.environ.get("HUB_LOG_FORMAT", "").lower() == "json":
    # Only fields a client cannot put quotes into (the user agent and X-Forwarded-For can: text format only).
    access_log_format = ('{"time": "%(t)s", "remote": "%(h)s", "method": "%(m)s", "path": "%(U)s", '
                         '"status": %(s)s, "bytes": "%(B)s", "seconds": %(L)s}')
else:
    access_log_format = '%({x-forwarded-for}i)s %(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss "%(a)s"'


def child_exit(server, worker):
    # Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR): a dead worker's
    # gauges must not linger in the scrape; its counters are kept.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # The worker's app is built: freeze it out of the garbage collector's full
    # passes (hub.app.settle_for_serving says why).
    from hub.app import settle_for_serving

    settle_for_serving(worker.wsgi)
