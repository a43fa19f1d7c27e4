"""Progress of long work (backfills, pulls, imports): done, total, rate and ETA.

One reporter for every long run, so a backfill of 550,000 responses says how
far it is wherever it runs:

* on a terminal, a tqdm bar (with the total and tqdm's ETA once known);
* anywhere else (systemd, cron, ``docker logs``, a CI log), one log line every
  ``interval`` seconds, and one when the run ends::

      backfill nps: 120,000 / 550,000 (21.8 %), 2,050/s, ETA 3m30s

The total comes from whoever knows it cheaply: a stream's paginator reads it
from the first page (:meth:`hub.sdk.pagination.Paginator.total`, Typeform's
``total_items``), an import counts the file's lines up front.  Without one the
line shows the count and the rate only; a total that turns out too small never
gives a negative ETA or more than 100 %.

The interval is ``[progress] log_seconds`` (default 5).  Time is read from a
monotonic clock: the injected clock's ``monotonic()`` when it has one, else
:func:`time.monotonic`; tests pass their own, so nothing depends on the wall
clock.  The rate is the average since the start: an ETA that moves with every
slow page would be less honest, not more.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0


def interval_from(config: Mapping[str, Any] | None) -> float:
    """``[progress] log_seconds`` of the hub's configuration (default 5 s)."""
    section = (config or {}).get("progress") or {}
    value = section.get("log_seconds", DEFAULT_INTERVAL) if isinstance(section, Mapping) else DEFAULT_INTERVAL
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"progress.log_seconds must be a positive number of seconds, not {value!r}")
    return float(value)


def monotonic_of(clock: Any) -> Callable[[], float]:
    """The clock's monotonic time when it offers one, else the process's."""
    own = getattr(clock, "monotonic", None)
    return own if callable(own) else time.monotonic


def duration(seconds: float) -> str:
    """``45s``, ``3m30s``, ``2h05m``: short enough for a log line.

    >>> duration(210), duration(7500), duration(4.4)
    ('3m30s', '2h05m', '4s')
    """
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:,.1f}"


class Progress:
    """Counts work done against an (optional) total and shows it; see the module docstring.

    Use as a context manager, or call :meth:`close`.  It is also the
    ``progress`` callback of :func:`hub.engine.pulls.pull` (``progress(records,
    new_items)`` after each committed page; ``add_total(n)`` when a stream
    knows its size) and of :func:`hub.engine.importer.import_file`
    (``progress(lines)``).
    """

    def __init__(self, label: str, *, total: int | None = None, unit: str = "records",
                 interval: float = DEFAULT_INTERVAL, monotonic: Callable[[], float] | None = None,
                 terminal: bool | None = None, stream: IO[str] | None = None,
                 logger: logging.Logger | None = None):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.label = label
        self.unit = unit
        self.total = total
        self.done = 0
        self.created = 0
        self.interval = interval
        self._now = monotonic or time.monotonic
        self._log = logger or log
        self.started = self._now()
        self._last_line = self.started
        self._closed = False
        out = stream if stream is not None else sys.stderr
        is_tty = terminal if terminal is not None else bool(getattr(out, "isatty", lambda: False)())
        self._bar = None
        if is_tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=f" {unit}", desc=label, file=out, unit_scale=False)

    # -- counting -------------------------------------------------------
    def add_total(self, n: int) -> None:
        """Another part of the run (a stream) will bring ``n`` more."""
        self.set_total((self.total or 0) + int(n))

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def update(self, n: int = 1, created: int | None = None) -> None:
        """``n`` more done (``created`` of them new, when that is counted)."""
        self.done += n
        if created is not None:
            self.created += created
        if self._bar is not None:
            self._bar.update(n)
            if created is not None:
                self._bar.set_postfix(new=f"{self.created:,}", refresh=False)
            return
        now = self._now()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._log.info("%s", self.line(now))

    def __call__(self, n: int, created: int | None = None) -> None:
        self.update(n, created)

    # -- showing --------------------------------------------------------
    def rate(self, now: float | None = None) -> float | None:
        elapsed = (self._now() if now is None else now) - self.started
        return self.done / elapsed if elapsed > 0 else None

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the average rate so far; None without a total or a rate yet."""
        rate = self.rate(now)
        if self.total is None or not rate:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def line(self, now: float | None = None) -> str:
        """``backfill nps: 120,000 / 550,000 (21.8 %), 2,050/s, ETA 3m30s``."""
        now = self._now() if now is None else now
        if self.total:
            share = min(100.0, 100.0 * self.done / self.total)
            text = f"{self.label}: {self.done:,} / {max(self.total, self.done):,} ({share:.1f} %)"
        else:
            text = f"{self.label}: {self.done:,} {self.unit}"
        rate = self.rate(now)
        if rate is not None:
            text += f", {_rate(rate)}/s"
        eta = self.eta(now)
        if eta is not None:
            text += f", ETA {duration(eta)}"
        return text

    def close(self, error: BaseException | None = None) -> None:
        """End the display; outside a terminal, log the run's last line."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        now = self._now()
        rate = self.rate(now)
        new = f" ({self.created:,} new)" if self.created else ""
        speed = f", {_rate(rate)}/s" if rate is not None else ""
        verb = "stopped after" if error is not None else "finished,"
        self._log.info("%s: %s %s %s%s in %s%s", self.label, verb, f"{self.done:,}", self.unit, new,
                       duration(now - self.started), speed)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc)
