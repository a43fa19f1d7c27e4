"""Start-up cost, checked by what gets imported rather than by a stopwatch
(timings live in ``bench/startup.py``): ``feedback-hub --help`` needs neither
SQLAlchemy nor Flask, and plugins' emulators load only when asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("sqlalchemy", "flask", "requests")


def _run(code: str, extra_path: Path | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON document."""
    env = {k: v for k, v in os.environ.items() if k not in ("HUB_CONFIG", "HUB_LOAD_PLUGINS")}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                         env=env, check=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_database_web_or_http_library():
    loaded = _run(f"""
        import json, sys
        import hub.cli
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    assert loaded == []


def test_help_loads_no_database_or_web_library_and_lists_the_commands():
    result = _run("""
        import contextlib, io, json, sys
        from hub.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["--help"], standalone_mode=False)
        print(json.dumps({"help": out.getvalue(), "loaded": [m for m in ("sqlalchemy", "flask") if m in sys.modules],
                          "plugins": sorted(m for m in sys.modules if m.startswith("plugins."))}))
    """)
    assert result["loaded"] == []
    assert result["plugins"] == []  # no bundled plugin adds commands, so none is imported
    for command in ("init", "run", "serve", "plugins", "pull", "backfill", "import", "sandbox", "token"):
        assert f"\n  {command} " in result["help"]


def test_help_lists_the_commands_of_a_plugin_that_adds_some(tmp_path):
    """An installed plugin (a real entry point) whose module implements
    ``hub_register_commands`` is loaded for ``--help``; its command shows."""
    (tmp_path / "hello_plugin.py").write_text(textwrap.dedent("""
        import click
        from hub.sdk import hookimpl

        @hookimpl
        def hub_register_commands(cli):
            @cli.command("hello")
            def hello():
                "Say hello from a plugin."
                click.echo("hello")
    """))
    dist = tmp_path / "hello_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[feedback_hub]\nhello = hello_plugin\n")
    result = _run("""
        import contextlib, io, json
        from hub.cli import main
        from hub.cli.commands import plugins_may_add_commands
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["--help"], standalone_mode=False)
        print(json.dumps({"may": plugins_may_add_commands(), "help": out.getvalue()}))
    """, extra_path=tmp_path)
    assert result["may"] is True
    assert "\n  hello " in result["help"] and "Say hello from a plugin." in result["help"]


def test_the_cli_names_the_plugin_entry_point_group_of_the_sdk():
    from hub.cli.commands import ENTRY_POINT_GROUP
    from hub.sdk.hookspecs import PROJECT

    assert ENTRY_POINT_GROUP == PROJECT


def test_emulators_load_only_when_asked_for():
    result = _run("""
        import json, sys
        from hub.plugin_manager import make_plugin_manager
        pm = make_plugin_manager()
        before = sorted(m for m in sys.modules if m.startswith("plugins.") and m.endswith(".emulator"))
        names = sorted(e.name for group in pm.hook.hub_register_emulators() for e in group)
        after = sorted(m for m in sys.modules if m.startswith("plugins.") and m.endswith(".emulator"))
        print(json.dumps({"before": before, "names": names, "after": after}))
    """)
    assert result["before"] == []
    assert set(result["names"]) >= {"typeform", "x"} and len(result["names"]) >= 3
    assert result["after"] == ["plugins.crm_hubspot.emulator", "plugins.social_facebook.emulator",
                               "plugins.survey_typeform.emulator", "plugins.twitter_webcare.emulator"]
