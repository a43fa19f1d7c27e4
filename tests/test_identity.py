"""Identity resolution beyond exact keys: each rule with its confidence and
evidence, the thresholds, conflicts, the review queue and its memory."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, func, select

from hub.engine.identity_rules import match_key, name_key
from hub.engine.pipeline import Entry, Pipeline
from hub.engine.suggestions import confirm, reject
from hub.sdk import CustomerRef, FeedbackIn
from hub.storage import models as m

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def x(handle: str, name: str | None = None) -> CustomerRef:
    return CustomerRef(name=name, handles=(("x_handle", handle),))


def survey(ext: str, customer: CustomerRef, *, text: str = "Prima", nps: int = 8, **extra) -> Entry:
    return Entry(FeedbackIn(ext, "survey", NOW, text=text, nps=nps, customer=customer, extra=extra))


def post(ext: str, customer: CustomerRef, text: str = "@acme hoe lang nog?") -> Entry:
    return Entry(FeedbackIn(ext, "social", NOW, text=text, customer=customer))


def ingest(hub, *entries: Entry, source: str = "t"):
    with hub.db.session() as s:
        return Pipeline(hub).ingest(s, source, list(entries), NOW)


def identities(hub, customer_id: int) -> dict[tuple[str, str], tuple[float, str]]:
    with hub.db.Session() as s:
        return {(i.kind, i.value): (i.confidence, i.evidence) for i in s.scalars(
            select(m.Identity).where(m.Identity.customer_id == customer_id))}


def suggestions(hub, status: str = "pending") -> list[m.IdentitySuggestion]:
    with hub.db.Session() as s:
        return list(s.scalars(select(m.IdentitySuggestion).where(m.IdentitySuggestion.status == status)
                              .order_by(m.IdentitySuggestion.id)))


def customers(hub) -> int:
    with hub.db.Session() as s:
        return s.scalar(select(func.count()).select_from(m.Customer))


def test_keys_fold_handles_addresses_and_names():
    assert match_key("x_handle", "Bram_Vos16") == match_key("email", "bram.vos16@example.nl") == "bramvos16"
    assert match_key("phone", "+31612345678") is None
    assert name_key("  Sébastien   de  Vries ") == name_key("sebastien de vries") == "sebastien de vries"
    assert name_key(None) is None


def test_handle_matching_an_address_and_the_same_name_links_automatically(hub):
    (social,) = ingest(hub, post("t1", x("bram_vos16", "Bram Vos")), source="x")
    (answer,) = ingest(hub, survey("s1", CustomerRef(email="bram.vos16@example.nl", name="Bram Vos")))
    assert answer.customer_id == social.customer_id  # one timeline across survey and social
    conf, evidence = identities(hub, social.customer_id)[("email", "bram.vos16@example.nl")]
    assert conf == pytest.approx(0.92)  # [identity.weights] handle_email_name, at or above auto_link 0.9
    assert "x_handle bram_vos16 matches e-mail bram.vos16@example.nl and the name" in evidence
    assert "survey t/s1" in evidence
    assert suggestions(hub) == []


def test_the_same_rule_works_the_other_way_round_and_inside_one_batch(hub):
    first, second = ingest(hub, survey("s1", CustomerRef(email="sanne.bakker3@example.nl", name="Sanne Bakker")),
                           post("t1", x("Sanne_Bakker3", "Sanne Bakker")))
    assert first.customer_id == second.customer_id
    assert identities(hub, first.customer_id)[("x_handle", "sanne_bakker3")][0] == pytest.approx(0.92)


def test_handle_matching_an_address_without_the_name_is_only_suggested(hub):
    (social,) = ingest(hub, post("t1", x("kees_bos7", "KB")), source="x")
    (answer,) = ingest(hub, survey("s1", CustomerRef(email="kees.bos7@example.nl", name="Kees Bos")))
    assert answer.customer_id != social.customer_id
    (sug,) = suggestions(hub)
    assert (sug.customer_id, sug.other_customer_id) == (social.customer_id, answer.customer_id)
    assert (sug.kind, sug.value, sug.rule) == ("email", "kees.bos7@example.nl", "handle_email")
    assert sug.confidence == pytest.approx(0.6)
    assert "x_handle kees_bos7 matches e-mail kees.bos7@example.nl" in sug.evidence


def test_two_handles_or_two_addresses_sharing_letters_are_no_evidence(hub):
    a, b = ingest(hub, post("t1", x("jan_smit", "Jan Smit")), post("t2", x("jansmit", "Jan Smit")), source="x")
    c, d = ingest(hub, survey("s1", CustomerRef(email="kim.boer@a.nl")), survey("s2", CustomerRef(email="kimboer@b.nl")))
    assert len({a.customer_id, b.customer_id, c.customer_id, d.customer_id}) == 4
    assert suggestions(hub) == []


def test_name_plus_company_domain_is_suggested_but_not_at_a_free_mail_provider(hub):
    (a,) = ingest(hub, survey("s1", CustomerRef(email="jan.jansen@acme-bouw.nl", name="Jan Jansen")))
    (b,) = ingest(hub, survey("s2", CustomerRef(email="j.jansen@acme-bouw.nl", name="jan  jansen")))
    (c,) = ingest(hub, survey("s3", CustomerRef(email="jj@gmail.com", name="Jan Jansen")))
    (d,) = ingest(hub, survey("s4", CustomerRef(email="jjansen@gmail.com", name="Jan Jansen")))
    assert len({a.customer_id, b.customer_id, c.customer_id, d.customer_id}) == 4
    (sug,) = suggestions(hub)
    assert (sug.customer_id, sug.other_customer_id, sug.rule) == (a.customer_id, b.customer_id, "name_email_domain")
    assert sug.confidence == pytest.approx(0.6)
    assert "same name and e-mail domain as jan.jansen@acme-bouw.nl" in sug.evidence


def test_two_items_with_only_the_same_name_stay_two_customers(hub):
    a, b = ingest(hub, survey("s1", CustomerRef(name="Emma de Vries")), survey("s2", CustomerRef(name="Emma de Vries")))
    assert a.customer_id != b.customer_id
    assert suggestions(hub) == []


def test_an_address_in_a_hidden_field_joins_the_customer(hub):
    (a,) = ingest(hub, survey("s1", CustomerRef(email="lotte@example.nl"), hidden={"alt_email": "Lotte.W@Work.nl"}))
    conf, evidence = identities(hub, a.customer_id)[("email", "lotte.w@work.nl")]
    assert conf == pytest.approx(0.95)
    assert evidence.startswith("email mentioned in a survey hidden field")


def test_a_handle_typed_in_an_answer_is_suggested_for_its_owner(hub):
    (social,) = ingest(hub, post("t1", x("noor_k", "Noor")), source="x")
    (answer,) = ingest(hub, survey("s1", CustomerRef(email="noor@example.nl"),
                                   text="Slecht geholpen, zie ook mijn tweet (@Noor_K)."))
    assert answer.customer_id != social.customer_id
    (sug,) = suggestions(hub)
    assert (sug.customer_id, sug.other_customer_id) == (answer.customer_id, social.customer_id)
    assert (sug.kind, sug.value, sug.rule) == ("x_handle", "noor_k", "mention_text")
    assert sug.confidence == pytest.approx(0.7)


def test_an_unknown_handle_typed_in_an_answer_is_suggested_for_the_respondent(hub):
    (answer,) = ingest(hub, survey("s1", CustomerRef(email="ruben@example.nl"), text="Mijn X is @ruben_r"))
    (sug,) = suggestions(hub)
    assert (sug.customer_id, sug.other_customer_id, sug.kind, sug.value) == (answer.customer_id, None, "x_handle",
                                                                            "ruben_r")
    with hub.db.session() as s:
        confirm(s, sug.id, actor="user:anna", now=NOW, hub=hub)
    assert ("x_handle", "ruben_r") in identities(hub, answer.customer_id)
    (later,) = ingest(hub, post("t1", x("ruben_r")), source="x")
    assert later.customer_id == answer.customer_id


def test_phone_numbers_are_normalized_in_the_configured_region(make_app):
    hub = make_app().extensions["hub"]
    a, b, c = ingest(hub, survey("s1", CustomerRef(phone="06-1234 5678")),
                     survey("s2", CustomerRef(phone="+31 (0)6 12345678")), survey("s3", CustomerRef(phone="0031612345678")))
    assert a.customer_id == b.customer_id == c.customer_id
    assert set(identities(hub, a.customer_id)) == {("phone", "+31612345678")}


def test_the_phone_region_comes_from_the_config(make_app):
    hub = make_app(identity={"phone_region": "BE"}).extensions["hub"]
    try:
        (a,) = ingest(hub, survey("s1", CustomerRef(phone="0470 12 34 56")))
        assert set(identities(hub, a.customer_id)) == {("phone", "+32470123456")}
    finally:
        make_app(identity={"phone_region": "NL"})  # the kind's region is the process's


def test_conflicting_identities_in_one_item_give_a_suggestion_never_a_merge(hub):
    (a,) = ingest(hub, survey("s1", CustomerRef(email="anouk@example.nl")))
    (b,) = ingest(hub, post("t1", x("anouk_x")), source="x")
    (both,) = ingest(hub, survey("s2", CustomerRef(email="anouk@example.nl", handles=(("x_handle", "anouk_x"),))))
    assert both.customer_id == a.customer_id  # the strongest identity (e-mail) decides
    assert ("x_handle", "anouk_x") in identities(hub, b.customer_id)  # B keeps its handle: nothing merged
    assert ("x_handle", "anouk_x") not in identities(hub, a.customer_id)
    (sug,) = suggestions(hub)
    assert (sug.customer_id, sug.other_customer_id, sug.rule) == (a.customer_id, b.customer_id, "conflict")
    assert sug.confidence == pytest.approx(0.8)
    assert "carries identities of both customers" in sug.evidence
    # The same conflict again asks nothing new while the question is open.
    ingest(hub, survey("s3", CustomerRef(email="anouk@example.nl", handles=(("x_handle", "anouk_x"),))))
    assert len(suggestions(hub)) == 1


def test_confirm_links_the_two_customers(hub):
    (a,) = ingest(hub, survey("s1", CustomerRef(email="daan@example.nl"), nps=2, text="Slecht"))
    (b,) = ingest(hub, post("t1", x("daan_d")), source="x")
    ingest(hub, survey("s2", CustomerRef(email="daan@example.nl", handles=(("x_handle", "daan_d"),))))
    (sug,) = suggestions(hub)
    with hub.db.session() as s:
        survivor = confirm(s, sug.id, actor="user:anna", now=NOW, hub=hub)
        assert survivor.id == a.customer_id
    assert set(identities(hub, a.customer_id)) == {("email", "daan@example.nl"), ("x_handle", "daan_d")}
    with hub.db.Session() as s:
        owners = set(s.scalars(select(m.FeedbackItem.customer_id)))
        assert owners == {a.customer_id}
        assert s.get(m.IdentitySuggestion, sug.id).status == "confirmed"
        events = [(e.actor, e.action) for e in s.scalars(select(m.AuditEvent).order_by(m.AuditEvent.id))]
    assert ("user:anna", "customer.merged") in events and ("user:anna", "identity.suggestion_confirmed") in events
    # Later posts by the handle land on the one customer.
    (later,) = ingest(hub, post("t2", x("daan_d")), source="x")
    assert later.customer_id == a.customer_id


def test_a_rejected_pair_is_not_suggested_again(hub):
    (a,) = ingest(hub, survey("s1", CustomerRef(email="mia@example.nl")))
    (b,) = ingest(hub, post("t1", x("mia_m")), source="x")
    ingest(hub, survey("s2", CustomerRef(email="mia@example.nl", handles=(("x_handle", "mia_m"),))))
    (sug,) = suggestions(hub)
    with hub.db.session() as s:
        reject(s, sug.id, actor="user:anna", now=NOW)
    assert suggestions(hub) == []
    # Another conflicting item, and an answer naming the handle: the pair stays rejected.
    ingest(hub, survey("s3", CustomerRef(email="mia@example.nl", handles=(("x_handle", "mia_m"),))),
           survey("s4", CustomerRef(email="mia@example.nl"), text="zie @mia_m"))
    assert suggestions(hub) == []
    assert len(suggestions(hub, "rejected")) == 1
    with hub.db.Session() as s:
        assert s.scalar(select(m.AuditEvent.action).where(m.AuditEvent.action == "identity.suggestion_rejected"))


def test_a_decided_suggestion_cannot_be_decided_again(hub):
    from hub.engine.suggestions import SuggestionError

    ingest(hub, survey("s1", CustomerRef(email="eva@example.nl")))
    ingest(hub, post("t1", x("eva_e")), source="x")
    ingest(hub, survey("s2", CustomerRef(email="eva@example.nl", handles=(("x_handle", "eva_e"),))))
    (sug,) = suggestions(hub)
    with hub.db.session() as s:
        reject(s, sug.id, actor="user:anna", now=NOW)
    with hub.db.session() as s, pytest.raises(SuggestionError, match="already rejected"):
        confirm(s, sug.id, actor="user:bob", now=NOW, hub=hub)


def test_identity_resolution_stays_batched_with_every_rule_in_play(hub):
    """A page that exercises exact, match-key, name and mention look-ups costs
    the same handful of statements for 20 items as for 1,000."""

    def page(n: int, tag: str) -> list[Entry]:
        out = []
        for i in range(n):
            who = f"{tag}p{i}"
            if i % 3 == 0:
                out.append(post(f"{tag}t{i}", x(f"{who}_x", f"Per Soon {who}")))
            elif i % 3 == 1:
                out.append(survey(f"{tag}s{i}", CustomerRef(email=f"{who}.x@acme.nl", name=f"Per Soon {tag}p{i - 1}"),
                                  text=f"zie @{who}_y"))
            else:
                out.append(survey(f"{tag}s{i}", CustomerRef(email=f"{who}@acme.nl", name=f"Per Soon {tag}p{i - 1}")))
        return out

    def statements(entries: list[Entry]) -> int:
        count = 0

        def on_exec(*_args):
            nonlocal count
            count += 1

        event.listen(hub.db.engine, "before_cursor_execute", on_exec)
        try:
            with hub.db.session() as s:
                Pipeline(hub).ingest(s, "bench", entries, NOW)
        finally:
            event.remove(hub.db.engine, "before_cursor_execute", on_exec)
        return count

    small = statements(page(20, "a"))
    large = statements(page(1000, "b"))
    assert customers(hub) > 600  # the rules ran: some items linked, most did not
    assert suggestions(hub)  # and some matches were only good enough to ask
    assert large <= small + 20, (small, large)


def test_demo_people_appear_in_more_than_one_channel(hub):
    """The demo's generated feed: survey answers (e-mail, name) and posts (handle, display
    name) of one person become one customer, and nicknames give a few suggestions."""
    import random

    from hub.sdk.contracts import parse_feedback
    from hub.sdk.demo_data import SOCIAL_CROWD, demo_people, generate_feedback

    objs = generate_feedback(random.Random(3), 300, start=NOW - dt.timedelta(days=5), end=NOW, people=60)
    with hub.db.session() as s:
        Pipeline(hub).ingest(s, "demo", [Entry(parse_feedback(o)[1]) for o in objs], NOW)
    with hub.db.Session() as s:
        channels: dict[int, set[str]] = {}
        for cid, channel in s.execute(select(m.FeedbackItem.customer_id, m.FeedbackItem.channel)):
            channels.setdefault(cid, set()).add(channel)
    assert sum(1 for chs in channels.values() if {"survey", "social"} <= chs) >= 3
    assert suggestions(hub)  # nicknames on social media: asked, not linked
    assert len({s.rule for s in suggestions(hub)} - {"handle_email"}) == 0  # example.nl is no company domain
    # The survey emulator's respondents and the X emulator's crowd are the same people.
    from plugins.survey_typeform.emulator import TypeformEmulator
    from plugins.twitter_webcare.emulator import XEmulator

    survey_emu = TypeformEmulator(responses=100)
    x = XEmulator()
    answers = [survey_emu.response(i)["hidden"]["email"] for i in range(100)]
    crowd = {u.username for u in x.crowd}
    assert {p.handle for p in demo_people(SOCIAL_CROWD)} <= crowd
    assert sum(1 for e in answers if e in {p.email for p in demo_people(SOCIAL_CROWD)}) >= 2


def test_mentions_are_looked_for_two_levels_down_in_the_first_50_of_a_list():
    from hub.engine.identity_rules import _strings

    answers = [{"text": "mail me: a@x.nl", "choice": {"label": "b@x.nl", "deep": {"c": "c@x.nl"}}}]
    answers += [{"text": f"n{i}@x.nl"} for i in range(60)]
    found = _strings(answers)
    assert "mail me: a@x.nl" in found and "n48@x.nl" in found  # the list's first 50 (a, then n0..n48)
    assert "b@x.nl" not in found and "c@x.nl" not in found and "n49@x.nl" not in found  # deeper, or 51st on
    assert _strings({"name": "no at sign", "note": "d@x.nl"}) == ["d@x.nl"]
    assert _strings("e@x.nl") == ["e@x.nl"] and _strings(None) == []
