"""Progress of backfills and imports: total, rate and ETA, a log line every few
seconds outside a terminal, a tqdm bar on one.  Time is a fake monotonic
clock throughout: nothing here reads the wall clock."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys

import flask
import pytest
import requests
from click.testing import CliRunner

from hub.engine.progress import DEFAULT_INTERVAL, Progress, duration, interval_from, monotonic_of
from hub.engine.pulls import pull
from hub.sdk import FakeClock
from hub.sdk.pagination import BodyTokenPaginator, LastRecordPaginator, OffsetPaginator, Page, Paginator
from plugins.survey_typeform import TypeformEmulator

LOGGER = "hub.engine.progress"


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_log_line_has_done_total_share_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    t = Ticker()
    p = Progress("backfill nps", total=550_000, monotonic=t, terminal=False)
    t.now += 60
    p(120_000, 119_000)  # 2,000/s; 430,000 left -> 215 s
    assert _lines(caplog) == ["backfill nps: 120,000 / 550,000 (21.8 %), 2,000/s, ETA 3m35s"]


def test_one_line_per_interval_not_per_update(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    t = Ticker()
    p = Progress("import a.jsonl", total=10_000, unit="lines", interval=5, monotonic=t, terminal=False)
    for _ in range(20):  # 20 batches, one per second
        t.now += 1
        p.update(500)
    lines = _lines(caplog)
    assert len(lines) == 4  # at 5, 10, 15 and 20 s
    assert lines[0] == "import a.jsonl: 2,500 / 10,000 (25.0 %), 500/s, ETA 15s"
    assert lines[-1] == "import a.jsonl: 10,000 / 10,000 (100.0 %), 500/s, ETA 0s"


def test_without_total_counts_and_rate_only_and_final_line(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    t = Ticker()
    with Progress("pull x", monotonic=t, terminal=False) as p:
        t.now += 6
        p(3_000, 2_900)
        t.now += 4
    assert _lines(caplog) == ["pull x: 3,000 records, 500/s",
                              "pull x: finished, 3,000 records (2,900 new) in 10s, 300/s"]


def test_a_total_too_small_never_goes_past_100_or_below_zero(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    t = Ticker()
    p = Progress("backfill nps", total=1_000, monotonic=t, terminal=False)
    t.now += 10
    p(1_500)
    assert _lines(caplog) == ["backfill nps: 1,500 / 1,500 (100.0 %), 150/s, ETA 0s"]
    assert p.eta() == 0.0


def test_stopped_run_says_so(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    t = Ticker()
    with pytest.raises(RuntimeError), Progress("backfill nps", total=10, monotonic=t, terminal=False) as p:
        t.now += 2
        p(4)
        raise RuntimeError("outage")
    assert _lines(caplog)[-1] == "backfill nps: stopped after 4 records in 2s, 2.0/s"


def test_totals_of_several_streams_add_up():
    p = Progress("pull x", monotonic=Ticker(), terminal=False)
    p.add_total(300)
    p.add_total(200)
    assert p.total == 500


def test_terminal_gets_a_bar_with_total_and_no_log_lines(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    out = io.StringIO()
    p = Progress("backfill nps", monotonic=Ticker(), terminal=True, stream=out)
    p.add_total(2_000)
    p(500, 500)
    p.close()
    text = out.getvalue()
    assert "backfill nps" in text and "/2000" in text and "new=500" in text
    assert _lines(caplog) == []


def test_duration_format():
    assert [duration(s) for s in (0, 59.4, 60, 210, 3599, 3600, 7500)] == \
        ["0s", "59s", "1m00s", "3m30s", "59m59s", "1h00m", "2h05m"]


def test_interval_from_config():
    assert interval_from({}) == DEFAULT_INTERVAL == 5.0
    assert interval_from({"progress": {"log_seconds": 2}}) == 2.0
    for bad in (0, -1, "5", True):
        with pytest.raises(ValueError, match="log_seconds"):
            interval_from({"progress": {"log_seconds": bad}})


def test_monotonic_of_prefers_the_clocks_own():
    class WithMonotonic(FakeClock):
        def monotonic(self) -> float:
            return 42.0

    assert monotonic_of(WithMonotonic())() == 42.0
    import time

    assert monotonic_of(FakeClock()) is time.monotonic


def _page(body) -> Page:
    resp = requests.Response()
    resp.status_code = 200
    resp._content = json.dumps(body).encode()
    return Page(resp, body.get("items", []) if isinstance(body, dict) else [], None)


@pytest.mark.parametrize("body, expected", [
    ({"total_items": 550_000, "items": []}, 550_000),
    ({"total_items": 0, "items": []}, 0),
    ({"items": []}, None),
    ({"total_items": "many"}, None),
    ({"total_items": True}, None),
    ({"total_items": -3}, None),
])
def test_paginator_reads_the_declared_total(body, expected):
    assert LastRecordPaginator("token", 1000, total_path="total_items").total(_page(body)) == expected


def test_paginators_without_total_path_know_none():
    page = _page({"total_items": 5, "meta": {"total": 7}, "items": []})
    assert Paginator().total(page) is None
    assert LastRecordPaginator("token", 1000).total(page) is None
    assert BodyTokenPaginator("next", total_path="$.meta.total").total(page) == 7
    assert OffsetPaginator(100, total_path="meta.total").total(page) == 7


def _typeform(make_app, live_server, clock, responses=1_200, page_size=500):
    emu = TypeformEmulator(responses=responses, start=dt.datetime(2025, 6, 1, tzinfo=dt.UTC), step_seconds=900,
                           token="tok", clock=clock)
    emu_app = flask.Flask(__name__)
    emu_app.register_blueprint(emu.blueprint())
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": emu.form_id, "token": "tok",
                                    "page_size": page_size, "rate_limit": [1000, 1.0],
                                    "base_url": live_server(emu_app)}}, clock=clock)
    return emu, app.extensions["hub"]


def test_backfill_progress_gets_typeforms_total_from_the_first_page(make_app, live_server, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    emu, hub = _typeform(make_app, live_server, clock)
    t = Ticker()

    def tick() -> float:
        t.now += 2.5  # every reading moves 2.5 s: a line every second page
        return t.now

    p = Progress("backfill nps", monotonic=tick, terminal=False)
    report = pull(hub, "nps", since=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), progress=p)
    p.close()
    assert report.records == 1_200 and p.total == 1_200 and p.done == 1_200 and p.created == 1_200
    lines = _lines(caplog)
    assert lines[0].startswith("backfill nps: 1,000 / 1,200 (83.3 %), ") and "ETA" in lines[0]
    assert lines[-1].startswith("backfill nps: finished, 1,200 records (1,200 new) in ")


def test_incremental_pull_total_is_what_this_run_reads(make_app, live_server):
    clock = FakeClock()
    emu, hub = _typeform(make_app, live_server, clock, responses=600)
    pull(hub, "nps", since=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    p = Progress("pull nps", monotonic=Ticker(), terminal=False)
    pull(hub, "nps", progress=p)
    # The re-read overlap only (responses within overlap_seconds of the cursor), not the history.
    assert p.total == p.done < 600


def test_cli_backfill_and_import_log_total_and_eta_outside_a_terminal(database_url, live_server, monkeypatch,
                                                                       tmp_path, caplog):
    from hub.cli import main

    caplog.set_level(logging.INFO, logger=LOGGER)
    emu = TypeformEmulator(responses=120, start=dt.datetime(2025, 6, 1, tzinfo=dt.UTC), token="tfp_tok")
    emu_app = flask.Flask(__name__)
    emu_app.register_blueprint(emu.blueprint())
    site = tmp_path / "site.toml"
    site.write_text(f"""
