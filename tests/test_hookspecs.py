"""The plugin contract stays documented and tested: every hook in
hub/hookspecs.py needs a docstring, a section in docs/plugin_hooks.md and a
``test_hook_<name>`` in tests/test_hooks.py."""

from __future__ import annotations

import ast
import inspect
import re
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


def _sections() -> dict[str, str]:
    docs = (ROOT / "docs" / "plugin_hooks.md").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"(?ms)^## (hub_\w+)\n(.*?)(?=^## |\Z)", docs)}


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_section_has_an_example_that_implements_it_correctly(hook):
    """Each section shows ``@hookimpl def <hook>(...)`` taking only arguments the spec has
    (pluggy refuses any other), in Python that compiles."""
    blocks = re.findall(r"```python\n(.*?)```", _sections().get(hook, ""), re.S)
    assert blocks, f"docs/plugin_hooks.md: the {hook} section has no ```python example"
    implemented = []
    for block in blocks:
        tree = ast.parse(block, filename=f"plugin_hooks.md#{hook}")
        compile(tree, f"plugin_hooks.md#{hook}", "exec")
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and fn.name.startswith("hub_"):
                assert any("hookimpl" in ast.unparse(d) for d in fn.decorator_list), f"{fn.name} lacks @hookimpl"
                args = {a.arg for a in fn.args.args} - {"self"}
                assert fn.name in HOOKS, f"{hook} section: {fn.name} is not a hook"
                assert args <= set(inspect.signature(getattr(hookspecs, fn.name)).parameters), (fn.name, args)
                implemented.append(fn.name)
    assert hook in implemented, f"the {hook} section's examples never implement {hook}"
