"""Generated, realistic customer feedback (Dutch and English) for the demo,
the emulators and benchmarks.

Deterministic for a given seed.  NPS is spread like a real firm's: many
promoters, a fair share of passives, some detractors; a detractor's words
match their score (churn and legal threats turn up among the angriest).
Plugins' emulators use :func:`generate_people` and :func:`generate_opinion`
so every vendor stand-in tells the same kind of story.

Generated people have an e-mail address and a social-media handle
(``Person.handle``), the kind of username any social network's emulator can
use.  The demo's emulators share one population (:func:`demo_people`): the
first :data:`SOCIAL_CROWD` people of the survey's respondents are also the
crowd on social media, so ``bram.vos16@example.nl`` answers the survey and
``@bram_vos16`` posts, and the hub's identity rules meet them as one
customer.  Some post under a nickname (``Person.social_name``), which makes
a match the hub only suggests.  In the core's own feed (:func:`generate_feedback`) social posts carry
the handle as an identity of kind :data:`HANDLE_KIND`, which no plugin
declares: it links a person's posts to one customer and never makes them
reachable for a callback, as a social handle would.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

FIRST = ["Jan", "Sanne", "Pieter", "Fatima", "Daan", "Emma", "Mohammed", "Lotte", "Sem", "Noor", "Bram", "Julia",
         "Kees", "Anouk", "Thomas", "Sophie", "Ahmed", "Lisa", "Ruben", "Eva", "Olivia", "James", "Liam", "Mia"]
LAST = ["de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos",
        "Vos", "Peters", "Hendriks", "van Dijk", "El Amrani", "Yilmaz", "Smith", "Brown", "Wilson", "Taylor"]

TEXTS: dict[str, dict[str, list[str]]] = {
    "nl": {
        "promoter": [
            "Snel geholpen door de klantenservice, echt top!",
            "Alles werkt prima en de app is duidelijk. Ik raad jullie zeker aan.",
            "Vriendelijke monteur, netjes op tijd. Heel tevreden.",
            "Mijn vraag was binnen een dag opgelost, dank jullie wel!",
        ],
        "passive": [
            "Prima dienst, maar de wachttijd aan de telefoon mag korter.",
            "Het werkt, al was de factuur wat onduidelijk.",
            "Redelijk tevreden, de levering was een dag te laat.",
        ],
        "detractor": [
            "Al drie weken storing en niemand belt terug. Belachelijk.",
            "Twee keer een verkeerde factuur. Ik ga overstappen naar een andere aanbieder.",
            "Ik wil mijn abonnement opzeggen, de klantenservice is onbereikbaar.",
            "Slechte service, wachten op de monteur die niet komt. Dit gaat naar de Geschillencommissie.",
            "Schandalig hoe ik behandeld word. Mijn advocaat neemt contact op.",
            "Teleurgesteld: internet valt elke avond weg en niemand helpt.",
        ],
    },
    "en": {
        "promoter": [
            "Support sorted my issue within minutes, great service!",
            "Love the product, setup was fast and friendly.",
            "Excellent experience, I have already recommended you to friends.",
        ],
        "passive": [
            "Decent service, but the invoice was confusing.",
            "It works, though delivery took longer than promised.",
        ],
        "detractor": [
            "Third outage this month and nobody calls back. I'm switching to another provider.",
            "Terrible support, I have waited two weeks. I want to cancel my contract.",
            "You billed me twice. If this is not fixed my lawyer will be in touch.",
            "Worst customer service ever, completely useless.",
        ],
    },
}
POSTS = {
    "nl": ["@acme weer storing in Utrecht?? Al uren geen internet. #fail",
           "@acme bedankt voor de snelle hulp vandaag!",
           "@acme hoe lang moet ik nog wachten op de monteur? Dit is de derde afspraak.",
           "@acme ik zeg mijn abonnement op als dit zo doorgaat"],
    "en": ["@acme your app has been down all morning, any update?",
           "@acme thanks for sorting my router so quickly",
           "@acme charged twice again. Cancelling if this isn't fixed today."],
}


#: The identity kind of the demo feed's social handles (undeclared: not reachable).
HANDLE_KIND = "handle"


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    #: A social-media username, e.g. "sanne_bakker3".
    handle: str
    language: str
    value: float
    #: The display name on social media: the name, or for every fifth person the first name only.
    social_name: str = ""


def generate_people(rng: random.Random, n: int) -> list[Person]:
    people = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        slug = f"{first}.{last}".lower().replace(" ", "")
        people.append(Person(
            name=f"{first} {last}",
            email=f"{slug}{i}@example.nl",
            handle=f"{first.lower()}_{last.split()[-1].lower()}{i}",
            language="nl" if rng.random() < 0.7 else "en",
            value=round(rng.choice([120, 250, 250, 480, 900, 3000, 12000]) * rng.uniform(0.8, 1.2), 2),
            social_name=first if i % 5 == 4 else f"{first} {last}",
        ))
    return people


#: Seed and size of the demo's one population (the survey emulator's respondents).
DEMO_SEED = 2026
DEMO_PEOPLE = 2000
#: The first this many demo people are active on social media too.
SOCIAL_CROWD = 24


def demo_people(n: int = DEMO_PEOPLE) -> list[Person]:
    """The first ``n`` people of the demo's population (the same people for any ``n``)."""
    return generate_people(random.Random(DEMO_SEED), n)


def generate_nps(rng: random.Random) -> int:
    """0-10 with a realistic spread (about 50% promoters, 30% passives, 20% detractors)."""
    r = rng.random()
    if r < 0.5:
        return rng.choice([9, 10])
    if r < 0.8:
        return rng.choice([7, 8])
    return rng.choice([0, 1, 2, 3, 4, 5, 6, 6, 5, 4])


def category(nps: int) -> str:
    return "detractor" if nps <= 6 else "passive" if nps <= 8 else "promoter"


def generate_opinion(rng: random.Random, language: str, nps: int) -> str:
    return rng.choice(TEXTS[language][category(nps)])


def generate_post(rng: random.Random, language: str) -> str:
    return rng.choice(POSTS[language])


def generate_feedback(rng: random.Random, n: int, *, start: dt.datetime, end: dt.datetime, people: int = 0,
                      prefix: str = "demo") -> list[dict[str, Any]]:
    """``n`` items in the API's input form, spread between ``start`` and ``end``."""
    crowd = generate_people(rng, people or max(10, n // 3))
    span = (end - start).total_seconds()
    out = []
    for i in range(n):
        p = rng.choice(crowd)
        when = start + dt.timedelta(seconds=span * (i + rng.random()) / n)
        if rng.random() < 0.8:
            nps = generate_nps(rng)
            out.append({"external_id": f"{prefix}-{i}", "channel": "survey", "occurred_at": when.isoformat(),
                        "nps": nps, "text": generate_opinion(rng, p.language, nps), "language": p.language,
                        "customer": {"email": p.email, "name": p.name}})
        else:
            out.append({"external_id": f"{prefix}-{i}", "channel": "social", "occurred_at": when.isoformat(),
                        "text": generate_post(rng, p.language), "language": p.language,
                        "reach": int(rng.lognormvariate(5, 1.6)),
                        "customer": {"name": p.social_name or p.name,
                                     "identities": [{"kind": HANDLE_KIND, "value": p.handle}]}})
    return out
