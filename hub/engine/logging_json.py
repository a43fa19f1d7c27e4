"""JSON log lines (``log_format = "json"`` or ``HUB_LOG_FORMAT=json``) for log shippers.

One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message`` and, for an exception, ``exc`` (its traceback as one string).
Secrets stay out as they do in text logs: the hub never logs tokens or keys,
and URLs it logs carry no passwords (``masked`` broker URLs, rendered
database URLs); values that look like a bearer token or a URL's password are
masked here once more, in case a library logs one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

#: Bearer tokens and passwords in URLs (scheme://user:password@host), masked whatever logged them.
_SECRETS = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}|(://[^/\s:@]+:)[^@\s/]+(@)")


def _mask(text: str) -> str:
    return _SECRETS.sub(lambda mt: f"{mt.group(1)}***" if mt.group(1) else f"{mt.group(2)}***{mt.group(3)}", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = _mask(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = _mask(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_json_logs(root: logging.Logger | None = None) -> None:
    """Give every handler of the root logger the JSON format (adds a stderr handler when there is none)."""
    root = root or logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())
