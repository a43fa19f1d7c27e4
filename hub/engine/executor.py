"""The executor seam: where background work runs.

Jobs (pull an instance, process webhook raw events, dispatch the outbox) are
plain functions called with plain arguments, so they run as Celery tasks
unchanged.  ``threads`` runs them in a small pool inside the
process; ``inline`` runs them at once (tests, CLI); ``celery`` sends them to
workers on any machine (:mod:`hub.engine.celery_app`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class InlineExecutor:
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:  # recorded on the future, and logged like the pool does
            log.exception("job %s failed", getattr(fn, "__name__", fn))
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True) -> None:
        pass


class ThreadExecutor:
    def __init__(self, workers: int = 4):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hub-job")

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        def run():
            try:
                return fn(*args, **kwargs)
            except Exception:
                log.exception("job %s failed", getattr(fn, "__name__", fn))
                raise

        return self.pool.submit(run)

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait)


def make_executor(kind: str, workers: int, cfg=None):
    if kind == "celery":  # the distributed executor (hub.engine.celery_app); celery is imported only then
        from hub.engine.celery_app import CeleryExecutor

        return CeleryExecutor(cfg)
    return InlineExecutor() if kind == "inline" else ThreadExecutor(workers)
