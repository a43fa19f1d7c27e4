"""English sentiment through VADER (vaderSentiment, MIT), with the words that caused it.

VADER already handles negation ("not good"), boosters ("very"), caps and
exclamation marks, and is tuned on social media text.  It reports only a
score, so the evidence is the lexicon words of the text, marked "not ..."
where one of VADER's negations precedes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_TOKEN = re.compile(r"[\w']+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
#: VADER's valences run from -4 to +4; this hub's word lists use -1..1.
VADER_SCALE = 4.0


class EnglishSentiment:
    def __init__(self, extra_words: Mapping[str, float] | None = None, ignore: Iterable[str] = ()):
        from vaderSentiment.vaderSentiment import NEGATE, SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()  # one per configuration: extra words must not leak
        # ``ignore``: VADER words that are mostly something else in customer text ("please fix it")
        for word in ignore:
            self.analyzer.lexicon.pop(word.lower(), None)
        self.analyzer.lexicon.update({w.lower(): float(p) * VADER_SCALE for w, p in (extra_words or {}).items()})
        self.negations = frozenset(NEGATE) | {"no"}

    def score(self, text: str) -> tuple[float | None, list[str]]:
        """Mean compound of the sentences that carry sentiment: VADER on its own lets
        "did not arrive. Terrible." negate "terrible" across the full stop."""
        lexicon, words, compounds = self.analyzer.lexicon, [], []
        text = text.replace("\u2019", "'")  # "can’t" as typed on a phone: VADER knows "can't"
        for sentence in _SENTENCE.split(text):
            tokens = [t.lower() for t in _TOKEN.findall(sentence)]
            found = []
            for i, tok in enumerate(tokens):
                if tok not in lexicon or tok in self.negations:
                    continue
                negated = any(t in self.negations or t.endswith("n't") for t in tokens[max(0, i - 3):i])
                found.append(f"not {tok}" if negated else tok)
            if found:
                words += found
                compounds.append(self.analyzer.polarity_scores(sentence)["compound"])
        if not words:
            return None, []
        return round(sum(compounds) / len(compounds), 3), words
