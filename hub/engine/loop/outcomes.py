"""The outcome ledger: per case, what the loop achieved; and the comparison of
treated and control cases that says whether callbacks cause it.

Per case: the score before (the first scored item of the case) and after (the
re-survey's answer), the category change, time to first contact, churned or
renewed (``customer_event`` rows from the CRM or ``POST /api/v1/events``,
after the case opened), and repeat inbound contacts within
``loop.repeat_window_days`` after the loop closed (items of the customer from
other cases or none, after the case was closed or, if it never was, contacted).

:func:`compare` groups detractor cases into treated (callback) and control
(held out, :mod:`.control_group`).  A rate comes with its 95 % Wilson
interval; the difference treated - control with a two-sided two-proportion
z-test (pooled) and a 95 % interval (unpooled).  A callback that works shows a
positive conversion difference whose interval stays above 0.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.sdk.schema import score_category
from hub.storage import models as m

Z95 = 1.959963984540054
IMPROVED = ("passive", "promoter")
CHUNK = 500


@dataclass(frozen=True)
class CaseOutcome:
    case_id: int
    customer_id: int | None
    control: bool
    score_before: int | None
    category_before: str | None
    score_after: int | None
    category_after: str | None
    hours_to_first_contact: float | None
    churned: bool
    renewed: bool
    repeat_contacts: int
    closed: bool
    opened_at: dt.datetime | None = None
    #: Somebody talked to the customer (the callback) or the customer answered the re-survey.
    loop_closed: bool = False

    @property
    def resurveyed(self) -> bool:
        return self.score_after is not None

    @property
    def converted(self) -> bool:
        return self.category_before == "detractor" and self.category_after in IMPROVED

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "opened_at"}
        out.update(resurveyed=self.resurveyed, converted=self.converted)
        return out


def _chunks(values: list[int]):
    for i in range(0, len(values), CHUNK):
        yield values[i:i + CHUNK]


def ledger(session: Session, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
           repeat_window_days: float = 30) -> list[CaseOutcome]:
    """One :class:`CaseOutcome` per case opened in [since, until)."""
    C, F, E = m.Case, m.FeedbackItem, m.CustomerEvent
    q = select(C.id, C.customer_id, C.control, C.opened_at, C.contacted_at, C.closed_at, C.resurvey_nps,
               C.resurvey_score, C.resurvey_scale)
    if since is not None:
        q = q.where(C.opened_at >= since)
    if until is not None:
        q = q.where(C.opened_at < until)
    cases = session.execute(q.order_by(C.id)).all()
    ids = [c.id for c in cases]
    customers = sorted({c.customer_id for c in cases if c.customer_id is not None})
    first: dict[int, tuple[int | None, str | None]] = {}
    for chunk in _chunks(ids):
        for case_id, nps, score, category in session.execute(
                select(F.case_id, F.nps, F.score, F.category).where(F.case_id.in_(chunk), F.category.is_not(None))
                .order_by(F.case_id, F.occurred_at, F.id)):
            first.setdefault(case_id, (nps if nps is not None else score, category))
    events: dict[int, list[tuple[str, dt.datetime]]] = defaultdict(list)
    contacts: dict[int, list[tuple[dt.datetime, int | None]]] = defaultdict(list)
    for chunk in _chunks(customers):
        for cid, kind, at in session.execute(select(E.customer_id, E.type, E.occurred_at).where(E.customer_id.in_(chunk))):
            events[cid].append((kind, at))
        for cid, at, case_id in session.execute(select(F.customer_id, F.occurred_at, F.case_id).where(
                F.customer_id.in_(chunk))):
            contacts[cid].append((at, case_id))
    window = dt.timedelta(days=repeat_window_days)
    out = []
    for c in cases:
        before, category_before = first.get(c.id, (None, None))
        after, scale = (c.resurvey_score, c.resurvey_scale) if c.resurvey_score is not None else (c.resurvey_nps, "nps")
        # A loop closed with the callback (or the case's closure); an unclosed one counts from its opening.
        ref = c.closed_at or c.contacted_at or c.opened_at
        seen = events.get(c.customer_id, [])
        repeats = 0 if ref is None else sum(1 for at, case_id in contacts.get(c.customer_id, [])
                                            if case_id != c.id and ref < at <= ref + window)
        out.append(CaseOutcome(
            case_id=c.id, customer_id=c.customer_id, control=bool(c.control), score_before=before,
            category_before=category_before, score_after=after, category_after=score_category(after, scale),
            hours_to_first_contact=round((c.contacted_at - c.opened_at).total_seconds() / 3600, 2)
            if c.contacted_at else None,
            churned=any(kind == "churned" and at >= c.opened_at for kind, at in seen),
            renewed=any(kind == "renewed" and at >= c.opened_at for kind, at in seen),
            repeat_contacts=repeats, closed=c.closed_at is not None, opened_at=c.opened_at,
            loop_closed=c.contacted_at is not None or after is not None))
    return out


# -- statistics -------------------------------------------------------------------------
def wilson(successes: int, n: int, z: float = Z95) -> list[float] | None:
    """95 % Wilson score interval of a proportion (None without observations)."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def two_proportions(x1: int, n1: int, x2: int, n2: int) -> dict[str, Any]:
    """Difference p1 - p2 with its 95 % interval and a two-sided z-test."""
    if not n1 or not n2:
        return {"difference": None, "ci95": None, "z": None, "p_value": None, "significant": False}
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (p1 - p2) / se_pooled if se_pooled else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    diff = p1 - p2
    return {"difference": round(diff, 4), "ci95": [round(diff - Z95 * se, 4), round(diff + Z95 * se, 4)],
            "z": round(z, 3), "p_value": round(p_value, 4), "significant": p_value < 0.05}


