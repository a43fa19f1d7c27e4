"""Word and phrase lists matched against customer text: cues, churn and legal words, themes.

An entry is a word or phrase ("geen reactie", "no reply"); ``*`` at either end
lets it match inside a longer word, which Dutch compounds need
("*storing" finds "internetstoring", "wacht*" finds "wachttijd"), and a
``*`` of its own stands for any one word ("al * keer").  Matching is
case-insensitive on word boundaries, so "sue" does not match "issue".  Each
list compiles once per process into one regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any


def _pattern(entry: str) -> str:
    head, tail = entry.startswith("*"), entry.endswith("*")
    core = entry.strip("*").lower()
    body = r"\s+".join(r"\w+" if part == "*" else re.escape(part) for part in core.split())
    return (r"\w*" if head else "") + body + (r"\w*" if tail else "")


@lru_cache(maxsize=128)
def matcher(entries: tuple[str, ...]) -> re.Pattern[str] | None:
    entries = tuple(e for e in entries if e.strip("* "))
    if not entries:
        return None
    alternatives = "|".join(_pattern(e) for e in sorted(entries, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


class PhraseIndex:
    """Several named lists matched in one pass over the words of a text.

    Plain words and phrases are set look-ups of the text's word n-grams (fast:
    no regular expression tries every position); entries with ``*`` are
    prefix/suffix tests on single words, or a regular expression when they
    span words ("al * keer").
    """

    def __init__(self, groups: tuple[tuple[str, tuple[str, ...]], ...]):
        self.plain: dict[str, list[str]] = {}
        self.prefix: list[tuple[str, str]] = []
        self.suffix: list[tuple[str, str]] = []
        self.infix: list[tuple[str, str]] = []
        self.spans: list[tuple[re.Pattern[str], str]] = []
        self.longest = 1
        for group, entries in groups:
            for entry in entries:
                core = " ".join(entry.strip("*").lower().split())
                if not core:
                    continue
                head, tail = entry.startswith("*"), entry.endswith("*")
                if " " in core and ("*" in entry):
                    self.spans.append((re.compile(rf"(?<!\w){_pattern(entry)}(?!\w)", re.IGNORECASE), group))
                elif head and tail:
                    self.infix.append((core, group))
                elif tail:
                    self.prefix.append((core, group))
                elif head:
                    self.suffix.append((core, group))
                else:
                    self.plain.setdefault(core, []).append(group)
                    self.longest = max(self.longest, core.count(" ") + 1)
        self.prefixes = tuple(p for p, _ in self.prefix)
        self.suffixes = tuple(p for p, _ in self.suffix)
        # Only words that start a phrase need n-grams: most words of a text start none.
        self.starts = {p.split()[0] for p in self.plain if " " in p}
        self.span_starts = {_first_word(rx.pattern) for rx, _ in self.spans}
        # Stock answers repeat ("Prima", "Geen opmerkingen"), and the enricher and the
        # scorer of one batch see the same texts: remember recent results.
        self.find = lru_cache(maxsize=8192)(self._find)

    def _find(self, text: str | None) -> dict[str, tuple[str, ...]]:
        """group -> distinct matches (lowercased, in order of appearance); shared, do not change it."""
        found: dict[str, dict[str, None]] = {}
        if not text:
            return {}
        text = text.replace("\u2019", "'")  # phones type "can’t" and "zo’n" with a curly apostrophe
        words = _WORD.findall(text.lower())
        plain, longest, starts = self.plain, self.longest, self.starts
        for i, word in enumerate(words):
            for group in plain.get(word, ()):
                found.setdefault(group, {})[word] = None
            if word in starts:
                for n in range(2, min(longest, len(words) - i) + 1):
                    gram = " ".join(words[i:i + n])
                    for group in plain.get(gram, ()):
                        found.setdefault(group, {})[gram] = None
            if self.prefixes and word.startswith(self.prefixes):
                for p, group in self.prefix:
                    if word.startswith(p):
                        found.setdefault(group, {})[word] = None
            if self.suffixes and word.endswith(self.suffixes):
                for p, group in self.suffix:
                    if word.endswith(p):
                        found.setdefault(group, {})[word] = None
            for p, group in self.infix:
                if p in word:
                    found.setdefault(group, {})[word] = None
        spans = self.spans if self.span_starts.intersection(words) else ()
        for rx, group in spans:
            for m in rx.finditer(text):
                found.setdefault(group, {})[" ".join(m.group(0).lower().split())] = None
        return {group: tuple(hits) for group, hits in found.items()}


def _first_word(pattern: str) -> str:
    """The literal first word of a span pattern such as ``(?<!\\w)al\\s+\\w+\\s+keer(?!\\w)``."""
    body = pattern.removeprefix(r"(?<!\w)")
    return re.split(r"\\s\+", body)[0].replace("\\", "")


@lru_cache(maxsize=64)
def phrase_index(groups: tuple[tuple[str, tuple[str, ...]], ...]) -> PhraseIndex:
    return PhraseIndex(groups)


_by_owner: dict[tuple[int, tuple[str, ...] | None], tuple[Mapping[str, Any], PhraseIndex]] = {}


def index_of(owner: Mapping[str, Any], names: tuple[str, ...] | None = None) -> PhraseIndex:
    """The index of ``owner``'s lists ``names`` (all of them when None), built once per
    configuration dict (a hub's configuration is one dict for its lifetime)."""
    key = (id(owner), names)
    entry = _by_owner.get(key)
    if entry is None or entry[0] is not owner:
        if len(_by_owner) > 64:  # test suites build many apps; keep the newest
            _by_owner.pop(next(iter(_by_owner)))
        groups = {n: owner.get(n, []) for n in names} if names is not None else owner
        entry = (owner, phrase_index(tuple((n, tuple(v)) for n, v in groups.items())))
        _by_owner[key] = entry
    return entry[1]


def find_groups(text: str | None, groups: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Matches of each named list in ``text`` (one pass for all lists)."""
    return phrase_index(tuple((name, tuple(entries)) for name, entries in groups.items())).find(text)


def find_words(text: str | None, entries: Iterable[str]) -> list[str]:
    """The distinct matches of ``entries`` in ``text``, lowercased, in order of appearance."""
    return list(find_groups(text, {"_": entries}).get("_", ()))


def clear_caches() -> None:
    """Forget remembered results (benchmarks measure every text afresh)."""
    for _, index in _by_owner.values():
        index.find.cache_clear()


def strip_words(text: str, entries: Iterable[str]) -> str:
    """``text`` with every match of ``entries`` blanked out."""
    rx = matcher(tuple(entries)) if text else None
    return rx.sub(" ", text) if rx else text


def themes_of(text: str | None, taxonomy: Mapping[str, Iterable[str]]) -> list[str]:
    """Themes of ``taxonomy`` (theme -> words) whose words occur in ``text``, in taxonomy order."""
    if not text or not taxonomy:
        return []
    found = index_of(taxonomy).find(text)
    return [theme for theme in taxonomy if theme in found] if found else []


def shouting(text: str | None, min_words: int = 2) -> list[str]:
    """Words in capitals ("NOG STEEDS GEEN INTERNET"); four letters or more, so acronyms
    such as KPN or ING do not count.  Empty unless at least ``min_words`` of them."""
    if not text:
        return []
    caps = [w for w in re.findall(r"[^\W\d_]{4,}", text) if w.isupper()]
    return caps if len(caps) >= min_words else []


def emoji_in(text: str | None, emoji: Iterable[str]) -> list[str]:
    if not text:
        return []
    return [e for e in emoji if e in text]
