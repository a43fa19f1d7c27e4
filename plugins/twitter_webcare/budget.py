"""The monthly read budget: X plans cap how many posts an app may read a month.

Every post a poll returns counts (X bills the posts in ``data``, retweets and
our own replies included).  The budget does three things:

* **pacing**: a poll starts only while the month's reads stay within a linear
  allowance (``budget * elapsed share of the period + one day's share``), so a
  busy first week cannot spend the whole month and leave the team blind in the
  last week; quiet hours build up allowance for busy ones;
* **hard stop**: when the budget is spent, polling stops until the period
  resets (a run that reaches it stops before its next page, keeping the old
  cursor so nothing is skipped: next period re-reads from there);
* **usage cap**: when X itself answers ``429 UsageCapExceeded`` the instance
  stops polling until the period resets; waiting for the rate-limit window
  would not help, and every further call would fail too.  One probe run every
  :data:`USAGE_CAP_PROBE_SECONDS` checks whether the cap was lifted (the plan
  raised): its first page read successfully clears the cap.

The count must survive restarts and be shared by every process that polls
(the scheduler, a manual ``feedback-hub pull``, ``feedback-hub sources``
reading it).  It lives in the instance's state store (``connector.state``,
key ``read_budget``): the hub's database, where every change is an atomic
read-modify-write (see :mod:`hub.sdk.state`), so two processes recording at
once never lose a count.  A ledger *file* written by earlier versions is
imported once when the store has no count yet.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.sdk import Clock, FatalError, StateStore

log = logging.getLogger(__name__)


#: While X's usage cap holds, one run this often may try (a raised plan lifts the cap mid-period).
USAGE_CAP_PROBE_SECONDS = 6 * 3600


class ReadBudgetExhausted(FatalError):
    """The configured monthly read budget is spent (raised before the next page)."""


class UsageCapExceeded(FatalError):
    """X answered 429 UsageCapExceeded: the plan's monthly post cap is reached."""


def period_bounds(now: dt.datetime, reset_day: int) -> tuple[dt.datetime, dt.datetime]:
    """The budget period containing ``now``: from ``reset_day`` 00:00 UTC to the next."""

    def at(year: int, month: int) -> dt.datetime:
        day = min(reset_day, calendar.monthrange(year, month)[1])
        return dt.datetime(year, month, day, tzinfo=dt.UTC)

    def shift(year: int, month: int, by: int) -> tuple[int, int]:
        index = year * 12 + (month - 1) + by
        return index // 12, index % 12 + 1

    start = at(now.year, now.month)
    if now < start:
        start = at(*shift(now.year, now.month, -1))
    end = at(*shift(start.year, start.month, 1))
    return start, end