[progress]
log_seconds = 0.000001   # every page: the test must not wait for real seconds

[sources.nps]
plugin = "survey_typeform"
form_id = "{emu.form_id}"
token = "env:TYPEFORM_TOKEN"
base_url = "{live_server(emu_app)}"
page_size = 50
rate_limit = [100, 1.0]
""")
    monkeypatch.setenv("TYPEFORM_TOKEN", "tfp_tok")
    monkeypatch.setenv("HUB_CONFIG", str(site))
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HUB_EXECUTOR", "inline")
    result = CliRunner().invoke(main, ["backfill", "nps", "--since", "2025-05-01"])
    assert result.exit_code == 0, result.output
    lines = _lines(caplog)
    assert any(line.startswith("backfill nps: 50 / 120 (41.7 %), ") and ", ETA " in line for line in lines), lines
    assert lines[-1].startswith("backfill nps: finished, 120 records (120 new) in ")

    caplog.clear()
    data = tmp_path / "old.jsonl"
    data.write_text("".join(json.dumps({"text": f"Factuur {i} klopt niet", "external_id": f"x{i}", "channel": "email",
                                        "occurred_at": "2025-06-01T10:00:00Z"}) + "\n" for i in range(3))
                    + "not json\n")
    result = CliRunner().invoke(main, ["import", str(data), "--source", "legacy"])
    assert "imported 3 new item(s)" in result.output, result.output
    lines = _lines(caplog)
    assert any(line.startswith("import old.jsonl: 4 / 4 (100.0 %)") for line in lines), lines
    assert lines[-1].startswith("import old.jsonl: finished, 4 lines in ")


# -- make bench's summary (bench/run_all.py) ----------------------------------------
def _run_all():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "run_all.py"
    spec = importlib.util.spec_from_file_location("bench_run_all", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_run_all_reads_bench_lines_and_tabulates_pass_fail_skip(tmp_path):
    ra = _run_all()
    good = tmp_path / "good.py"
    good.write_text('import json\nprint("noise")\nprint("BENCH " + json.dumps({"name": "good", "value": 4700, '
                    '"unit": "items/s", "baseline": 11650, "ratio": 0.403, "goal": "ratio >= 0.30", "pass": True}))\n')
    slow = tmp_path / "slow.py"
    slow.write_text('print(\'BENCH {"name": "slow", "value": 9, "unit": "ms", "pass": false}\')\n')
    silent = tmp_path / "silent.py"
    silent.write_text("print('done')\n")
    outcomes = [ra.run_one(ra.Bench("good", str(good)), full=False, echo=False),
                ra.run_one(ra.Bench("slow", str(slow)), full=False, echo=False),
                ra.run_one(ra.Bench("silent", str(silent)), full=False, echo=False),
                ra.run_one(ra.Bench("pg", str(good), needs=(lambda: "PostgreSQL not reachable",)), full=False,
                           echo=False),
                ra.run_one(ra.Bench("gone", "no_such_bench.py"), full=False, echo=False)]
    assert [o.status for o in outcomes] == ["pass", "FAIL", "ERROR", "skipped", "skipped"]
    text = ra.table(outcomes)
    assert "good " in text and "4,700 items/s" in text and "11,650" in text and "0.403" in text
    assert "no BENCH line" in text and "skipped: PostgreSQL not reachable" in text

