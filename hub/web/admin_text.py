"""The admin page in sentences: health facts, connector errors with a hint,
rate budgets, and which configuration files are in use.

An admin reads "Rate limited by the platform: the hub waits and retries by
itself", not ``HTTPError('429 ...')`` or ``{'state': 'ok', ...}``.  The hints
are generic (by HTTP status or error kind), so the page names no vendor.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from hub.config import DEFAULT_FILE, Config
from hub.web.filters import localtime
from hub.web.i18n import gettext

#: (pattern in the error text, hint): first match wins.
HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b401\b|unauthori[sz]ed|invalid[_ ]token|authentication", re.I),
     "The credentials were refused: check the token or key this instance's settings refer to."),
    (re.compile(r"\b403\b|forbidden|permission", re.I),
     "The account lacks a permission: check the app's scopes or the account's role at the platform."),
    (re.compile(r"\b404\b|not found", re.I),
     "Something the settings name does not exist (a form, account or id): check the instance's settings."),
    (re.compile(r"\b429\b|rate.?limit|too many requests|usage.?cap", re.I),
     "The platform limits requests: the hub waits as asked and retries by itself."),
    (re.compile(r"\b5\d\d\b|unavailable|bad gateway|internal server error", re.I),
     "The platform has a problem on its side: the hub retries with growing pauses."),
    (re.compile(r"timed? ?out|timeout|connection|resolve|refused|unreachable", re.I),
     "The platform could not be reached: check the network or proxy; the hub retries."),
    (re.compile(r"\b400\b|invalid|bad request", re.I),
     "The platform refused the request as invalid: check the instance's settings (queries, fields)."),
)


def error_sentence(error: str | None) -> dict[str, str] | None:
    """The error as stored (kept for reference) plus what to do about it."""
    if not error:
        return None
    for pattern, hint in HINTS:
        if pattern.search(error):
            return {"text": error, "hint": gettext(hint)}
    return {"text": error, "hint": gettext("See the hub's log for details; the next run tries again.")}


def readable(value: Any) -> str:
    """A health fact as words: nested tables become "key: value" lists."""
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')}: {readable(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(readable(v) for v in value) or "-"
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    if isinstance(value, dt.datetime):
        return localtime(value)
    if value is None:
        return "-"
    return str(value)


def config_files(cfg: Config) -> list[str]:
    """The files the running configuration was read from, defaults first."""
    files = [str(DEFAULT_FILE)]
    for origin in getattr(cfg, "origins", {}).values():
        if origin not in files and not origin.startswith("<"):
            files.append(origin)
    return files
