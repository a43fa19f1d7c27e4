"""The plugin contract stays documented and tested: every hook in
hub/hookspecs.py needs a docstring, a section in docs/plugin_hooks.md and a
``test_hook_<name>`` in tests/test_hooks.py."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from hub.sdk import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("hub_"))


def test_there_are_hooks():
    assert {"hub_score_feedback", "hub_register_connectors", "hub_decide_escalation"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    assert inspect.getdoc(getattr(hookspecs, hook)), f"{hook} has no docstring in hub/hookspecs.py"
    docs = (ROOT / "docs" / "plugin_hooks.md").read_text()
    assert f"\n## {hook}\n" in docs, f"docs/plugin_hooks.md has no '## {hook}' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook):
    tree = ast.parse((ROOT / "tests" / "test_hooks.py").read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert f"test_hook_{hook}" in names, f"tests/test_hooks.py has no test_hook_{hook}"
