"""The inbox's counts run beside its page query (hub.web.side_query): on a
connection and thread of their own where the engine allows it, in the
request's session where it does not, with the same figures either way."""

from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import create_engine, event, func, select, text

from hub.storage import models as m
from hub.web import side_query
from tests.test_inbox_scale import TEXTS, many_cases  # noqa: F401 - the fixture
from tests.test_web_workspace import signed_in


def _threads_of(engine, pattern: str) -> list[str]:
    """Names of the threads that run statements matching ``pattern``, as they run."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        if re.search(pattern, statement):
            seen.append(threading.current_thread().name)

    event.listen(engine, "before_cursor_execute", record)
    return seen


def _figures(page: str) -> tuple[str, list[str]]:
    total = re.search(r'<span id="total">(.*?)</span>', page).group(1)
    return total, re.findall(r'<span class="count">(\d+\+?)</span>', page)


def test_the_counts_run_on_a_helper_thread_and_match_the_rows(many_cases):  # noqa: F811
    hub = many_cases.extensions["hub"]
    client = signed_in(many_cases, "counter")
    seen = _threads_of(hub.db.engine, r"AS total")
    page = client.get("/?view=feedback&status=all").get_data(as_text=True)
    assert seen and all(name.startswith("hub-side-query") for name in seen)
    total, tabs = _figures(page)
    with hub.db.Session() as s:
        items = s.scalar(select(func.count()).select_from(m.FeedbackItem))
        todo = s.scalar(select(func.count()).select_from(m.Case).where(m.Case.status.in_(("new", "assigned",
                                                                                            "scheduled"))))
    assert total == f"{items} items" and items == len(TEXTS)
    assert tabs and tabs[0] == str(todo)


def test_the_same_figures_come_from_the_requests_session_where_threads_cannot_share(many_cases,  # noqa: F811
                                                                                      monkeypatch):
    hub = many_cases.extensions["hub"]
    client = signed_in(many_cases, "inline")
    threaded = [_figures(client.get(url).get_data(as_text=True)) for url in ("/", "/?q=storing", "/?view=feedback")]
    monkeypatch.setattr(side_query, "parallel_capable", lambda engine: False)
    seen = _threads_of(hub.db.engine, r"AS latest")
    inline = [_figures(client.get(url).get_data(as_text=True)) for url in ("/", "/?q=storing", "/?view=feedback")]
    assert inline == threaded
    assert seen and all(name == threading.current_thread().name for name in seen)


def test_an_in_memory_database_runs_it_where_the_row_is_asked_for():
    engine = create_engine("sqlite://")
    assert not side_query.parallel_capable(engine)
    assert side_query.parallel_capable(create_engine("sqlite:////tmp/not-opened.db"))


def test_an_error_in_the_side_query_is_raised_where_its_row_is_asked_for(hub):
    from sqlalchemy.exc import DBAPIError

    with hub.db.Session() as s:
        pending = side_query.side_row(hub.db, s, select(text("1 FROM no_such_table")))
        with pytest.raises(DBAPIError):
            pending()
        assert side_query.side_row(hub.db, s, select(func.count()).select_from(m.FeedbackItem))() == (0,)


def test_a_forked_child_starts_helpers_of_its_own(hub):
    """The parent's helper threads do not survive a fork; the child's side queries still run."""
    import os

    with hub.db.Session() as s:
        assert side_query.side_row(hub.db, s, select(func.count()).select_from(m.FeedbackItem))() == (0,)
    if hub.db.dialect != "sqlite":
        pytest.skip("the child opens its own SQLite connections; a PostgreSQL one would share the parent's socket")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own engine's connections, the parent's helper threads gone
        try:
            hub.db.engine.dispose(close=False)
            with hub.db.Session() as s:
                row = side_query.side_row(hub.db, s, select(func.count()).select_from(m.FeedbackItem))()
            os.write(write, str(row[0]).encode())
        finally:
            os._exit(0)
    os.close(write)
    import select as select_io
    import signal

    ready, _, _ = select_io.select([read], [], [], 30)  # a child waiting for ever fails, not hangs, the test
    got = os.read(read, 100) if ready else b""
    if not got:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert got == b"0"


def test_while_every_helper_is_busy_the_page_runs_its_side_query_itself(hub, monkeypatch):
    import threading as th

    busy = th.BoundedSemaphore(side_query.THREADS)
    for _ in range(side_query.THREADS):
        busy.acquire()
    monkeypatch.setattr(side_query, "_free", busy)
    seen = _threads_of(hub.db.engine, r"count\(\*\)")
    with hub.db.Session() as s:
        assert side_query.side_row(hub.db, s, select(func.count()).select_from(m.FeedbackItem))() == (0,)
    assert seen == [th.current_thread().name]
    busy.release()  # one helper free again: the next one runs there, and gives its turn back
    with hub.db.Session() as s:
        assert side_query.side_row(hub.db, s, select(func.count()).select_from(m.FeedbackItem))() == (0,)
    assert seen[-1].startswith("hub-side-query")
    assert busy.acquire(blocking=False)
