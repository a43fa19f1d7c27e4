"""Per-instance state: small JSON values a plugin keeps between runs and restarts.

Every configured instance has a :class:`StateStore` at ``self.state`` (on
connectors and sinks alike).  Values are anything ``json.dumps`` accepts;
the hub keeps them in its own database (the ``connector_state`` table, one
document per instance), so they survive restarts, are shared by every
process of the hub, and go wherever the database goes (backups, PostgreSQL).
The plugin never sees a database handle.

.. code-block:: python

    class MyConnector(SourceConnector):
        def note_quota(self, used: int) -> None:
            # atomic read-modify-write: two workers never lose a count
            self.state.update("quota", lambda q: {**(q or {}), "used": (q or {}).get("used", 0) + used})

        def health(self):
            return {"quota": self.state.get("quota", {})}

Guarantees (the same on SQLite and PostgreSQL, any number of processes):

* :meth:`StateStore.update` is atomic: ``change`` sees the current value and
  its result is written before any other writer of the instance reads it
  (the instance's row is locked for the transaction: ``SELECT ... FOR
  UPDATE`` on PostgreSQL, the database write lock on SQLite).  Use it for
  counters and anything read-then-written.
* :meth:`StateStore.get` reads the last committed value; ``get`` followed by
  ``set`` is *not* atomic (last writer wins) - fine for values one process owns.
* Called while the core has the page's transaction open (inside
  ``normalize``), a write joins that transaction: it commits with the page's
  items or not at all.  Everywhere else each call is its own transaction.
* Values are copied in and out: changing a returned dict changes nothing stored.

Keep it small (counters, quotas, tokens' expiry, last-seen ids): the whole
document is read and written per call.  Per-stream cursors are the core's
business and need no code here.  A connector built without the hub (a unit
test) gets an in-memory store with the same behaviour.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from typing import Any, Protocol


class StateBackend(Protocol):
    """Where a :class:`StateStore` keeps its document (the hub provides one)."""

    def load(self) -> dict[str, Any]:
        """The committed document (a fresh copy)."""
        ...

    def modify(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Atomically apply ``change`` to the document in place, store it, return a copy."""
        ...


class MemoryStateBackend:
    """A process-local document behind a lock (tests, connectors built by hand)."""

    def __init__(self, initial: dict[str, Any] | None = None):
        self._doc: dict[str, Any] = copy.deepcopy(initial or {})
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._doc)

    def modify(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        with self._lock:
            doc = copy.deepcopy(self._doc)
            change(doc)
            self._doc = doc
            return copy.deepcopy(doc)


def _json_copy(value: Any, key: str) -> Any:
    """A deep copy that is exactly what the database will give back (or TypeError now)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"state value {key!r} is not JSON-serialisable: {exc}") from None


class StateStore:
    """Named JSON values of one instance (see the module docstring for guarantees)."""

    def __init__(self, backend: StateBackend | None = None):
        self._backend: StateBackend = backend or MemoryStateBackend()

    def bind(self, backend: StateBackend) -> None:
        """Point the store at the hub's database (the core does this before first use)."""
        self._backend = backend

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value of ``key`` (a copy), or ``default``.

        >>> s = StateStore(); s.set("seen", [1, 2]); s.get("seen"), s.get("other", 0)
        ([1, 2], 0)
        """
        return self._backend.load().get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable, else TypeError) under ``key``."""
        stored = _json_copy(value, key)
        self._backend.modify(lambda doc: doc.__setitem__(key, stored))

    def update(self, key: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomically replace ``key``'s value with ``change(current or default)``; returns it.

        ``change`` gets a copy and may return a new value or modify and return
        the one it got.  It runs once per call (under the instance's lock), so
        keep it quick and free of requests.

        >>> s = StateStore(); s.update("n", lambda n: n + 1, default=0); s.update("n", lambda n: n + 1, default=0)
        1
        2
        """
        result: list[Any] = []

        def apply(doc: dict[str, Any]) -> None:
            current = doc[key] if key in doc else copy.deepcopy(default)
            new = _json_copy(change(current), key)
            doc[key] = new
            result.append(new)

        self._backend.modify(apply)
        return copy.deepcopy(result[0])

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error when it is not set)."""
        self._backend.modify(lambda doc: doc.pop(key, None))

    def all(self) -> dict[str, Any]:
        """Every stored value (a copy), e.g. for ``health()``."""
        return self._backend.load()


__all__ = ["MemoryStateBackend", "StateBackend", "StateStore"]
