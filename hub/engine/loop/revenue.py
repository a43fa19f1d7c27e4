"""Revenue at risk vs recovered: the complaints-and-revenue model.

Of every unhappy customer only some tell us (they complain, or answer a survey
as a detractor); for each of them ``revenue.silent_per_complaining`` others stay
silent.  Complaining customers whose complaint is handled still leave at
``revenue.complainer_churn`` (default 0.3); silent unhappy ones leave at
``revenue.silent_churn`` (default 0.8), because nobody could help them.  With
the number of customers and the yearly value per customer:

=====================  ==============================================================
``revenue``            customers x yearly value
``at_risk``            (unhappy_complaining + unhappy_silent) x yearly value
``lost_complaining``   unhappy_complaining x complainer_churn x yearly value
``lost_silent``        unhappy_silent x silent_churn x yearly value
``lost``               lost_complaining + lost_silent; ``lost_share`` = lost / revenue
``kept``               the complaining customers who stay: unhappy_complaining x
                       (1 - complainer_churn) x yearly value - what telling us is worth
``kept_silent``        silent customers who stay anyway
``recovered``          what closed loops kept: treated customers x (the churn of the
                       control group, else of silent unhappy customers, minus the
                       treated customers' churn) x yearly value
=====================  ==============================================================

Example (the model's own): 1,000 customers at EUR 250, 120 complaining and 180
silent unhappy customers: revenue 250,000, at risk 75,000, lost 9,000 + 36,000 =
45,000 (18 %), kept 21,000.

Inputs come from the hub's data (customers; their CRM annual revenue where
known, else ``revenue.default_yearly_value``; customers with a detractor answer
or a case) and config; each can be overridden by the query parameter of the
same name, to play with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hub.engine.loop import outcomes
from hub.storage import models as m

#: The inputs a caller may override, with their types.
INPUTS = {"customers": int, "yearly_value": float, "unhappy_complaining": int, "unhappy_silent": int,
          "complainer_churn": float, "silent_churn": float}


@dataclass(frozen=True)
class Inputs:
    customers: int
    yearly_value: float
    unhappy_complaining: int
    unhappy_silent: int
    complainer_churn: float
    silent_churn: float
    #: Where each input came from: "data", "config" or "query".
    basis: dict[str, str]


def measured_inputs(session: Session, config) -> Inputs:
    """The model's inputs from the hub's data and config."""
    rev = config.get("revenue", {})
    default_value = float(rev.get("default_yearly_value", 250))
    C = m.Customer
    customers, known_total, known = session.execute(
        select(func.count(C.id), func.coalesce(func.sum(C.value), 0), func.count(C.value))).one()
    revenue = float(known_total) + (customers - known) * default_value
    yearly_value = revenue / customers if customers else default_value
    F, K = m.FeedbackItem, m.Case
    complaining = session.scalar(select(func.count(func.distinct(C.id))).where(or_(
        select(F.id).where(F.customer_id == C.id, F.category == "detractor").exists(),
        select(K.id).where(K.customer_id == C.id).exists()))) or 0
    silent = round(complaining * float(rev.get("silent_per_complaining", 1.5)))
    return Inputs(customers, yearly_value, complaining, silent, float(rev.get("complainer_churn", 0.3)),
                  float(rev.get("silent_churn", 0.8)),
                  {"customers": "data", "yearly_value": "data" if known else "config", "unhappy_complaining": "data",
                   "unhappy_silent": "config", "complainer_churn": "config", "silent_churn": "config"})


def with_overrides(inputs: Inputs, overrides: dict[str, Any]) -> Inputs:
    values = {name: getattr(inputs, name) for name in INPUTS}
    basis = dict(inputs.basis)
    for name, value in overrides.items():
        values[name] = value
        basis[name] = "query"
    if "unhappy_complaining" in overrides and "unhappy_silent" not in overrides and basis["unhappy_silent"] == "config":
        # The silent estimate follows the complaining count it is estimated from.
        ratio = inputs.unhappy_silent / inputs.unhappy_complaining if inputs.unhappy_complaining else None
        if ratio is not None:
            values["unhappy_silent"] = round(values["unhappy_complaining"] * ratio)
    return Inputs(**values, basis=basis)


def _money(value: float) -> float:
    return round(value, 2)


def revenue_model(inputs: Inputs, recovered: float = 0.0) -> dict[str, Any]:
    v = inputs.yearly_value
    revenue = inputs.customers * v
    lost_complaining = inputs.unhappy_complaining * inputs.complainer_churn * v
    lost_silent = inputs.unhappy_silent * inputs.silent_churn * v
    lost = lost_complaining + lost_silent
    return {
        "revenue": _money(revenue),
        "at_risk": _money((inputs.unhappy_complaining + inputs.unhappy_silent) * v),
        "kept": _money(inputs.unhappy_complaining * (1 - inputs.complainer_churn) * v),
        "kept_silent": _money(inputs.unhappy_silent * (1 - inputs.silent_churn) * v),
        "lost": _money(lost),
        "lost_share": round(lost / revenue, 4) if revenue else 0.0,
        "lost_complaining": _money(lost_complaining),
        "lost_silent": _money(lost_silent),
        "recovered": _money(recovered),
    }


def recovered_by_loops(session: Session, inputs: Inputs) -> tuple[float, str, int]:
    """(EUR recovered, basis "control" | "model", treated customers): treated customers kept
    against the control group's churn, or against the silent churn while there is no control group."""
    report = outcomes.compare(outcomes.ledger(session))
    treated, control = report["treated"], report["control"]
    if not treated["cases"]:
        return 0.0, "model", 0
    churn_known = session.scalar(select(func.count(m.CustomerEvent.id))) or 0
    treated_churn = treated["churn_rate"] if churn_known else inputs.complainer_churn
    if control["cases"]:
        baseline, basis = control["churn_rate"], "control"
    else:
        baseline, basis = inputs.silent_churn, "model"
    return max(0.0, baseline - treated_churn) * treated["cases"] * inputs.yearly_value, basis, treated["cases"]


def revenue_at_risk(session: Session, config, overrides: dict[str, Any]) -> dict[str, Any]:
    inputs = with_overrides(measured_inputs(session, config), overrides)
    recovered, basis, treated = recovered_by_loops(session, inputs)
    answer = revenue_model(inputs, recovered)
    answer.update(currency=config.get("revenue", {}).get("currency", "EUR"), recovered_basis=basis,
                  treated_customers=treated,
                  inputs={name: getattr(inputs, name) for name in INPUTS}, input_basis=inputs.basis)
    return answer
