"""The per-instance state store (:mod:`hub.sdk.state`): the SDK API, its database backend on
``connector_state``, concurrent writers, restarts, and writes made while the core's page
transaction is open."""

from __future__ import annotations

import datetime as dt
import threading

import flask
import pytest
from sqlalchemy import select

from hub.engine.pulls import pull, source_status
from hub.engine.state_store import INSTANCE_STREAM, DatabaseStateBackend
from hub.sdk import (
    BodyTokenPaginator,
    FakeClock,
    FeedbackIn,
    MemoryStateBackend,
    SourceConnector,
    StateStore,
    Stream,
    hookimpl,
)
from hub.storage import models as m
from hub.storage.database import Database


@pytest.fixture(params=["memory", "database"])
def store(request, database_url):
    """The same behaviour in memory (connectors built by hand) and in the hub's database."""
    if request.param == "memory":
        yield StateStore(MemoryStateBackend())
        return
    db = Database(database_url)
    yield StateStore(DatabaseStateBackend(db, "inst"))
    db.dispose()


def test_values_are_json_copies_in_and_out(store):
    assert store.get("missing") is None and store.get("missing", 5) == 5
    value = {"ids": [1, 2], "at": "2026-11-20"}
    store.set("seen", value)
    value["ids"].append(3)  # changing the caller's object changes nothing stored
    got = store.get("seen")
    assert got == {"ids": [1, 2], "at": "2026-11-20"}
    got["ids"].clear()
    assert store.get("seen")["ids"] == [1, 2]
    store.set("pair", (1, 2))
    assert store.get("pair") == [1, 2]  # what JSON gives back, in memory too
    with pytest.raises(TypeError, match="'when' is not JSON"):
        store.set("when", dt.datetime(2026, 1, 1))
    assert "when" not in store.all()


def test_update_is_read_modify_write_and_delete_forgets(store):
    assert store.update("n", lambda n: n + 1, default=0) == 1
    assert store.update("n", lambda n: n + 1, default=0) == 2

    def add_key(doc):
        doc["b"] = 2
        return doc

    store.set("doc", {"a": 1})
    assert store.update("doc", add_key) == {"a": 1, "b": 2}
    store.delete("n")
    store.delete("never-set")
    assert store.all() == {"doc": {"a": 1, "b": 2}}
    with pytest.raises(TypeError):
        store.update("doc", lambda d: {1, 2})
    assert store.get("doc") == {"a": 1, "b": 2}  # a failed change writes nothing


def test_concurrent_writers_lose_no_update(database_url):
    db = Database(database_url)
    stores = [StateStore(DatabaseStateBackend(db, "shared")) for _ in range(4)]  # four "workers"
    threads = [threading.Thread(target=lambda s=s: [s.update("n", lambda n: n + 1, default=0) for _ in range(25)])
               for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert StateStore(DatabaseStateBackend(db, "shared")).get("n") == 100
    assert StateStore(DatabaseStateBackend(db, "another")).get("n") is None  # instances are apart
    with db.Session() as s:
        rows = s.scalars(select(m.ConnectorState).where(m.ConnectorState.stream == INSTANCE_STREAM)).all()
        assert [r.instance for r in rows] == ["shared"]
    db.dispose()


# -- through the hub: the store the engine hands to a plugin ---------------------------------
RECORDS = [{"id": f"r{i}", "text": f"bericht {i}"} for i in range(5)]


class Feed:
    def __init__(self):
        self.app = flask.Flask(__name__)
        self.app.add_url_rule("/records", "records", self.records)

    def records(self):
        start = int(flask.request.args.get("next") or 0)
        page = RECORDS[start:start + 2]
        return {"items": page, "next": str(start + 2) if start + 2 < len(RECORDS) else None}


class Records(Stream):
    name = "records"
    path = "/records"
    cursor_field = "id"
    paginator = BodyTokenPaginator("next")

    def request_params(self, cursor, page_token, since):
        return {"next": page_token} if page_token else {}

    def parse_records(self, response):
        return response.json()["items"]


class CountingConnector(SourceConnector):
    """Counts normalized records in its state, from inside the core's page transaction."""

    plugin_name = "test_counting"
    default_base_url = "http://invalid"

    def streams(self):
        return [Records(self)]

    def normalize(self, raw):
        self.state.update("normalized", lambda n: n + 1, default=0)
        return [FeedbackIn(external_id=raw.payload["id"], channel="chat", text=raw.payload["text"],
                           occurred_at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))]

    def health(self):
        return {"normalized": self.state.get("normalized", 0)}


class Plugin:
    @hookimpl
    def hub_register_connectors(self):
        return [CountingConnector]


@pytest.fixture
def feed_url(live_server):
    return live_server(Feed().app)


def test_the_engine_hands_plugins_a_store_in_the_hubs_database(make_app, feed_url):
    config = {"sources": {"counter": {"plugin": "test_counting", "base_url": feed_url}}}
    first = make_app(plugins=(Plugin(),), clock=FakeClock(), **config).extensions["hub"]
    # normalize writes state while the page's write transaction is open: the write joins it
    # (on SQLite a second connection would wait for the first, which waits for it).
    report = pull(first, "counter")
    assert report.new_items == 5
    assert first.registry.connector("counter").state.get("normalized") == 5

    # A restart (a new app on the same database) sees the count; the status lists no pseudo-stream.
    again = make_app(plugins=(Plugin(),), clock=FakeClock(), **config).extensions["hub"]
    assert again.registry.connector("counter").state.get("normalized") == 5
    [status] = source_status(again)
    assert status["normalized"] == 5 and status["cursor"] == {"records": "r4"}


def test_a_connector_built_by_hand_has_a_working_memory_store():
    from hub.sdk import Instance

    connector = CountingConnector(Instance("solo", "test_counting", "source", {}))
    connector.normalize(type("Raw", (), {"payload": RECORDS[0]})())
    assert connector.health() == {"normalized": 1}
