"""Paginators: how the next page of a stream is found from a response.

The core's page loop (:meth:`hub.sdk.http.HttpClient.paginate`, driven by
:mod:`hub.engine.pulls`) asks the stream's paginator after every page; a
plugin declares one and never writes the loop itself.

After each page the loop builds a :class:`Page` and asks two questions:

1. ``paginator.has_more(page)`` - is there another page at all?
2. ``paginator.next_token(page)`` - what to send to get it (a cursor, an
   offset, a page number, a URL)?

They are separate because APIs answer them separately: Meta's Graph API
keeps handing ``paging.cursors.after`` on its *last* page and signals the end
only by leaving out ``paging.next``.  The run stops when ``has_more`` is False
or the token is None; a token seen twice in one run is a loop
(:class:`~hub.sdk.http.PaginationLoopError`), never an endless run.

The token reaches the stream as ``page_token`` in ``request_params`` (and
``request_options``); the first page gets None.  Paginators are stateless
(the token of the current page is on the :class:`Page`), so one instance may
be a class attribute shared by every run.

=========================  ==================================================
``BodyTokenPaginator``     token at a path of the JSON body (X's
                           ``meta.next_token``, Graph's
                           ``paging.cursors.after`` + ``has_more_path``)
``NextUrlPaginator``       the body holds the next page's full URL
                           (Graph's ``paging.next``)
``LinkHeaderPaginator``    RFC 8288 ``Link: <...>; rel="next"`` (GitHub...)
``OffsetPaginator``        ``offset`` += records received; stops on a short
                           page or at ``total``
``PageNumberPaginator``    ``page`` = 1, 2, 3...; stops on a short or empty
                           page or at ``total_pages``
``LastRecordPaginator``    the last record's key (Typeform's ``before``)
=========================  ==================================================

Every paginator takes ``total_path``: where a page's body says how many
records the run will read in all (Typeform's ``total_items``, an API's
``meta.total``).  The core reads it from the first page of a run
(:meth:`Paginator.total`) to show progress with a total and an ETA; a stream
whose vendor gives no total leaves it out and its progress counts only.

Paths (``BodyTokenPaginator``, ``has_more_path``, ``total_path``...) are
dotted keys with an optional JSONPath-style ``$.`` prefix and list indexes:
``paging.cursors.after``, ``$.meta.next_token``, ``data[-1].id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import requests

_STEP = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def path_get(document: Any, path: str) -> Any:
    """The value at ``path`` in a decoded JSON document, or None when absent.

    ``path`` is dotted keys with an optional ``$.`` prefix and ``[n]`` list
    indexes (negative from the end).  Never raises for a missing or
    differently shaped part: pagination must stop, not crash, on an odd page.

    >>> path_get({"paging": {"cursors": {"after": "QVFI"}}}, "$.paging.cursors.after")
    'QVFI'
    >>> path_get({"data": [{"id": "1"}, {"id": "2"}]}, "data[-1].id")
    '2'
    >>> path_get({"data": []}, "data[0].id") is None
    True
    """
    text = path[2:] if path.startswith("$.") else path.removeprefix("$")
    node = document
    for key, index in _STEP.findall(text):
        if key:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        else:
            if not isinstance(node, list):
                return None
            i = int(index)
            if not -len(node) <= i < len(node):
                return None
            node = node[i]
    return node


@dataclass(frozen=True)
class Page:
    """One fetched page, as a paginator sees it."""

    response: requests.Response
    #: The page's records, as the stream's ``parse_records`` returned them.
    records: list[Any]
    #: The token that fetched this page (None for the first page of a run).
    token: str | None
    #: 1 for the first page of the run, 2 for the next...
    number: int = 1

    def json(self) -> Any:
        """The decoded body (None when it is not JSON); decoded once per page."""
        cached = self.__dict__.get("_json", _UNSET)
        if cached is _UNSET:
            try:
                cached = self.response.json()
            except ValueError:
                cached = None
            object.__setattr__(self, "_json", cached)
        return cached


_UNSET = object()


class Paginator:
    """Decides whether and how to fetch the next page; subclass per API style.

    The base class is a single page: ``next_token`` returns None.  A custom
    paginator overrides ``next_token`` (and ``has_more`` when the API says
    "more" apart from the token):

    .. code-block:: python

        class CursorHeaderPaginator(Paginator):
            def next_token(self, page):
                return page.response.headers.get("X-Next-Cursor")
    """

    #: True when the token is the next page's full URL: the core then requests
    #: that URL as it is, without the stream's ``request_params`` (the URL
    #: carries them), and only on the API's own host.
    token_is_url: ClassVar[bool] = False
    #: Path of the body's count of all records the run reads (None: the vendor gives none).
    total_path: str | None = None

    def has_more(self, page: Page) -> bool:
        """False when the API says this was the last page (default: ask the token)."""
        return True

    def total(self, page: Page) -> int | None:
        """How many records the run reads in all, as the first page's body says (None: unknown).

        Only for progress (a total and an ETA), never for stopping: the
        vendor's count may be an estimate, and records may arrive meanwhile.
        """
        if self.total_path is None:
            return None
        value = path_get(page.json(), self.total_path)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return None
        return int(value)

    def next_token(self, page: Page) -> str | None:
        """What to send for the next page, or None to stop."""
        return None


def _text(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, bool | dict | list):
        return None
    return str(value)


class BodyTokenPaginator(Paginator):
    """The next token at ``path`` of the JSON body; optionally "more?" at ``has_more_path``.

    ``has_more_path`` names a value that is truthy while more pages exist: a
    boolean (``has_more: true``) or a link that is present only then (Graph's
    ``paging.next``).  Without it, a present token means "more".

    .. code-block:: python

        paginator = BodyTokenPaginator("meta.next_token")                      # X API v2
        paginator = BodyTokenPaginator("paging.cursors.after",                 # Meta Graph
                                       has_more_path="paging.next")
    """

    def __init__(self, path: str, has_more_path: str | None = None, *, total_path: str | None = None):
        self.path = path
        self.has_more_path = has_more_path
        self.total_path = total_path

    def has_more(self, page: Page) -> bool:
        if self.has_more_path is None:
            return True
        return bool(path_get(page.json(), self.has_more_path))

    def next_token(self, page: Page) -> str | None:
        return _text(path_get(page.json(), self.path))


class NextUrlPaginator(Paginator):
    """The next page's full URL at ``path`` of the body (Graph's ``paging.next``).

    The URL is requested as given (it carries every parameter); the stream's
    ``request_params`` are used for the first page only.

    .. code-block:: python

        paginator = NextUrlPaginator("paging.next")
    """

    token_is_url = True

    def __init__(self, path: str = "next", *, total_path: str | None = None):
        self.path = path
        self.total_path = total_path

    def next_token(self, page: Page) -> str | None:
        return _text(path_get(page.json(), self.path))


class LinkHeaderPaginator(Paginator):
    """RFC 8288 ``Link`` header: follow ``rel="next"`` (relative URLs resolved).

    .. code-block:: python

        paginator = LinkHeaderPaginator()          # Link: <https://api.x/items?page=2>; rel="next"
    """

    token_is_url = True

    def __init__(self, rel: str = "next", *, total_path: str | None = None):
        self.rel = rel
        self.total_path = total_path

    def next_token(self, page: Page) -> str | None:
        link = page.response.links.get(self.rel) or {}
        url = link.get("url")
        return requests.compat.urljoin(page.response.url, url) if url else None


class OffsetPaginator(Paginator):
    """Offset paging: the token is the offset of the next page (``start`` first).

    The next offset is the current one plus the records received.  It stops
    on a page shorter than ``page_size`` (no empty round trip at the end) and,
    when ``total_path`` names the body's total count, once the offset reaches it.
    The stream sends the token: ``params["offset"] = page_token or 0``.

    .. code-block:: python

        paginator = OffsetPaginator(page_size=100, total_path="total")
    """

    def __init__(self, page_size: int, *, start: int = 0, total_path: str | None = None):
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        self.page_size = page_size
        self.start = start
        self.total_path = total_path

    def current(self, page: Page) -> int:
        return int(page.token) if page.token is not None else self.start

    def has_more(self, page: Page) -> bool:
        if len(page.records) < self.page_size:
            return False
        if self.total_path is not None:
            total = path_get(page.json(), self.total_path)
            if isinstance(total, int | float) and self.current(page) + len(page.records) >= total:
                return False
        return True

    def next_token(self, page: Page) -> str | None:
        return str(self.current(page) + len(page.records))


class PageNumberPaginator(Paginator):
    """Page-number paging: ``start`` (1), then 2, 3...; the token is the number.

    Stops on an empty page, on a page shorter than ``page_size`` (when given),
    and at ``total_pages_path`` (when the body says how many pages exist).
    The stream sends ``params["page"] = page_token or 1``.

    .. code-block:: python

        paginator = PageNumberPaginator(page_size=50, total_pages_path="meta.pages")
    """

    def __init__(self, *, start: int = 1, page_size: int | None = None, total_pages_path: str | None = None,
                 total_path: str | None = None):
        self.start = start
        self.page_size = page_size
        self.total_pages_path = total_pages_path
        self.total_path = total_path

    def current(self, page: Page) -> int:
        return int(page.token) if page.token is not None else self.start

    def has_more(self, page: Page) -> bool:
        if not page.records or (self.page_size is not None and len(page.records) < self.page_size):
            return False
        if self.total_pages_path is not None:
            pages = path_get(page.json(), self.total_pages_path)
            if isinstance(pages, int | float) and self.current(page) >= pages:
                return False
        return True

    def next_token(self, page: Page) -> str | None:
        return str(self.current(page) + 1)


class LastRecordPaginator(Paginator):
    """Next page starts after the last record's key (``before=<token>`` style).

    Stops on a short page, so the final request is not an empty round trip.

    .. code-block:: python

        paginator = LastRecordPaginator("token", page_size=1000,  # Typeform responses
                                        total_path="total_items")
    """

    def __init__(self, key: str, page_size: int, *, total_path: str | None = None):
        self.key = key
        self.page_size = page_size
        self.total_path = total_path

    def has_more(self, page: Page) -> bool:
        return bool(page.records) and len(page.records) >= self.page_size

    def next_token(self, page: Page) -> str | None:
        last = page.records[-1] if page.records else None
        return _text(last.get(self.key)) if isinstance(last, dict) else None


__all__ = [
    "BodyTokenPaginator", "LastRecordPaginator", "LinkHeaderPaginator", "NextUrlPaginator", "OffsetPaginator",
    "Page", "PageNumberPaginator", "Paginator", "path_get",
]
