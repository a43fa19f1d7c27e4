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


def find_words(text: str | None, entries: Iterable[str]) -> list[str]:
    """The distinct matches of ``entries`` in ``text``, lowercased, in order of appearance."""
    if not text:
        return []
    rx = matcher(tuple(entries))
    if rx is None:
        return []
    return list(dict.fromkeys(" ".join(m.group(0).lower().split()) for m in rx.finditer(text)))


def strip_words(text: str, entries: Iterable[str]) -> str:
    """``text`` with every match of ``entries`` blanked out."""
    rx = matcher(tuple(entries)) if text else None
    return rx.sub(" ", text) if rx else text


@lru_cache(maxsize=16)
def _theme_index(taxonomy: tuple[tuple[str, tuple[str, ...]], ...]):
    entries = tuple(e for _, words in taxonomy for e in words)
    plain = {e.lower(): theme for theme, words in taxonomy for e in words if "*" not in e}
    wild = [(re.compile(_pattern(e) + "$", re.IGNORECASE), theme) for theme, words in taxonomy
            for e in words if "*" in e]
    return matcher(entries), plain, wild


def themes_of(text: str | None, taxonomy: Mapping[str, Iterable[str]]) -> list[str]:
    """Themes of ``taxonomy`` (theme -> words) whose words occur in ``text``, in taxonomy order."""
    if not text or not taxonomy:
        return []
    key = tuple((theme, tuple(words)) for theme, words in taxonomy.items())
    rx, plain, wild = _theme_index(key)
    if rx is None:
        return []
    found = set()
    for m in rx.finditer(text):
        hit = " ".join(m.group(0).lower().split())
        theme = plain.get(hit) or next((t for w, t in wild if w.match(hit)), None)
        if theme:
            found.add(theme)
    return [theme for theme in taxonomy if theme in found]


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
