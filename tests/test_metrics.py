"""``/metrics`` (issue 15): who may scrape, and that the counters and gauges follow what happens."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from hub.engine.dispatch import dispatch
from hub.engine.logging_json import JsonFormatter, use_json_logs
from hub.sdk import FakeClock
from hub.sdk.http import HttpClient, RateBudget
from hub.sdk.testing import post_webhook, sign_hmac
from hub.storage import models as m
from tests.helpers import DETRACTOR, bearer, recording_app

SECRET = "whsec-metrics"
START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def _app(make_app, **overrides):
    clock = FakeClock(start=START.timestamp())
    app, rec = recording_app(make_app, clock=clock, sources={"nps": {
        "plugin": "survey_typeform", "form_id": "lT4Z3j", "token": "tok", "webhook_secret": SECRET,
        "base_url": "http://127.0.0.1:9"}}, **overrides)
    return app, app.extensions["hub"], rec, clock


def scrape(client, headers) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.get_data(as_text=True)) for s in fam.samples}


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_a_token(make_app):
    app, hub, _, _ = _app(make_app)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers=bearer(hub)).status_code == 200


def test_a_token_file_lets_the_scraper_in_without_an_api_token(make_app, tmp_path):
    token = tmp_path / "metrics_token"
    token.write_text("scrape-secret-0123456789\n")
    app, _, _, _ = _app(make_app, metrics={"token_file": str(token)})
    client = app.test_client()
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-0123456789"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 401
    token.write_text("rotated-token-0123456789")  # read at each scrape: rotation needs no restart
    assert client.get("/metrics", headers={"Authorization": "Bearer rotated-token-0123456789"}).status_code == 200


def test_disabled_metrics_answer_404(make_app):
    app, hub, _, _ = _app(make_app, metrics={"enabled": False})
    assert app.test_client().get("/metrics", headers=bearer(hub)).status_code == 404


def test_a_webhook_moves_the_ingest_counter_and_the_latency_histogram(make_app):
    from tests.conftest import fixture_path

    app, hub, _, _ = _app(make_app)
    client, auth = app.test_client(), bearer(hub)
    before = scrape(client, auth)
    body = fixture_path("typeform/webhook_form_response_docs_example.json").read_bytes()
    r = post_webhook(client, "nps", body, {"Typeform-Signature": sign_hmac(SECRET, body)})
    assert r.status_code == 200 and r.get_json()["stored"] == 1
    assert post_webhook(client, "nps", body, {"Typeform-Signature": sign_hmac(SECRET, body)}).status_code == 200
    assert post_webhook(client, "made-up-name", b"{}").status_code == 404
    after = scrape(client, auth)
    assert value(after, "hub_items_ingested_total", source="nps") - value(before, "hub_items_ingested_total",
                                                                          source="nps") == 1  # the duplicate: not
    assert value(after, "hub_webhook_seconds_count", instance="nps") - value(
        before, "hub_webhook_seconds_count", instance="nps") == 2
    assert value(after, "hub_webhook_seconds_count", instance="unknown") - value(
        before, "hub_webhook_seconds_count", instance="unknown") == 1
    assert ("hub_webhook_seconds_count", (("instance", "made-up-name"),)) not in after  # no label per URL


def test_outbox_depth_and_age_are_read_from_the_database_at_scrape(make_app):
    app, hub, rec, clock = _app(make_app)
    client, auth = app.test_client(), bearer(hub)
    assert client.post("/api/v1/feedback", json=DETRACTOR, headers=auth).status_code == 201
    with hub.db.session() as s:
        s.add(m.RawEvent(source="nps", kind="form_response", payload={}, received_at=START.replace(tzinfo=None),
                         status="pending"))
    clock.sleep(90)
    samples = scrape(client, auth)
    assert value(samples, "hub_outbox_depth", sink="rec") == 1
    assert value(samples, "hub_outbox_oldest_age_seconds", sink="rec") >= 90
    assert value(samples, "hub_raw_events_pending", source="nps") == 1
    assert value(samples, "hub_database_up") == 1
    rec.mode = "reject"
    errors_before = value(samples, "hub_crm_errors_total", sink="rec", kind="rejected")
    dispatch(hub)
    samples = scrape(client, auth)
    assert value(samples, "hub_crm_errors_total", sink="rec", kind="rejected") == errors_before + 1
    assert value(samples, "hub_outbox_depth", sink="rec") == 0  # rejected for good: nothing waits any more


def test_rate_budget_waits_are_counted(make_app):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app, hub, _, _ = _app(make_app)
    clock = FakeClock(start=START.timestamp())
    client = HttpClient(f"http://127.0.0.1:{server.server_port}", name="metrics-budget-test",
                        budget=RateBudget(1, 10, clock=clock))
    try:
        before = scrape(app.test_client(), bearer(hub))
        client.get("/a")  # the budget's one request: no wait
        client.get("/b")  # waits 10 s (fake) for the refill
        after = scrape(app.test_client(), bearer(hub))
    finally:
        server.shutdown()
        server.server_close()
    assert value(after, "hub_rate_budget_waits_total", client="metrics-budget-test") - value(
        before, "hub_rate_budget_waits_total", client="metrics-budget-test") == 1
    assert 9.9 <= value(after, "hub_rate_budget_wait_seconds_total", client="metrics-budget-test") - value(
        before, "hub_rate_budget_wait_seconds_total", client="metrics-budget-test") <= 10.1


def test_probes_answer_without_data(make_app):
    app, _, _, _ = _app(make_app)
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.get_json() == {"status": "ready"}


def test_readiness_fails_while_migrations_are_behind(make_app):
    from sqlalchemy import text

    app, hub, _, _ = _app(make_app)
    with hub.db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    r = app.test_client().get("/readyz")
    assert r.status_code == 503 and r.get_json() == {"status": "not ready", "failing": ["migrations"]}


def test_json_logs_are_one_object_per_line_and_mask_secrets():
    logger = logging.Logger("hub.test.json")
    out = io.StringIO()
    logger.addHandler(logging.StreamHandler(out))
    use_json_logs(logger)
    assert isinstance(logger.handlers[0].formatter, JsonFormatter)
    logger.warning("calling %s with Authorization: Bearer %s", "postgresql://hub:s3cret@db/hub", "abcdefgh12345678")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("job failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert set(first) == {"time", "level", "logger", "message"} and first["level"] == "WARNING"
    assert "s3cret" not in first["message"] and "abcdefgh12345678" not in first["message"]
    assert "postgresql://hub:***@db/hub" in first["message"]
    assert second["message"] == "job failed" and "ValueError: boom" in second["exc"]
    assert dt.datetime.fromisoformat(first["time"]).tzinfo is not None


def test_multiprocess_mode_adds_up_every_process(tmp_path, sqlite_template):
    """PROMETHEUS_MULTIPROC_DIR (gunicorn workers): a scrape in one process counts the others' items too."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copy(sqlite_template, tmp_path / "hub.db")
    (tmp_path / "mp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") or k == "HUB_HTTP__ALLOWED_PRIVATE_HOSTS"}
    env.update(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "mp"), HUB_INSTANCE_PATH=str(tmp_path / "instance"),
               HUB_DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}")
    for n in (2, 3):  # two "workers", each with its own counter
        code = f"from hub.engine.metrics import count_ingested; count_ingested('nps', {n})"
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    code = ("from hub.app import create_app; from hub.engine.metrics import render; "
            "print(render(create_app(load_entry_points=False).extensions['hub'])[0].decode())")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60, capture_output=True,
                         text=True).stdout
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(out) for s in fam.samples}
    assert value(samples, "hub_items_ingested_total", source="nps") == 5
    assert value(samples, "hub_database_up") == 1
