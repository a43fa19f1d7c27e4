"""Every English UI string has a Dutch translation (the UI speaks both)."""

from __future__ import annotations

import re
from pathlib import Path

from hub.engine.accounts import ROLES
from hub.sdk import CASE_STATUSES, CATEGORIES, CHANNELS, FOLLOWUP_STATUSES
from hub.web.forms import OUTCOMES
from hub.web.i18n import NL, SIGNAL_LABELS

ROOT = Path(__file__).resolve().parent.parent / "hub"
LITERAL = re.compile(r"""\b(?:_|gettext|ngettext)\(\s*(["'])(.+?)(?<!\\)\1(?:\s*,\s*(["'])(.+?)(?<!\\)\3)?""")


def _strings() -> set[str]:
    found: set[str] = set()
    files = list((ROOT / "web" / "templates").glob("*.html")) + list((ROOT / "web").glob("*.py"))
    for path in files:
        for match in LITERAL.finditer(path.read_text()):
            found.add(match.group(2))
            if match.group(0).startswith("ngettext") and match.group(4):
                found.add(match.group(4))
    return found


def test_finds_the_strings():
    strings = _strings()
    assert {"Inbox", "Mark contacted", "{n} items", "Wrong username or password."} <= strings


def test_every_literal_has_dutch():
    missing = sorted(t for t in _strings() if t not in NL)
    assert not missing, f"no Dutch for {missing} (add them to NL in hub/web/i18n.py)"


def test_dynamic_values_have_dutch():
    keys = [*CHANNELS, *CATEGORIES, *CASE_STATUSES, *FOLLOWUP_STATUSES, *OUTCOMES, *ROLES,
            *SIGNAL_LABELS.values(), "low", "normal", "high", "urgent"]
    missing = [k for k in keys if k not in NL]
    assert not missing


def test_placeholders_survive_translation():
    for en, nl in NL.items():
        assert set(re.findall(r"{(\w+)}", en)) == set(re.findall(r"{(\w+)}", nl)), en
