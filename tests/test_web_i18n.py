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


def test_every_default_signal_has_a_label_in_both_languages(app):
    """A new scorer signal without a readable label shows as a raw code."""
    import re
    from pathlib import Path

    from hub.web.i18n import SIGNAL_LABELS, gettext

    scorer = (Path(__file__).resolve().parent.parent / "hub" / "defaults" / "scoring.py").read_text()
    emitted = set(re.findall(r'(?:Signal|Evidence)\(\s*"([a-z_]+)"', scorer))
    emitted |= set(re.findall(r'^\s*\("([a-z_]+)", (?:found|shouting|emoji_in)', scorer, re.M))  # the cue table
    assert {"help_request", "shouting", "angry_emoji"} <= emitted
    assert emitted and emitted <= set(SIGNAL_LABELS), emitted - set(SIGNAL_LABELS)
    with app.test_request_context(headers={"Accept-Language": "nl"}):
        untranslated = [v for v in SIGNAL_LABELS.values() if gettext(v) == v and v not in ("profanity",)]
    assert untranslated == []


def test_contribution_signs():
    from hub.web.filters import weight

    assert (weight(35), weight(2.5), weight(-5), weight(-0.2), weight(0)) == ("+35", "+2.5", "-5", "-0.2", "+0")
