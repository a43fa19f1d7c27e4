"""Identity resolution beyond exact keys: which customer an item belongs to,
how sure the hub is, and why (the evidence line agents read).

The pipeline's ``resolve_identity`` step calls :func:`resolve` once per batch.
Rules, each with a confidence from ``[identity.weights]``:

=====================  ===================================================================
exact                  an identity (kind + normalized value) the hub already knows: 1.0
``handle_email_name``  a social handle equal to an e-mail's local part, letters and digits
                       only (``@bram_vos16`` ~ ``bram.vos16@...``), and the same name
``handle_email``       the same without (or with a different) name
``name_email_domain``  the same name and an e-mail at the same company domain (never at
                       a shared mail provider, ``free_mail_domains``)
``mention_hidden``     an e-mail or ``@handle`` in a survey's hidden fields
``mention_text``       an e-mail or ``@handle`` typed in a survey answer
``crm_lookup``         the CRM has a contact with this e-mail or phone (:mod:`hub.engine.crm_identity`)
``crm_handle``         a handle that CRM contact holds
``conflict``           one item carries identities of two customers
=====================  ===================================================================

At or above ``identity.auto_link`` a new identity joins the customer by itself
(and the item with it); from ``identity.suggest`` up to it, a suggestion is
queued for an agent.  An identity that already belongs to another customer
never moves silently: two existing customers become one only by a merge an
agent confirms (:mod:`hub.engine.merge`).

Batched like every step: whatever the page size, one look-up of exact
identities, one of match keys, one of names, one of earlier suggestions, then
one multi-row INSERT each for customers, identities and suggestions.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub.storage import models as m
from hub.storage.database import bulk_insert, pairs_query

if TYPE_CHECKING:
    from hub.engine.pipeline import Batch, Customer, Fresh

#: Kinds whose values are addresses or numbers: they never meet a handle by match key.
NOT_HANDLES = ("phone", "crm_id")
EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
MENTION_RE = re.compile(r"(?<![\w@/])@([A-Za-z0-9_.]{2,50})")
HIDDEN_KEYS = ("hidden",)  # where a survey keeps hidden fields in ``extra``
EVIDENCE_MAX = 500


# -- folding ------------------------------------------------------------------------
def fold(text: str) -> str:
    """Lower case without accents: "Sébastien" and "sebastien" compare equal."""
    if text.isascii():  # most names and addresses: no accents to take off
        return text.lower()
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def name_key(name: str | None) -> str | None:
    """A name folded for comparing: "Bram  Vos" and "bram vos" are one key; None for no name."""
    if not name:
        return None
    key = " ".join(re.sub(r"[^\w]+", " ", fold(name)).split())
    return key[:200] or None


def match_key(kind: str, value: str) -> str | None:
    """Letters and digits of an e-mail's local part or of a handle (None for phones and CRM ids)."""
    if kind in NOT_HANDLES:
        return None
    if kind == "email":
        value = value.rsplit("@", 1)[0]
    key = re.sub(r"[^0-9a-z]", "", fold(value))
    return key[:200] or None


def email_domain(value: str) -> str | None:
    return value.rsplit("@", 1)[1].lower() if "@" in value else None


