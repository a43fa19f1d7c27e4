"""Paginators: how the next page of a stream is found from a response.

The core's page loop (:mod:`hub.engine.pulls`, through
:meth:`hub.sdk.http.HttpClient.paginate`) asks the stream's paginator after
each page; a plugin declares one and never writes the loop itself.
"""

from __future__ import annotations

from typing import Any

import requests


class Paginator:
    """Decides the next page from a response; subclasses for each API style."""

    def next_token(self, response: requests.Response, records: list[Any]) -> str | None:
        return None


class BodyTokenPaginator(Paginator):
    """Next-page token at a dotted path of the JSON body (``meta.next_token``)."""

    def __init__(self, path: str):
        self.path = path.split(".")

    def next_token(self, response, records):
        node: Any = response.json()
        for part in self.path:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return str(node) if node else None


class LastRecordPaginator(Paginator):
    """Next page starts after the last record's key (``before=<token>`` style).

    Stops on a short page, so the final request is not an empty round trip.
    """

    def __init__(self, key: str, page_size: int):
        self.key = key
        self.page_size = page_size

    def next_token(self, response, records):
        if len(records) < self.page_size or not records:
            return None
        value = records[-1].get(self.key) if isinstance(records[-1], dict) else None
        return str(value) if value else None
