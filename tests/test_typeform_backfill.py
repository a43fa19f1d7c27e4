"""Backfill through the Responses API: one item per response, cursor saved,
a re-run fetches nothing new, memory does not grow with the history.

The normal suite backfills 3,000 emulated responses; the 50,000-response run
is ``@pytest.mark.slow`` (``pytest -m slow tests/test_typeform_backfill.py``)
and the same run prints its figures from ``bench/typeform_backfill.py``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import flask
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub.engine.pulls import pull
from hub.sdk import FakeClock
from hub.storage import models as m
from plugins.survey_typeform import TypeformEmulator

BENCH = Path(__file__).resolve().parents[1] / "bench" / "typeform_backfill.py"


def _bench():
    spec = importlib.util.spec_from_file_location("typeform_backfill_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backfill_3k_one_item_each_cursor_saved_rerun_fetches_nothing_new(make_app, live_server):
    clock = FakeClock()
    emu = TypeformEmulator(responses=3000, start=dt.datetime(2025, 6, 1, tzinfo=dt.UTC), step_seconds=900,
                           token="tok", clock=clock)
    emu_app = flask.Flask(__name__)
    emu_app.register_blueprint(emu.blueprint())
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": emu.form_id, "token": "tok",
                                    "page_size": 500, "base_url": live_server(emu_app)}}, clock=clock)
    hub = app.extensions["hub"]
    progress: list[tuple[int, int]] = []
    report = pull(hub, "nps", since=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
                  progress=lambda records, created: progress.append((records, created)))
    assert (report.records, report.new_items, report.duplicates, report.failed) == (3000, 3000, 0, 0)
    assert progress == [(500, 500)] * 6 + [(0, 0)]  # committed page by page (the 7th: the empty end)
    newest = dt.datetime.fromtimestamp(emu.submitted_ts(2999), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with hub.db.Session() as s:
        assert s.scalar(select(func.count()).select_from(m.FeedbackItem)) == 3000
        assert s.scalar(select(func.count(func.distinct(m.FeedbackItem.external_id)))) == 3000
        assert s.scalar(select(func.count()).select_from(m.RawEvent).where(m.RawEvent.status == "processed")) == 3000
        st = s.scalars(select(m.ConnectorState)).one()
    assert st.cursor == newest and st.signpost is None and st.last_success_at is not None
    assert all(c["params"]["since"] == "2025-01-01T00:00:00" for c in emu.requests if "before" in c["params"])

    rerun = pull(hub, "nps")
    assert rerun.new_items == 0 and rerun.records <= 1
    # A second backfill over the same history adds nothing and leaves the cursor where it was.
    again = pull(hub, "nps", since=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    assert (again.new_items, again.duplicates) == (0, 3000)
    with hub.db.Session() as s:
        assert s.scalars(select(m.ConnectorState.cursor)).one() == newest


def test_backfill_cli_command_with_a_site_config(database_url, live_server, monkeypatch, tmp_path):
    """``feedback-hub backfill NAME --since DATE``, configured as an admin would (TOML + env secret)."""
    from hub.cli import main

    emu = TypeformEmulator(responses=120, start=dt.datetime(2025, 6, 1, tzinfo=dt.UTC), token="tfp_secret_value")
    emu_app = flask.Flask(__name__)
    emu_app.register_blueprint(emu.blueprint())
    site = tmp_path / "site.toml"
    site.write_text(f"""
[sources.nps]
plugin = "survey_typeform"
form_id = "{emu.form_id}"
token = "env:TYPEFORM_TOKEN"
base_url = "{live_server(emu_app)}"
page_size = 50
rate_limit = [100, 1.0]   # the emulator is local: no need to wait 0.5 s per page
""")
    monkeypatch.setenv("TYPEFORM_TOKEN", "tfp_secret_value")
    monkeypatch.setenv("HUB_CONFIG", str(site))
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HUB_EXECUTOR", "inline")
    result = CliRunner().invoke(main, ["backfill", "nps", "--since", "2025-05-01"])
    assert result.exit_code == 0, result.output
    assert "nps: 120 records in 3 pages, 120 new items, 0 duplicates, 0 failed" in result.output
    assert "tfp_secret_value" not in result.output
    assert {c["params"]["since"] for c in emu.requests if c["path"].endswith("/responses")} == {"2025-05-01T00:00:00"}


@pytest.mark.slow
def test_backfill_50k_with_flat_memory(capsys):
    figures = _bench().run(50_000, 1000)
    with capsys.disabled():
        print("\ntypeform 50k backfill:", {k: v for k, v in figures.items() if k != "rss_samples_mb"})
    assert figures["items"] == figures["distinct_external_ids"] == figures["raw_events"] == 50_000
    assert figures["new_items"] == 50_000 and figures["cursor"] == figures["newest_submitted_at"]
    assert figures["rerun_new_items"] == 0
    # Flat: after the first pages warmed the caches, 45 more pages of 1,000 add
    # only noise - holding the history would add hundreds of MB.
    assert figures["rss_growth_after_page_5_mb"] < 40