class StateLedger:
    """The budget's document (reads per period, usage cap, last windows) in a state store."""

    KEY = "read_budget"

    def __init__(self, store: StateStore, legacy_file: Path | None = None):
        self.store = store
        self.legacy_file = legacy_file
        self._legacy_checked = legacy_file is None

    def read(self) -> dict[str, Any]:
        self._import_legacy()
        data = self.store.get(self.KEY)
        if data is not None and not isinstance(data, dict):  # a damaged ledger must not stop polling
            log.warning("X read ledger in the state store is a %s, not an object; starting a fresh count",
                        type(data).__name__)
            return {}
        return data or {}

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply ``change`` to the document atomically (no count lost to a concurrent writer)."""
        self._import_legacy()

        def apply(current: Any) -> dict[str, Any]:
            data = current if isinstance(current, dict) else {}
            change(data)
            return data

        return self.store.update(self.KEY, apply)

    def _import_legacy(self) -> None:
        """Carry a pre-state-store ledger file over once, so an upgrade mid-month keeps its count."""
        if self._legacy_checked:
            return
        self._legacy_checked = True
        assert self.legacy_file is not None
        try:
            data = json.loads(self.legacy_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("X read ledger file %s unreadable (%s); not imported", self.legacy_file, exc)
            return
        if isinstance(data, dict) and data:
            # Only into an empty store: a second process doing the same finds it filled.
            self.store.update(self.KEY, lambda current: current if isinstance(current, dict) and current else data)
            log.info("X read ledger imported from %s into the hub's database (the file is no longer used)",
                     self.legacy_file)


@dataclass(frozen=True)
class BudgetStatus:
    period_start: dt.datetime
    period_end: dt.datetime
    used: int
    budget: int | None
    #: ok | pacing | spent | usage-capped | unlimited
    state: str
    #: When polling resumes (pacing, spent, capped), else None.
    resumes_at: dt.datetime | None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        remaining = None if self.budget is None else max(0, self.budget - self.used)
        return {
            "state": self.state,
            "period": f"{self.period_start:%Y-%m-%d} .. {self.period_end:%Y-%m-%d}",
            "posts_read": self.used,
            "budget": self.budget,
            "remaining": remaining,
            "resumes_at": self.resumes_at.isoformat() if self.resumes_at else None,
            **({"detail": self.detail} if self.detail else {}),
        }


class ReadBudget:
    """Counts posts read per period and decides whether a poll may start."""

    #: Keep this many past periods in the ledger (for the admin's curiosity).
    KEEP_PERIODS = 13

    def __init__(self, ledger: StateLedger, *, monthly_budget: int | None, reset_day: int = 1,
                 pacing: bool = True, clock: Clock | None = None, name: str = "x"):
        self.ledger = ledger
        self.budget = monthly_budget if monthly_budget and monthly_budget > 0 else None
        self.reset_day = reset_day
        self.pacing = pacing
        self.clock = clock or Clock()
        self.name = name

    # -- time -------------------------------------------------------------------
    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC)

    def period(self, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
        return period_bounds(now or self.now(), self.reset_day)

    # -- state ------------------------------------------------------------------
    def used(self, data: dict[str, Any] | None = None, now: dt.datetime | None = None) -> int:
        data = self.ledger.read() if data is None else data
        start, _ = self.period(now)
        return int((data.get("periods") or {}).get(start.date().isoformat(), 0))

    def allowance(self, now: dt.datetime) -> float:
        """Posts the pacing allows to have been read by ``now`` this period."""
        assert self.budget is not None
        start, end = self.period(now)
        length = (end - start).total_seconds()
        share = (now - start).total_seconds() / length
        one_day = self.budget * 86400 / length
        return min(float(self.budget), self.budget * share + one_day)

    def _pacing_resumes(self, used: int, now: dt.datetime) -> dt.datetime:
        """First moment the allowance exceeds ``used``."""
        assert self.budget is not None
        start, end = self.period(now)
        length = (end - start).total_seconds()
        one_day = self.budget * 86400 / length
        seconds = (used - one_day) * length / self.budget
        return max(now, start + dt.timedelta(seconds=seconds + 1))

    def status(self) -> BudgetStatus:
        now = self.now()
        data = self.ledger.read()
        start, end = self.period(now)
        used = self.used(data, now)
        capped = data.get("usage_capped_until")
        if capped and capped > now.timestamp():
            return BudgetStatus(start, end, used, self.budget, "usage-capped",
                                dt.datetime.fromtimestamp(capped, dt.UTC), data.get("usage_cap_detail"))
        if self.budget is None:
            return BudgetStatus(start, end, used, None, "unlimited", None)
        if used >= self.budget:
            return BudgetStatus(start, end, used, self.budget, "spent", end)
        if self.pacing and used >= self.allowance(now):
            return BudgetStatus(start, end, used, self.budget, "pacing", self._pacing_resumes(used, now))
        return BudgetStatus(start, end, used, self.budget, "ok", None)

    # -- decisions used by the HTTP client ----------------------------------------
    def gate(self) -> str | None:
        """Before a stream's first request: None to go ahead, or why to skip.

        Raises :class:`UsageCapExceeded` while X's cap is in force, so the
        instance keeps showing it as its last error (no request is sent).
        """
        st = self.status()
        if st.state == "usage-capped":
            if self._claim_cap_probe():
                log.info("%s: X usage cap in force; probing once whether it was lifted", self.name)
                return None
            raise UsageCapExceeded(
                f"{self.name}: X monthly usage cap reached ({st.detail or 'UsageCapExceeded'}); "
                f"not polling until {st.resumes_at:%Y-%m-%d %H:%M} UTC (budget_reset_day), apart from one "
                f"probe every {USAGE_CAP_PROBE_SECONDS // 3600} hours that resumes polling once the plan is raised")
        if st.state in ("spent", "pacing"):
            return (f"monthly read budget {st.state}: {st.used} of {st.budget} posts read; "
                    f"next poll at {st.resumes_at:%Y-%m-%d %H:%M} UTC")
        return None

    def before_next_page(self) -> None:
        """Within a run: stop before a page that the budget can no longer pay for."""
        if self.budget is not None and self.used() >= self.budget:
            _, end = self.period()
            raise ReadBudgetExhausted(
                f"{self.name}: monthly read budget of {self.budget} posts spent mid-run; stopped before the "
                f"next page (cursor kept, resumes {end:%Y-%m-%d})")

    def _claim_cap_probe(self) -> bool:
        """True for the one caller (of any process) whose run may probe the cap now."""
        now = self.clock.time()
        claimed: list[bool] = []

        def change(data: dict[str, Any]) -> None:
            last = data.get("usage_cap_probe_at") or 0
            if now - last >= USAGE_CAP_PROBE_SECONDS:
                data["usage_cap_probe_at"] = now
                claimed.append(True)

        self.ledger.update(change)
        return bool(claimed)

    def record(self, posts: int, rate_limits: dict[str, Any] | None = None) -> None:
        """Count a page's posts; a page read at all means X's usage cap no longer holds."""
        start, _ = self.period()
        key = start.date().isoformat()

        def change(data: dict[str, Any]) -> None:
            for lifted in ("usage_capped_until", "usage_cap_detail", "usage_cap_probe_at"):
                data.pop(lifted, None)
            periods = data.setdefault("periods", {})
            periods[key] = int(periods.get(key, 0)) + posts
            for old in sorted(periods)[:-self.KEEP_PERIODS]:
                del periods[old]
            if rate_limits:
                data.setdefault("rate_limits", {}).update(rate_limits)

        self.ledger.update(change)

    def mark_usage_capped(self, detail: str) -> dt.datetime:
        _, end = self.period()

        now = self.clock.time()

        def change(data: dict[str, Any]) -> None:
            data["usage_capped_until"] = end.timestamp()
            data["usage_cap_detail"] = detail
            data["usage_cap_probe_at"] = now  # the next probe is one interval from now

        self.ledger.update(change)
        return end

    def note_rate_limits(self, rate_limits: dict[str, Any]) -> None:
        self.ledger.update(lambda data: data.setdefault("rate_limits", {}).update(rate_limits))