def _rate(x: int, n: int) -> float | None:
    return round(x / n, 4) if n else None


def group_stats(rows: list[CaseOutcome]) -> dict[str, Any]:
    resurveyed = [r for r in rows if r.resurveyed]
    converted = sum(r.converted for r in resurveyed)
    churned = sum(r.churned for r in rows)
    with_repeat = sum(r.repeat_contacts > 0 for r in rows)
    contact_hours = [r.hours_to_first_contact for r in rows if r.hours_to_first_contact is not None]
    return {
        "cases": len(rows), "resurveyed": len(resurveyed), "converted": converted,
        "conversion_rate": _rate(converted, len(resurveyed)), "conversion_ci95": wilson(converted, len(resurveyed)),
        "churned": churned, "churn_rate": _rate(churned, len(rows)) or 0.0, "churn_ci95": wilson(churned, len(rows)),
        "renewed": sum(r.renewed for r in rows),
        "repeat_contacts": sum(r.repeat_contacts for r in rows),
        "repeat_rate": _rate(with_repeat, len(rows)), "repeat_ci95": wilson(with_repeat, len(rows)),
        "median_hours_to_first_contact": sorted(contact_hours)[len(contact_hours) // 2] if contact_hours else None,
    }


def compare(rows: list[CaseOutcome]) -> dict[str, Any]:
    """Treated vs control among detractor cases, with the differences and their tests."""
    detractors = [r for r in rows if r.category_before == "detractor"]
    treated = [r for r in detractors if not r.control]
    control = [r for r in detractors if r.control]
    t, c = group_stats(treated), group_stats(control)
    return {
        "treated": t, "control": c,
        "conversion_difference": two_proportions(t["converted"], t["resurveyed"], c["converted"], c["resurveyed"]),
        "churn_difference": two_proportions(t["churned"], t["cases"], c["churned"], c["cases"]),
        "repeat_difference": two_proportions(sum(r.repeat_contacts > 0 for r in treated), len(treated),
                                             sum(r.repeat_contacts > 0 for r in control), len(control)),
    }


def weekly_conversion(rows: list[CaseOutcome], tz) -> list[dict[str, Any]]:
    """Per week the cases opened (local week, Monday first): conversion of re-surveyed detractors,
    treated and control."""
    weeks: dict[dt.date, dict[str, list[CaseOutcome]]] = defaultdict(lambda: {"treated": [], "control": []})
    for r in rows:
        if r.category_before != "detractor" or not r.resurveyed or r.opened_at is None:
            continue
        local = r.opened_at.astimezone(tz).date()
        weeks[local - dt.timedelta(days=local.weekday())]["control" if r.control else "treated"].append(r)
    out = []
    for week in sorted(weeks):
        g = weeks[week]
        out.append({"week": week.isoformat(), **{
            key: {"resurveyed": len(g[key]), "converted": sum(x.converted for x in g[key]),
                  "rate": _rate(sum(x.converted for x in g[key]), len(g[key]))} for key in ("treated", "control")}})
    return out


def repeat_rates(rows: list[CaseOutcome]) -> dict[str, float | None]:
    """Share of cases with a repeat contact: loops closed (called back or re-surveyed) vs not."""
    closed = [r for r in rows if r.loop_closed]
    unclosed = [r for r in rows if not r.loop_closed]
    return {"closed": _rate(sum(r.repeat_contacts > 0 for r in closed), len(closed)),
            "unclosed": _rate(sum(r.repeat_contacts > 0 for r in unclosed), len(unclosed)),
            "closed_cases": len(closed), "unclosed_cases": len(unclosed)}
