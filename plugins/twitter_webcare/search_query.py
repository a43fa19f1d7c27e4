"""A small evaluator for X recent-search queries, used by the emulator.

Covers what webcare queries use: keywords and "quoted phrases", ``@handle``,
``#hashtag``, ``from:``/``to:``, ``lang:``, ``is:retweet``/``is:reply``/
``is:quote``, ``-`` negation, ``OR`` and parentheses.  As on X, juxtaposition
is AND and binds tighter than OR (``@acme OR acme lang:nl`` means
``@acme OR (acme AND lang:nl)``).  Unknown operators are refused with X's own
wording, so a connector's 400 handling is exercised realistically.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

KNOWN_OPERATORS = frozenset({"from", "to", "lang", "is", "has", "url", "conversation_id"})
_TOKEN = re.compile(r'\s*(-?"[^"]*"|\(|\)|-?\(|[^\s()]+)')


class QueryError(ValueError):
    """The query is not valid: the emulator answers 400 with this message."""


@dataclass(frozen=True)
class PostView:
    """What a query can look at in a post."""

    text: str
    author: str
    lang: str | None
    mentions: frozenset[str]
    reply_to: str | None
    is_retweet: bool
    is_reply: bool
    is_quote: bool
    conversation_id: str
    has_links: bool


Matcher = Callable[[PostView], bool]


def _tokens(query: str) -> tuple[list[str], list[int]]:
    """Tokens and their 1-based character positions (X reports positions)."""
    out: list[str] = []
    where: list[int] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m:  # pragma: no cover - the pattern accepts any non-space run
            raise QueryError(f"cannot read query at position {pos + 1}")
        tok, start = m.group(1), m.start(1) + 1
        if tok == "-(":
            out += ["-", "("]
            where += [start, start + 1]
        else:
            out.append(tok)
            where.append(start)
        pos = m.end()
        while pos < len(query) and query[pos].isspace():
            pos += 1
    return out, where


def _term(token: str, position: int) -> Matcher:
    negate = token.startswith("-") and len(token) > 1
    word = token[1:] if negate else token
    if word.startswith('"') and word.endswith('"') and len(word) >= 2:
        phrase = word[1:-1].lower()
        base: Matcher = lambda p: phrase in p.text.lower()  # noqa: E731
    elif word.startswith("@"):
        handle = word[1:].lower()
        base = lambda p: handle in p.mentions or p.author == handle  # noqa: E731
    elif word.startswith("#"):
        tag = word.lower()
        base = lambda p: re.search(rf"(?<!\w){re.escape(tag)}(?!\w)", p.text.lower()) is not None  # noqa: E731
    elif ":" in word and not word.startswith(("http:", "https:")):
        op, _, value = word.partition(":")
        op, value = op.lower(), value.lower()
        if op not in KNOWN_OPERATORS:
            raise QueryError(
                f"There were errors processing your request: Reference to invalid operator '{op}'. Operator is not "
                f"available in current product or product packaging. Please refer to complete available operator "
                f"list at http://t.co/operators. (at position {position})")
        base = _operator(op, value, position)
    else:
        needle = word.lower()
        base = lambda p: re.search(rf"(?<![\w]){re.escape(needle)}(?!\w)", p.text.lower()) is not None  # noqa: E731
    return (lambda p: not base(p)) if negate else base


def _operator(op: str, value: str, position: int) -> Matcher:
    if op == "from":
        return lambda p: p.author == value.lstrip("@")
    if op == "to":
        return lambda p: p.reply_to == value.lstrip("@")
    if op == "lang":
        return lambda p: (p.lang or "") == value
    if op == "conversation_id":
        return lambda p: p.conversation_id == value
    if op == "url":
        return lambda p: value in p.text.lower()
    if op == "has":
        if value != "links":
            raise QueryError(f"There were errors processing your request: Unsupported has: value '{value}' "
                             f"(at position {position})")
        return lambda p: p.has_links
    flags = {"retweet": lambda p: p.is_retweet, "reply": lambda p: p.is_reply, "quote": lambda p: p.is_quote}
    if value not in flags:
        raise QueryError(f"There were errors processing your request: Unsupported is: value '{value}' "
                         f"(at position {position})")
    return flags[value]


class _Parser:
    def __init__(self, tokens: list[str], positions: list[int]):
        self.tokens = tokens
        self.positions = positions
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def parse_or(self) -> Matcher:
        parts = [self.parse_and()]
        while self.peek() == "OR":
            self.i += 1
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else (lambda p: any(m(p) for m in parts))

    def parse_and(self) -> Matcher:
        parts: list[Matcher] = []
        while self.peek() not in (None, ")", "OR"):
            parts.append(self.parse_unit())
        if not parts:
            at = self.positions[self.i] if self.i < len(self.positions) else len(self.tokens)
            raise QueryError(f"There were errors processing your request: empty clause (at position {at})")
        return parts[0] if len(parts) == 1 else (lambda p: all(m(p) for m in parts))

    def parse_unit(self) -> Matcher:
        tok = self.tokens[self.i]
        self.i += 1
        if tok == "-" and self.peek() == "(":
            inner = self.parse_unit()
            return lambda p: not inner(p)
        if tok == "(":
            inner = self.parse_or()
            if self.peek() != ")":
                raise QueryError("There were errors processing your request: missing closing parenthesis")
            self.i += 1
            return inner
        return _term(tok, self.positions[self.i - 1])


def compile_query(query: str) -> Matcher:
    """A predicate over :class:`PostView`; raises :class:`QueryError`."""
    tokens, positions = _tokens(query)
    if not tokens:
        raise QueryError("There were errors processing your request: query is empty")
    parser = _Parser(tokens, positions)
    matcher = parser.parse_or()
    if parser.peek() is not None:
        raise QueryError("There were errors processing your request: unbalanced parenthesis")
    return matcher