# -- configuration ------------------------------------------------------------------
@dataclass(frozen=True)
class Rules:
    auto_link: float
    suggest: float
    weights: Mapping[str, float]
    free_mail: frozenset[str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Rules:
        cfg = config.get("identity") or {}
        return cls(float(cfg.get("auto_link", 0.9)), float(cfg.get("suggest", 0.5)), dict(cfg.get("weights") or {}),
                   frozenset(d.lower() for d in cfg.get("free_mail_domains", ())))

    def weight(self, rule: str) -> float:
        return float(self.weights.get(rule, 0.0))


@dataclass
class Candidate:
    """A customer an item may belong to, by one rule."""

    customer: Customer
    confidence: float
    rule: str
    evidence: str
    identity: tuple[str, str]  # the item's identity that matched (kind, value)


@dataclass
class Proposal:
    """A suggestion to insert: is ``other`` (holding ``identity``) the same person as ``customer``?"""

    customer: Customer
    other: Customer | None
    identity: tuple[str, str]
    confidence: float
    rule: str
    evidence: str


@dataclass
class Mention:
    identity: tuple[str, str]
    rule: str
    where: str


@dataclass
class Found:
    """What the batch's look-ups found, beyond exact identities."""

    by_key: dict[str, list[tuple[tuple[str, str], Customer, str | None]]] = field(default_factory=dict)
    by_name: dict[str, list[tuple[Customer, str]]] = field(default_factory=dict)  # name key -> (customer, e-mail)


# -- mentions -----------------------------------------------------------------------
def _strings(value: Any) -> list[str]:
    """The strings in ``value`` that hold an "@" (at most two levels down, the first 50 of a
    list): only those can mention anyone.  Level by level, no generator per value (a survey's
    answers are a few hundred values, and every survey item of every batch passes here)."""
    out: list[str] = []
    level = [value]
    for depth in range(3):
        below: list[Any] = []
        for v in level:
            if isinstance(v, str):
                if "@" in v:
                    out.append(v)
            elif depth < 2 and isinstance(v, Mapping):
                below.extend(v.values())
            elif depth < 2 and isinstance(v, list | tuple):
                below.extend(v[:50])
        level = below
    return out


def mentions(f: Fresh, clean: Mapping[str, Any], at_kinds: Iterable[str]) -> list[Mention]:
    """E-mails and ``@handles`` a survey item mentions (hidden fields, then its text),
    as identities of each kind that displays itself with an "@" (a social handle)."""
    if f.item.channel != "survey":
        return []
    found: dict[tuple[str, str], Mention] = {}
    extra = f.item.extra or {}
    sources = [("mention_hidden", "hidden field", s) for key in HIDDEN_KEYS for s in _strings(extra.get(key))]
    sources += [("mention_text", "answer", f.item.text or "")]
    sources += [("mention_text", "answer", s) for s in _strings(extra.get("answers"))]
    for rule, where, text in sources:
        if "@" not in text:  # neither an address nor a handle: the common case, skipped cheaply
            continue
        if len(text) > 5000:
            text = text[:5000]
        for email in EMAIL_RE.findall(text):
            kv = ("email", clean["email"](email))
            found.setdefault(kv, Mention(kv, rule, where))
        for handle in MENTION_RE.findall(text):
            for kind in at_kinds:
                kv = (kind, clean[kind](handle.rstrip(".")))
                if kv[1]:
                    found.setdefault(kv, Mention(kv, rule, where))
    own = set(f.identities)
    return [mt for kv, mt in found.items() if kv not in own]


# -- the step -----------------------------------------------------------------------
def resolve(b: Batch) -> None:
    """Link each fresh item of ``b`` to a customer (see the module docstring)."""
    from hub.engine.pipeline import CUSTOMER, IDENTITY, _select_in

    registry = b.hub.registry
    rules = Rules.from_config(b.hub.config)
    kinds = registry.identity_kinds
    clean = {name: kind.clean for name, kind in kinds.items()}
    for f in b.fresh:  # each value normalized by its kind; undeclared kinds as given
        f.identities = list(dict.fromkeys((k, clean.get(k, str.strip)(v)) for k, v in f.item.customer.identities()))
    at_kinds = [k.name for k in kinds.values() if not k.reachable and k.display.startswith("@")]
    clean_all = {**clean, **{k: clean.get(k, str.strip) for k in at_kinds}}
    said = {id(f): mentions(f, clean_all, at_kinds) for f in b.fresh}

    wanted = {kv for f in b.fresh for kv in f.identities} | {mt.identity for ms in said.values() for mt in ms}
    I = m.Identity  # noqa: E741
    # The kinds too: the unique (kind, value) index then serves the look-up (by value alone, a scan).
    # On PostgreSQL the pairs join the unique index directly (a trigram index on
    # value would otherwise win the plan: hub.storage.database.pairs_query).
    for k, v, cid in _select_in(b.session, sorted(wanted), lambda chunk: pairs_query(
            b.session, (I.kind, I.value), chunk, (I.kind, I.value, I.customer_id))):
        if (k, v) in wanted:
            b.identities[(k, v)] = b.customer(cid)

    strangers = [f for f in b.fresh if not any(kv in b.identities for kv in f.identities)]
    found = _lookup_similar(b, strangers, rules)
    proposals: list[Proposal] = []
    new_customers: list[Customer] = []
    new_identities: list[tuple[Customer, tuple[str, str], float, str]] = []
    for f in b.fresh:
        item_ev = f"{f.item.channel} {b.source}/{f.item.external_id}"
        owners = list(dict.fromkeys(b.identities[kv] for kv in f.identities if kv in b.identities))
        confidence, evidence = 1.0, item_ev
        if owners:
            f.customer = owners[0]
            for other in owners[1:]:  # A's e-mail with B's handle: ask, never merge silently
                kv = next(kv for kv in f.identities if b.identities.get(kv) is other)
                proposals.append(Proposal(f.customer, other, kv, rules.weight("conflict"), "conflict",
                                          f"{item_ev} carries identities of both customers"))
        else:
            best = _best(_candidates(f, found, rules))
            if best is not None and best.confidence >= rules.auto_link:
                f.customer, confidence = best.customer, best.confidence
                evidence = f"{best.evidence} ({item_ev})"
            else:
                f.customer = _new_customer(b, f, new_customers)
                if best is not None and best.confidence >= rules.suggest:
                    proposals.append(Proposal(best.customer, f.customer, best.identity, best.confidence, best.rule,
                                              f"{best.evidence} ({item_ev})"))
        for kv in f.identities:
            if kv not in b.identities:
                b.identities[kv] = f.customer
                new_identities.append((f.customer, kv, confidence, evidence))
                _remember(found, kv, f.customer, name_key(f.item.customer.name))
        for mt in said[id(f)]:
            _mentioned(b, f, mt, rules, item_ev, proposals, new_identities)

    _insert_customers(b, new_customers, CUSTOMER)
    if new_identities:
        # In (kind, value) order: two batches that bring the same new identities (concurrent
        # writers: webhooks, pulls, an import's workers) meet on the first one they share, one
        # waits, then retries on the other's row (Pipeline.ingest); in any other order each
        # could hold a key the other waits for: a deadlock.
        bulk_insert(b.session, IDENTITY, [
            {"customer_id": c.id, "kind": k, "value": v, "confidence": conf, "evidence": ev[:EVIDENCE_MAX],
             "created_at": b.now, "match_key": match_key(k, v)}
            for c, (k, v), conf, ev in sorted(new_identities, key=lambda n: n[1])])
    if proposals:
        from hub.engine.suggestions import insert_proposals

        insert_proposals(b.session, proposals, b.now)


def _new_customer(b: Batch, f: Fresh, new_customers: list[Customer]) -> Customer:
    from hub.engine.pipeline import Customer

    c = Customer(None, f.item.customer.name, new=True, ref=uuid.uuid4().hex)
    new_customers.append(c)
    return c


def _insert_customers(b: Batch, new: list[Customer], table: Any) -> None:
    if not new:
        return
    # Ids reserved and the rows written below the ORM (COPY on PostgreSQL): an
    # INSERT ... RETURNING of a thousand rows was a fifth of an import's identity step.
    ids = bulk_insert(b.session, table, [{"ref": c.ref, "name": c.name, "name_key": name_key(c.name),
                                          "attributes": {}, "created_at": b.now} for c in new])
    for c, cid in zip(new, ids, strict=True):
        c.id = cid


def _mentioned(b: Batch, f: Fresh, mt: Mention, rules: Rules, item_ev: str, proposals: list[Proposal],
               new_identities: list) -> None:
    conf = rules.weight(mt.rule)
    kind, value = mt.identity
    evidence = f"{kind} mentioned in a survey {mt.where} ({item_ev})"
    owner = b.identities.get(mt.identity)
    if owner is f.customer:
        return
    if owner is not None:
        if conf >= rules.suggest:
            proposals.append(Proposal(f.customer, owner, mt.identity, conf, mt.rule, evidence))
    elif conf >= rules.auto_link:
        b.identities[mt.identity] = f.customer
        new_identities.append((f.customer, mt.identity, conf, evidence))
    elif conf >= rules.suggest:
        proposals.append(Proposal(f.customer, None, mt.identity, conf, mt.rule, evidence))


def _remember(found: Found, kv: tuple[str, str], customer: Customer, nkey: str | None) -> None:
    """Later items of the batch meet this identity by match key and name too."""
    key = match_key(*kv)
    if key:
        found.by_key.setdefault(key, []).append((kv, customer, nkey))
    if kv[0] == "email" and nkey:
        found.by_name.setdefault(nkey, []).append((customer, kv[1]))


def _lookup_similar(b: Batch, strangers: list[Fresh], rules: Rules) -> Found:
    """Stored identities sharing a match key, and customers sharing a name and a
    company mail domain, with the items that matched nothing exactly (two queries)."""
    from hub.engine.pipeline import _select_in

    found = Found()
    keys = sorted({k for f in strangers for kv in f.identities if (k := match_key(*kv))})
    names = sorted({n for f in strangers if (n := name_key(f.item.customer.name))
                    and any(kind == "email" and email_domain(v) not in rules.free_mail for kind, v in f.identities)})
    I, C = m.Identity, m.Customer  # noqa: E741
    for kind, value, cid, key, nkey in _select_in(b.session, keys, lambda chunk: select(
            I.kind, I.value, I.customer_id, I.match_key, C.name_key).join(C, C.id == I.customer_id).where(
            I.match_key.in_(chunk))):
        found.by_key.setdefault(key, []).append(((kind, value), b.customer(cid), nkey))
    for cid, nkey, email in _select_in(b.session, names, lambda chunk: select(
            C.id, C.name_key, I.value).join(I, I.customer_id == C.id).where(
            C.name_key.in_(chunk), I.kind == "email", C.merged_into_id.is_(None))):
        found.by_name.setdefault(nkey, []).append((b.customer(cid), email))
    return found


def _candidates(f: Fresh, found: Found, rules: Rules) -> Iterator[Candidate]:
    """Every customer the rules find for an item none of whose identities is known."""
    nkey = name_key(f.item.customer.name)
    for kv in f.identities:
        key = match_key(*kv)
        for other_kv, customer, other_name in found.by_key.get(key or "", ()):
            # An address meets a handle (either way round); two handles or two
            # addresses sharing letters are different people more often than not.
            if (kv[0] == "email") == (other_kv[0] == "email"):
                continue
            same_name = nkey is not None and nkey == other_name
            rule = "handle_email_name" if same_name else "handle_email"
            handle, email = (kv, other_kv) if other_kv[0] == "email" else (other_kv, kv)
            yield Candidate(customer, rules.weight(rule), rule,
                            f"{handle[0]} {handle[1]} matches e-mail {email[1]}" + (" and the name" if same_name else ""),
                            kv)
        if kv[0] == "email" and nkey and (domain := email_domain(kv[1])) and domain not in rules.free_mail:
            for customer, email in found.by_name.get(nkey, ()):
                if email != kv[1] and email_domain(email) == domain:
                    yield Candidate(customer, rules.weight("name_email_domain"), "name_email_domain",
                                    f"same name and e-mail domain as {email}", kv)


def _best(candidates: Iterable[Candidate]) -> Candidate | None:
    best = None
    for c in candidates:
        if best is None or c.confidence > best.confidence:
            best = c
    return best
