"""The tutorials cannot drift from their code.

docs/writing_a_source_plugin.md and docs/writing_a_sink_plugin.md walk
through plugins whose code and tests live in examples/tutorial_*/.  A code
block that names a file (```` ```python file=examples/... ````) shows part of
that file verbatim, and together, in order, a file's blocks show all of it
(only blank lines between two parts are not shown).  The plugins' tests run
with the rest of the suite (pyproject.toml's testpaths), like any plugin's,
with the fixtures of hub.sdk.testing only.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = {
    "docs/writing_a_source_plugin.md": "examples/tutorial_source",
    "docs/writing_a_sink_plugin.md": "examples/tutorial_sink",
}
BLOCK = re.compile(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```$", re.M | re.S)


def blocks(doc: str) -> list[tuple[str, str | None, str]]:
    """(language, file or None, text) of each fenced block, in order."""
    return [(lang, name, text) for lang, name, text in BLOCK.findall((ROOT / doc).read_text())]


def example_files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).iterdir() if p.suffix == ".py")


@pytest.mark.parametrize("doc, folder", TUTORIALS.items())
def test_every_file_of_the_example_is_shown_whole_and_verbatim(doc, folder):
    shown: dict[str, list[str]] = {}
    for _, name, text in blocks(doc):
        if name:
            shown.setdefault(name, []).append(text)
    expected = {p.relative_to(ROOT).as_posix() for p in example_files(folder)}
    assert set(shown) == expected, f"{doc} shows {sorted(shown)}, the folder has {sorted(expected)}"
    for name, parts in shown.items():
        source = (ROOT / name).read_text()
        at = 0
        for n, part in enumerate(parts, 1):
            part = part.strip("\n")
            found = source.find(part, at)
            assert found >= 0 and not source[at:found].strip(), (
                f"{doc}: block {n} of {name} is not the file's next part (copy it from the file again)")
            at = found + len(part)
        assert not source[at:].strip(), f"{doc}: the end of {name} is not shown"


@pytest.mark.parametrize("folder", TUTORIALS.values())
def test_the_tutorial_plugins_use_only_the_sdk(folder):
    for path in example_files(folder):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith("hub") or name == "hub.sdk" or name.startswith("hub.sdk."), (
                    f"{path.name} imports {name}: a tutorial shows the public SDK only")


def test_the_tutorial_tests_run_with_the_suite():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(TUTORIALS.values()) <= set(config["tool"]["pytest"]["ini_options"]["testpaths"])
    for folder in TUTORIALS.values():
        assert any(p.name.startswith("test_") for p in example_files(folder)), folder
        # no conftest: the fixtures must come from the installed kit, as in a plugin's own repository
        assert not (ROOT / folder / "conftest.py").exists()


@pytest.mark.parametrize("doc", TUTORIALS)
def test_other_python_in_the_tutorials_compiles(doc):
    for lang, name, text in blocks(doc):
        if lang == "python" and not name:
            compile(text, doc, "exec")
