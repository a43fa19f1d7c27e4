"""The declared contracts: common-schema input, settings, site config, OpenAPI.

Each contract is declared once (pydantic); these tests pin the edge cases a
sender or an admin meets, and that the OpenAPI document is generated from the
same declarations the hub validates and answers with.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from hub.api import contracts as answers
from hub.api.openapi import openapi_document
from hub.config import ConfigError, load_config
from hub.engine.registry import declared_settings, plugin_kinds, validate_settings
from hub.plugin_manager import make_plugin_manager
from hub.sdk import CrmSink, Setting, hookimpl
from hub.sdk.contracts import COMPAT_CUSTOMER_KINDS, MAX_TEXT, FeedbackInput, InputError, parse_feedback
from hub.sdk.settings import settings_model
from tests.conftest import TEST_NOW

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
BASE = {"external_id": "x-1", "channel": "survey", "nps": 3}


def parse(**fields):
    return parse_feedback({**BASE, **fields}, now=NOW)


def refused(obj) -> InputError:
    with pytest.raises(InputError) as err:
        parse_feedback(obj, now=NOW)
    return err.value


# -- the common-schema input ------------------------------------------------------------
def test_defaults_stripping_and_normalising():
    source, item = parse(text="  Slecht  ", language=" NL ", thread_id="   ", source="")
    assert source == "api"  # default, also for a blank source
    assert item.text == "Slecht" and item.language == "nl" and item.thread_id is None
    assert item.occurred_at == NOW  # the clock passed in, not the wall clock
    assert parse(source="legacy")[0] == "legacy"


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-01T10:00:00Z", dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.UTC)),
    ("2026-11-01T10:00:00", dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.UTC)),  # no offset: UTC
    ("2026-11-01T12:00:00+02:00", dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.UTC)),
    (1_793_527_200, dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.UTC)),  # unix seconds
    (1_793_527_200.5, dt.datetime(2026, 11, 1, 10, 0, 0, 500_000, tzinfo=dt.UTC)),
])
def test_occurred_at_iso_or_unix_time_in_utc(value, expected):
    occurred = parse(occurred_at=value)[1].occurred_at
    assert occurred == expected and occurred.utcoffset() == dt.timedelta(0)


def test_nps_is_an_integer_and_an_integral_float_counts():
    assert parse(nps=3.0)[1].nps == 3 and isinstance(parse(nps=3.0)[1].nps, int)
    assert parse(nps=0)[1].nps == 0 and parse(nps=10)[1].nps == 10
    for bad, message in ((3.5, "integer"), ("3", "integer"), (True, "integer"), (-1, "at least 0"),
                         (11, "at most 10")):
        err = refused({**BASE, "nps": bad})
        assert err.field == "nps" and message in err.message, (bad, err)


@pytest.mark.parametrize(("obj", "field", "message"), [
    ({**BASE, "external_id": "   "}, "external_id", "must not be empty"),
    ({**BASE, "external_id": "x" * 201}, "external_id", "longer than 200"),
    ({**BASE, "text": "x" * (MAX_TEXT + 1)}, "text", f"longer than {MAX_TEXT}"),
    ({**BASE, "nps": None, "text": "   "}, "text", "one of text or nps"),
    ({**BASE, "channel": "fax"}, "channel", "survey"),
    ({**BASE, "occurred_at": True}, "occurred_at", "ISO-8601"),
    ({**BASE, "occurred_at": "gisteren"}, "occurred_at", "not an ISO-8601"),
    ({**BASE, "reach": -5}, "reach", "at least 0"),
    ({**BASE, "url": 5}, "url", "must be a string, not int"),
    ({**BASE, "rating": 1, "nps": "bad"}, "rating", "unknown field"),  # a misspelt field is named first
    ({**BASE, "customer": "jan@example.nl"}, "customer", "must be an object"),
    ({**BASE, "customer": {"email": "jan.example.nl"}}, "customer.email", "not an email address"),
    ({**BASE, "customer": {"name": "n" * 201}}, "customer.name", "longer than 200"),  # the customer table's limit
    ({**BASE, "customer": {"identities": [{"kind": "Facebook User", "value": "1"}]}},
     "customer.identities[0].kind", "must match"),
    ({**BASE, "customer": {"identities": [{"kind": "facebook_user"}]}}, "customer.identities[0].value", "required"),
    ({**BASE, "customer": {"identities": {"kind": "facebook_user"}}}, "customer.identities", "must be a list"),
    ([BASE], "body", "JSON object"),
])
def test_bad_input_names_the_field_with_a_readable_message(obj, field, message):
    err = refused(obj)
    assert (err.field, message in err.message) == (field, True), err
    assert "pydantic" not in err.message and "Input should" not in err.message


def test_x_handle_is_accepted_as_an_identity_of_its_kind_through_the_compat_mapping():
    assert COMPAT_CUSTOMER_KINDS == {"x_handle": "x_handle"}
    customer = parse(customer={"email": " Jan@Example.nl ", "x_handle": " @JanB "})[1].customer
    # stripped only: the identity step normalises each kind as its plugin declares
    assert customer.email == "Jan@Example.nl" and customer.handles == (("x_handle", "@JanB"),)


def test_compat_x_handle_resolves_like_before_through_the_declared_kind(client, auth):
    a = client.post("/api/v1/feedback", headers=auth, json={**BASE, "customer": {"x_handle": "@JanB"}}).get_json()
    b = client.post("/api/v1/feedback", headers=auth, json={
        **BASE, "external_id": "x-2", "channel": "social", "text": "nog steeds niks",
        "customer": {"identities": [{"kind": "x_handle", "value": "janb"}]}}).get_json()
    assert a["customer_id"] == b["customer_id"]
    customer = client.get(f"/api/v1/customers/{a['customer_id']}", headers=auth).get_json()
    assert [(i["kind"], i["value"]) for i in customer["identities"]] == [("x_handle", "janb")]


def test_generic_identities_and_dedupe_with_the_compat_field():
    customer = parse(customer={"x_handle": "janb", "identities": [
        {"kind": "x_handle", "value": "janb"}, {"kind": "facebook_user", "value": " 1234 "}]})[1].customer
    assert customer.handles == (("x_handle", "janb"), ("facebook_user", "1234"))


def test_api_answers_a_generic_identity_and_errors_in_the_declared_shape(client, auth, hub):
    r = client.post("/api/v1/feedback", headers=auth, json={**BASE, "text": "Slecht", "customer": {
        "email": "jan@example.nl", "identities": [{"kind": "facebook_user", "value": "1234"}]}})
    assert r.status_code == 201
    body = r.get_json()
    assert dt.datetime.fromisoformat(body["occurred_at"]) == TEST_NOW  # no occurred_at: the hub clock's now
    customer = client.get(f"/api/v1/customers/{body['customer_id']}", headers=auth).get_json()
    assert ("facebook_user", "1234") in {(i["kind"], i["value"]) for i in customer["identities"]}
    bad = client.post("/api/v1/feedback", headers=auth, json={**BASE, "customer": {"identities": [{"kind": "x"}]}})
    assert bad.status_code == 400
    assert bad.get_json() == {"error": {"code": "invalid", "field": "customer.identities[0].value",
                                        "message": "is required"}}


# -- plugin settings ---------------------------------------------------------------------
def _site(tmp_path, text: str) -> str:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return str(path)


def test_typeform_page_size_over_the_api_limit_stops_start_up_with_file_key_and_reason(make_app, tmp_path,
                                                                                     monkeypatch):
    site = _site(tmp_path, '[sources.nps]\nplugin = "survey_typeform"\nform_id = "u6nXL7"\npage_size = 5000\n')
    monkeypatch.setenv("HUB_CONFIG", site)
    with pytest.raises(ConfigError) as err:
        make_app()
    assert (err.value.file, err.value.key, err.value.reason) == (
        site, "sources.nps.page_size", "must be at most 1000 (got 5000)")
    assert str(err.value) == f"{site}: sources.nps.page_size: must be at most 1000 (got 5000)"


@pytest.mark.parametrize(("table", "key", "reason"), [
    ({"plugin": "survey_typeform", "form_id": "f", "page_size": 0}, "page_size", "must be at least 1 (got 0)"),
    ({"plugin": "survey_typeform", "form_id": "f", "page_size": "100"}, "page_size", "expected int, got str"),
    ({"plugin": "survey_typeform", "form_id": "f", "page_size": 10.0}, "page_size", "expected int, got float"),
    ({"plugin": "survey_typeform", "form_id": "f", "include_titles": 1}, "include_titles", "expected bool, got int"),
    ({"plugin": "survey_typeform", "page_size": 10}, "form_id", "missing (required by plugin 'survey_typeform')"),
    ({"plugin": "survey_typeform", "form_id": "f", "schedule_seconds": 0}, "schedule_seconds",
     "must be at least 1 (got 0)"),
    ({"plugin": "survey_typeform", "form_id": "f", "timeout": [5, 900]}, "timeout", "must be at most 600 (got 900)"),
    ({"plugin": "survey_typeform", "form_id": "f", "enabled": "yes"}, "enabled", "expected bool, got str"),
    ({"plugin": "twitter_webcare", "bearer_token": "t", "user_id": "1", "max_results": 3}, "max_results",
     "must be at least 5 (got 3)"),
    ({"plugin": "twitter_webcare", "bearer_token": "t", "user_id": "1", "budget_reset_day": 31}, "budget_reset_day",
     "must be at most 28 (got 31)"),
])
def test_settings_out_of_range_or_of_the_wrong_type_name_file_key_and_reason(make_app, table, key, reason):
    section = "sources"
    with pytest.raises(ConfigError) as err:
        make_app(**{section: {"inst": table}})
    assert (err.value.file, err.value.key, err.value.reason) == ("<overrides>", f"{section}.inst.{key}", reason)


def test_a_setting_in_range_is_kept_and_defaults_are_filled(make_app):
    app = make_app(sources={"nps": {"plugin": "survey_typeform", "form_id": "f", "page_size": 1000,
                                    "timeout": [3, 30], "schedule_seconds": 2.5}})
    settings = app.extensions["hub"].registry.sources["nps"].settings
    assert (settings["page_size"], settings["timeout"], settings["schedule_seconds"]) == (1000, [3, 30], 2.5)
    assert settings["overlap_seconds"] == 300 and settings["email_field"] == "email"


class ChoicePlugin:
    class ChoiceSink(CrmSink):
        plugin_name = "choosy"
        settings = [Setting("mode", choices=["call", "mail"], default="call", help="how to follow up"),
                    Setting("days", type=list, choices=["mon", "tue"], default=[], help="callback days"),
                    Setting("api_key", secret=True, help="a secret validated after it is resolved"),
                    Setting("ratio", type=float, minimum=0, maximum=1, default=0.5, help="share")]

        def push(self, followups):
            return []

    @hookimpl
    def hub_register_crm_sinks(self):
        return [self.ChoiceSink]


@pytest.mark.parametrize(("extra", "key", "reason"), [
    ({"mode": "fax"}, "mode", "must be one of 'call', 'mail' (got 'fax')"),
    ({"days": ["mon", "sun"]}, "days", "must be one of 'mon', 'tue' (got 'sun')"),
    ({"ratio": 1.5}, "ratio", "must be at most 1 (got 1.5)"),
    ({"ratio": True}, "ratio", "expected float, got bool"),
])
def test_choices_and_ranges_of_a_third_party_sink(make_app, extra, key, reason):
    with pytest.raises(ConfigError) as err:
        make_app(plugins=(ChoicePlugin(),), sinks={"c": {"plugin": "choosy", **extra}})
    assert (err.value.key, err.value.reason) == (f"sinks.c.{key}", reason)


def test_secret_is_resolved_before_it_is_validated(make_app, monkeypatch):
    monkeypatch.setenv("CHOOSY_KEY", "k-123")
    app = make_app(plugins=(ChoicePlugin(),), sinks={"c": {"plugin": "choosy", "api_key": "env:CHOOSY_KEY",
                                                           "ratio": 1, "days": ["tue"]}})
    settings = app.extensions["hub"].registry.sinks["c"].settings
    assert (settings["api_key"], settings["ratio"], settings["days"], settings["mode"]) == ("k-123", 1, ["tue"], "call")


def test_every_bundled_kind_declares_help_and_its_defaults_pass_its_own_checks():
    sources, sinks = plugin_kinds(make_plugin_manager())
    assert {"survey_typeform", "twitter_webcare"} <= set(sources) and {"crm_hubspot", "local"} <= set(sinks)
    for name, cls in {**sources, **sinks}.items():
        declared = declared_settings(cls)
        assert all(s.help for s in declared), name
        defaults = {s.name: s.default for s in declared if s.default is not None}
        settings_model(name, declared).model_validate(defaults)  # raises if a default breaks its own range


def test_validate_settings_refuses_unknown_keys_naming_the_known_ones():
    sources, _ = plugin_kinds(make_plugin_manager())
    cfg = load_config(environ={})
    with pytest.raises(ConfigError) as err:
        validate_settings(sources["survey_typeform"], {"plugin": "survey_typeform", "form": "x"}, cfg, "sources.nps")
    assert err.value.key == "sources.nps.form" and "form_id" in err.value.reason


# -- the site config ---------------------------------------------------------------------
@pytest.mark.parametrize(("text", "key", "reason"), [
    ('executor = "dask"\n', "executor", "must be one of 'threads', 'inline' or 'celery'"),
    ("executor_workers = 0\n", "executor_workers", "must be at least 1 (got 0)"),
    ('public_url = "hub.example.nl"\n', "public_url", "must start with http:// or https://"),
    ('[planner]\ntimezone = "Europe/Amsterdamm"\n', "planner.timezone", "unknown time zone"),
    ("[planner]\nbusiness_hours = [17, 9]\n", "planner.business_hours", "start before end"),
    ("[planner]\nbusiness_hours = [9, 25]\n", "planner.business_hours[1]", "at most 24"),
    ("[planner]\nsla_hours = { critical = 2 }\n", "planner.sla_hours.critical", "must be one of 'urgent'"),
    ("[scheduler]\npull_interval_seconds = 0\n", "scheduler.pull_interval_seconds", "must be more than 0"),
    ('[scheduler]\npull_interval_seconds = "60"\n', "scheduler.pull_interval_seconds", "must be a number"),
    ("[dispatch]\nbatch_sise = 10\n", "dispatch.batch_sise", "unknown key (did you mean batch_size?)"),
    ("[web]\npoll_seconds = true\n", "web.poll_seconds", "must be a number"),
    ('[sinks."my crm"]\nplugin = "local"\n', "sinks.my crm", "letters, digits"),
    ("sources = 5\n", "sources", "must be a table"),
])
def test_core_config_errors_name_file_key_and_reason(tmp_path, text, key, reason):
    site = _site(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(site, environ={})
    assert (err.value.file, err.value.key) == (site, key) and reason in err.value.reason, err.value


def test_environment_values_are_checked_and_named_as_such():
    with pytest.raises(ConfigError) as err:
        load_config(environ={"HUB_DISPATCH__MAX_ATTEMPTS": "0"})
    assert (err.value.file, err.value.key) == ("<environment HUB_*>", "dispatch.max_attempts")
    cfg = load_config(environ={"HUB_DISPATCH__MAX_ATTEMPTS": "3", "HUB_PLANNER__BUSINESS_HOURS": "[8, 18]"})
    assert cfg["dispatch"]["max_attempts"] == 3 and cfg["planner"]["business_hours"] == [8, 18]


def test_unknown_top_level_tables_belong_to_plugins_and_unknown_values_are_warned_about(tmp_path, caplog):
    site = _site(tmp_path, 'max_body_byte = 10\n[vip]\ndomains = ["bigcorp.nl"]\n')
    with caplog.at_level(logging.WARNING, logger="hub.config"):
        cfg = load_config(site, environ={})
    assert cfg["vip"] == {"domains": ["bigcorp.nl"]} and cfg["max_body_bytes"] == 1048576
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"{site}: max_body_byte: unknown top-level key, ignored (did you mean max_body_bytes?)"]


# -- the OpenAPI document ----------------------------------------------------------------
def test_openapi_schemas_are_generated_from_the_declared_models():
    schemas = openapi_document()["components"]["schemas"]
    for model in (FeedbackInput, answers.Feedback, answers.RiskReason, answers.Case, answers.CaseListed,
                  answers.Followup, answers.Customer, answers.Error, answers.FeedbackPage, answers.CasePage,
                  answers.Health):
        assert set(schemas[model.__name__]["properties"]) == set(model.model_fields), model
    assert schemas["FeedbackInput"]["additionalProperties"] is False
    assert schemas["FeedbackInput"]["properties"]["nps"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 10}
    assert set(schemas["CustomerInput"]["properties"]) >= {"email", "identities", *COMPAT_CUSTOMER_KINDS}
    refs = {ref for ref in _refs(openapi_document())}
    assert refs and all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize("obj", [
    BASE, {**BASE, "nps": 3.0}, {**BASE, "occurred_at": 1_793_527_200}, {**BASE, "customer": {"x_handle": "j"}},
    {**BASE, "nps": 11}, {**BASE, "nps": "3"}, {**BASE, "nps": True}, {**BASE, "channel": "fax"},
    {"external_id": "x", "channel": "survey"}, {**BASE, "score": 1}, {**BASE, "text": "x" * (MAX_TEXT + 1)},
    {**BASE, "customer": {"mail": "a@b"}}, {**BASE, "customer": {"identities": [{"kind": "A", "value": "1"}]}},
    {**BASE, "external_id": 7}, {"channel": "survey", "nps": 1},
])
def test_the_published_input_schema_and_the_parser_agree(obj):
    doc = openapi_document()
    registry = Registry().with_resource("urn:doc", DRAFT202012.create_resource(doc))
    schema = json.loads(json.dumps(doc["components"]["schemas"]["FeedbackInput"]).replace(
        '"#/components', '"urn:doc#/components'))
    published = jsonschema.Draft202012Validator(schema, registry=registry).is_valid(obj)
    try:
        parse_feedback(obj, now=NOW)
        accepted = True
    except InputError:
        accepted = False
    assert published == accepted


def test_answers_carry_exactly_the_declared_fields(client, auth):
    schemas = openapi_document()["components"]["schemas"]
    item = client.post("/api/v1/feedback", headers=auth, json={**BASE, "text": "Ik ga opzeggen",
                                                               "customer": {"email": "a@b.nl"}}).get_json()
    assert set(item) == set(schemas["Feedback"]["properties"])
    assert set(item["risk_reasons"][0]) == set(schemas["RiskReason"]["properties"]) == {"signal", "weight", "detail"}
    listed = client.get("/api/v1/cases", headers=auth).get_json()
    assert set(listed) == {"items", "next_cursor"}
    assert set(listed["items"][0]) == set(schemas["CaseListed"]["properties"])
    assert set(listed["items"][0]["followup"]) == set(schemas["Followup"]["properties"])
    customer = client.get(f"/api/v1/customers/{item['customer_id']}", headers=auth).get_json()
    assert set(customer) == set(schemas["Customer"]["properties"])
    assert set(customer["cases"][0]) == set(schemas["Case"]["properties"])
    assert set(client.get("/api/v1/health").get_json()) == set(schemas["Health"]["properties"])
