"""The layout's rules, enforced: who may import whom (read from :data:`RULES`,
which each subpackage's docstring states in words), no import cycles between
the hub's parts, and no vendor named in the core.

Imports are read with :mod:`ast`, never executed, so a rule holds for every
line, lazy imports inside functions and ``TYPE_CHECKING`` blocks included.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SDK, ENGINE, STORAGE, API, WEB, CLI = "hub.sdk", "hub.engine", "hub.storage", "hub.api", "hub.web", "hub.cli"
DEFAULTS, DEMO, APP, CONFIG, PLUGIN_MANAGER = "hub.defaults", "hub.demo", "hub.app", "hub.config", "hub.plugin_manager"
EVERYTHING = "*"

#: part of the code -> the parts of the hub it may import (besides itself, the
#: standard library and third-party packages).  ``plugins`` stands for each
#: bundled plugin (``plugins/<name>/``), which may import itself but no other.
#: The root ``hub`` module (``__version__`` and the lazy ``create_app``) may be
#: imported by everyone.  The subpackages' ``__init__`` docstrings say the same
#: in words; :func:`test_each_subpackage_docstring_states_its_rule` keeps them equal.
RULES: dict[str, set[str] | str] = {
    SDK: set(),
    STORAGE: {SDK},
    DEFAULTS: {SDK},
    "plugins": {SDK},
    CONFIG: {SDK},
    PLUGIN_MANAGER: {SDK, DEFAULTS},
    ENGINE: {SDK, STORAGE, CONFIG},
    API: {SDK, ENGINE, STORAGE, CONFIG},
    WEB: {SDK, ENGINE, STORAGE, CONFIG, PLUGIN_MANAGER},
    DEMO: {SDK, ENGINE, STORAGE, CONFIG, PLUGIN_MANAGER},
    APP: {SDK, ENGINE, STORAGE, API, WEB, CONFIG, PLUGIN_MANAGER},
    CLI: EVERYTHING,
    "hub": {SDK, APP},  # hub/__init__.py: ``hookimpl`` and ``create_app``, both lazily
}

#: Single files allowed more than their part, each with the reason.
EXCEPTIONS: dict[str, tuple[set[str], str]] = {
    "hub/sdk/testing.py": ({ENGINE, STORAGE, APP}, "the testing kit starts and drives a real hub, lazily, "
                                                   "inside its functions (never at import)"),
}

SUBPACKAGES = [SDK, ENGINE, STORAGE, API, WEB, CLI, DEFAULTS, DEMO]


@dataclass(frozen=True)
class Import:
    source: str  # the importing part, e.g. "hub.engine" or "plugins.crm_hubspot"
    target: str  # the imported part
    where: str  # path:line
    top_level: bool  # runs at import time (not in a function, not only for type checkers)


def _part(module: str) -> str | None:
    """The part of the code a dotted module name belongs to (None: not ours)."""
    parts = module.split(".")
    if parts[0] == "plugins":
        return ".".join(parts[:2])
    if parts[0] != "hub":
        return None
    return "hub" if len(parts) == 1 else f"hub.{parts[1]}"


def _module_name(path: Path) -> str:
    dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return dotted.removesuffix(".__init__")


def _python_files() -> list[Path]:
    return sorted([*(ROOT / "hub").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")])


def _imports(path: Path) -> list[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    source = _part(module)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lazy: set[int] = set()  # ids of import nodes that do not run at import time
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or (
                isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)):
            lazy.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            # ``from hub import web`` imports hub.web; ``from hub import create_app`` is the app factory
            if name == "hub":
                targets = ["hub" if a.name == "__version__" else APP if a.name == "create_app" else f"hub.{a.name}"
                           for a in node.names]
            else:
                targets = [name]
        else:
            continue
        for target in targets:
            part = _part(target)
            if part is not None and part != source:
                found.append(Import(source, part, f"{path.relative_to(ROOT)}:{node.lineno}", id(node) not in lazy))
    return found


def _all_imports() -> list[Import]:
    return [imp for path in _python_files() for imp in _imports(path)]


def _rule(source: str) -> set[str] | str:
    return RULES["plugins" if source.startswith("plugins.") else source]


def test_every_part_of_the_code_has_a_rule():
    parts = {_part(_module_name(p)) for p in _python_files()} - {"hub", "plugins"}
    missing = sorted(p for p in parts if not p.startswith("plugins.") and p not in RULES)
    assert not missing, f"add a rule to RULES for {missing}"


def test_imports_follow_the_rules():
    broken = []
    for imp in _all_imports():
        allowed = _rule(imp.source)
        if allowed == EVERYTHING or imp.target == "hub" or imp.target in allowed:
            continue
        extra, _why = EXCEPTIONS.get(imp.where.split(":")[0], (set(), ""))
        if imp.target in extra:
            continue
        broken.append(f"{imp.where}: {imp.source} imports {imp.target}")
    assert not broken, "imports against the layout rules (tests/test_layout.py RULES):\n" + "\n".join(broken)


def test_the_rules_catch_what_the_issue_forbids():
    """The table itself says what the issue asks, so editing it cannot quietly
    allow the forbidden."""
    assert RULES["plugins"] == RULES[DEFAULTS] == {SDK}
    assert not RULES[SDK] & {ENGINE, STORAGE, API, WEB, CLI, DEMO, APP, CONFIG, PLUGIN_MANAGER}
    assert RULES[STORAGE] == {SDK}
    assert not RULES[ENGINE] & {API, WEB, CLI, DEMO}
    for reason_holder, (extra, why) in EXCEPTIONS.items():
        assert why and not extra & {CLI, WEB, API, DEMO}, reason_holder


def test_the_import_reader_sees_lazy_relative_and_type_checking_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "hub" / "sdk"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..storage import models\n"
        "if TYPE_CHECKING:\n    from hub.web import common\n"
        "def f():\n    from hub import engine\n    import hub.cli.commands\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    found = {(i.target, i.top_level) for i in _imports(pkg / "bad.py")}
    assert found == {(STORAGE, True), (WEB, False), (ENGINE, False), (CLI, False)}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_cycle_finder_names_the_path():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_between_the_hubs_parts():
    """Between parts, by what runs at import time (a lazy import inside a
    function cannot make an import cycle; the root ``hub`` module is left out,
    it only names the version and the lazy app factory)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in _all_imports():
        if imp.top_level and "hub" not in (imp.source, imp.target):
            graph[imp.source].add(imp.target)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _may_import_sentence(doc: str) -> str:
    match = re.search(r"May import(.*?)(?:\bNot:|\n\s*\n|\Z)", doc, re.S)
    assert match, "no 'May import: ...' sentence"
    return match.group(1)


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_each_subpackage_docstring_states_its_rule(package):
    path = ROOT / Path(*package.split(".")) / "__init__.py"
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    sentence = _may_import_sentence(doc)
    if RULES[package] == EVERYTHING:
        assert sentence.lstrip().startswith("anything"), f"{path}: say 'May import anything'"
        return
    named = set(re.findall(r"``(hub\.\w+)``", sentence))
    assert named == RULES[package], f"{path} docstring says {sorted(named)}, RULES say {sorted(RULES[package])}"
    if not RULES[package]:
        assert "nothing" in sentence


