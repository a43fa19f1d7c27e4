"""Dutch sentiment: Pattern's adjective lexicon with negation, intensifiers and word forms.

The lexicon (``hub/defaults/data/nl-sentiment.xml``, public domain) lists base
forms; customers write "waardeloze", "slechtste", "foutje".  :func:`base_forms`
undoes the inflections and diminutives Dutch spelling makes regular, so one
entry covers them all.  Negation ("niet", "geen", "nooit", "allesbehalve")
within three words before a sentiment word, or "niet" right after a verb
("werkt niet"), flips and damps it; an intensifier ("heel", "erg") right
before scales it.  The score is the mean of the words' polarities, in [-1, 1],
and each word that counted comes back as evidence.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

LEXICON_PATH = Path(__file__).resolve().parent.parent / "data" / "nl-sentiment.xml"
#: Flip and damp a negated word: "niet goed" is bad, but less bad than "slecht".
NEGATION_FACTOR = -0.75
#: Words that end the reach of a negation ("niet duur maar slecht").
CLAUSE_BREAKS = frozenset({"maar", "en", "want", "omdat", "doch", ".", ",", ";", "!", "?"})
#: Words that may stand between a verb and its "niet" ("bevalt me niet", "werkt gewoon niet").
NEGATION_FILLERS = frozenset({"me", "mij", "ons", "je", "jou", "u", "hem", "haar", "het", "ze", "gewoon",
                              "helemaal", "echt", "nog", "ook", "meer", "eigenlijk", "dus", "toch"})
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|[.,;!?]")
_VOWELS = "aeiou"


@lru_cache(maxsize=1)
def pattern_lexicon(path: Path = LEXICON_PATH) -> dict[str, float]:
    """form -> mean polarity over its senses (as Pattern does); neutral forms left out."""
    senses: dict[str, list[float]] = defaultdict(list)
    for word in ET.parse(path).getroot().iter("word"):
        form = (word.get("form") or "").lower()
        if form and " " not in form:
            senses[form].append(float(word.get("polarity") or 0.0))
    means = {form: sum(ps) / len(ps) for form, ps in senses.items()}
    return {form: round(p, 3) for form, p in means.items() if abs(p) >= 0.1}


def _close_syllable(stem: str) -> str:
    """Spelling of a stem once its ending is gone: waardeloz -> waardeloos, dikk -> dik."""
    if stem.endswith("z"):
        stem = stem[:-1] + "s"
    elif stem.endswith("v"):
        stem = stem[:-1] + "f"
    if len(stem) < 3 or stem[-1] in _VOWELS:
        return stem
    if stem[-1] == stem[-2]:
        return stem[:-1]  # doubled consonant: dikke -> dik
    if stem[-2] in _VOWELS and stem[-3] not in _VOWELS:
        return stem[:-1] + stem[-2] + stem[-1]  # open syllable: groter -> groot, gemene -> gemeen
    return stem


def base_forms(word: str) -> Iterable[str]:
    """The word itself, then candidate base forms, most likely first."""
    yield word
    for ending in ("ste", "st", "ere", "er", "e", "s"):
        # -ste/-st superlative, -er(e) comparative, -e attributive, -s partitive ("iets goeds").
        # A superlative's stem has four letters or more: "moest" is no "moe", "kust" no "ku".
        shortest = 4 if ending in ("ste", "st") else 3
        if word.endswith(ending) and len(word) - len(ending) >= shortest:
            stem = word[: -len(ending)]
            yield stem
            yield _close_syllable(stem)
    for ending in ("etje", "tje", "pje", "kje", "je"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            stem = word[: -len(ending)]  # foutje -> fout, probleempje -> probleem, karretje -> kar
            yield stem
            yield _close_syllable(stem)


class DutchSentiment:
    """Lexicon sentiment for Dutch, with this hub's own words on top of Pattern's."""

    def __init__(self, extra_words: Mapping[str, float] | None = None, negators: Iterable[str] = (),
                 intensifiers: Mapping[str, float] | None = None, ignore: Iterable[str] = ()):
        # ``ignore``: lexicon adjectives that are mostly something else in customer text
        # ("naar" is nasty, but nearly always "to"; "zat" is "sat").
        skip = {w.lower() for w in ignore}
        self.lexicon = {w: p for w, p in pattern_lexicon().items() if w not in skip}
        self.lexicon.update({w.lower(): float(p) for w, p in (extra_words or {}).items()})
        self.negators = frozenset(w.lower() for w in negators)
        self.intensifiers = {w.lower(): float(f) for w, f in (intensifiers or {}).items()}
        self._forms: dict[str, tuple[str, float] | None] = {}

    def polarity(self, word: str) -> tuple[str, float] | None:
        """(lexicon form, polarity) of ``word`` or of one of its base forms."""
        try:
            return self._forms[word]
        except KeyError:
            pass
        found = next(((f, self.lexicon[f]) for f in base_forms(word) if f in self.lexicon), None)
        if len(self._forms) < 200_000:  # bounded memo: the vocabulary of a hub's customers
            self._forms[word] = found
        return found

    def score(self, text: str) -> tuple[float | None, list[str]]:
        tokens = _TOKEN.findall(text.lower().replace("\u2019", "'"))  # "zo’n" as typed on a phone
        hits: list[tuple[float, str]] = []
        for i, tok in enumerate(tokens):
            if tok in self.negators or tok in CLAUSE_BREAKS:
                continue
            if tok in self.intensifiers and i + 1 < len(tokens) and self.polarity(tokens[i + 1]):
                continue  # "erg" in "erg goed" intensifies; it is no opinion of its own
            found = self.polarity(tok)
            if found is None:
                continue
            value, words = found[1], [tok]
            if i and tokens[i - 1] in self.intensifiers:
                value *= self.intensifiers[tokens[i - 1]]
                words.insert(0, tokens[i - 1])
            before, after = self._negator_before(tokens, i), self._negator_after(tokens, i)
            if before or after:
                value *= NEGATION_FACTOR
                if before:
                    words.insert(0, before)
                else:
                    words.append(after)
            hits.append((max(-1.0, min(1.0, value)), " ".join(words)))
        if not hits:
            return None, []
        mean = sum(v for v, _ in hits) / len(hits)
        return round(max(-1.0, min(1.0, mean)), 3), [w for _, w in hits]

    def _negator_before(self, tokens: list[str], i: int) -> str | None:
        for k in range(i - 1, max(-1, i - 4), -1):
            if tokens[k] in CLAUSE_BREAKS:
                return None
            if tokens[k] in self.negators:
                # "nog nooit zo'n goed boek": never this good, praise rather than negation
                exclamative = tokens[k] == "nooit" and tokens[k + 1] in ("zo", "zo'n")
                return None if exclamative else tokens[k]
        return None

    def _negator_after(self, tokens: list[str], i: int) -> str | None:
        # "het werkt niet", "klopt niet": Dutch puts the negation after the finite verb,
        # sometimes behind a pronoun or a filler ("bevalt me niet", "werkt gewoon niet").
        for k in range(i + 1, min(len(tokens), i + 4)):
            if tokens[k] in ("niet", "nooit"):
                return tokens[k]
            if tokens[k] not in NEGATION_FILLERS:
                return None
        return None