# -- no vendor in the core ---------------------------------------------------------------
VENDOR = re.compile(r"typeform|twitter|hubspot|facebook|x_handle", re.I)

#: (file, text on the line): the API's compatibility with what clients already
#: send (``customer.x_handle`` came before open identity kinds).
VENDOR_ALLOWED = [
    ("hub/sdk/contracts.py", "COMPAT_CUSTOMER_KINDS"),
]


def _code_tokens(path: Path) -> list[tuple[int, str, str]]:
    """(line, token, that line) for names and strings that are not docstrings
    or comments: what the program does, not what its prose says."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                docstrings.add(first.lineno)
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.NAME, tokenize.STRING) and tok.start[0] not in docstrings:
            out.append((tok.start[0], tok.string, lines[tok.start[0] - 1]))
    return out


def _vendor_mentions() -> list[str]:
    found = []
    for path in sorted((ROOT / "hub").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("hub/storage/migrations/"):
            continue  # history: migrations describe the schema as it was
        for line, token, text in _code_tokens(path):
            if VENDOR.search(token) and not any(rel == f and snippet in text for f, snippet in VENDOR_ALLOWED):
                found.append(f"{rel}:{line}: {text.strip()}")
    for path in sorted([*(ROOT / "hub" / "web" / "templates").glob("*"), *(ROOT / "hub" / "web" / "static").glob("*")]):
        if path.suffix in (".html", ".js", ".css"):
            for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if VENDOR.search(text):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {text.strip()}")
    return found


def test_no_vendor_named_in_the_core_outside_api_compatibility():
    found = _vendor_mentions()
    assert not found, "vendor names in hub/ (move them to the plugin, or to VENDOR_ALLOWED with a reason):\n" + (
        "\n".join(found))


def test_the_vendor_check_sees_code_but_not_prose(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Talks to Typeform."""\n# HubSpot too\nKIND = "x_handle"\ndef f():\n    """Twitter."""\n'
                      "    return twitter_id\n")
    assert [(line, tok) for line, tok, _ in _code_tokens(sample) if VENDOR.search(tok)] == [
        (3, '"x_handle"'), (6, "twitter_id")]
