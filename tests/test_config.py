"""Configuration layers and start-up errors that name file, key and reason."""

from __future__ import annotations

import pytest

from hub.config import ConfigError, env_layer, load_config


def _site(tmp_path, text):
    path = tmp_path / "site.toml"
    path.write_text(text)
    return str(path)


def test_layers_env_overrides_site_overrides_default(tmp_path):
    site = _site(tmp_path, "[scoring]\nrisk_threshold = 50\n")
    cfg = load_config(site, environ={"HUB_SCORING__CHURN_WEIGHT": "30", "HUB_EXECUTOR": "inline"})
    assert cfg["scoring"]["risk_threshold"] == 50
    assert cfg["scoring"]["churn_weight"] == 30
    assert cfg["executor"] == "inline"
    assert "opzeggen" in cfg["scoring"]["churn_words"]  # defaults kept
    assert cfg.origin("scoring.risk_threshold") == site


def test_env_layer_parses_json_and_nests():
    assert env_layer({"HUB_A__B": "[1, 2]", "HUB_C": "text", "HUB_CONFIG": "x", "OTHER": "1"}) == {
        "a": {"b": [1, 2]}, "c": "text"}


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("[sources.nps]\nform_id = 'x'\n", "sources.nps.plugin", "missing"),
    ("[routing]\nfollowups = 'crm'\n", "routing.followups", "no [sinks.crm] table"),
    ("max_body_bytes = -1\n", "max_body_bytes", "must be at least 1 (got -1)"),
    ("[sources\n", "-", "invalid TOML"),
])
def test_bad_site_file(tmp_path, text, key, reason):
    site = _site(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(site, environ={})
    assert err.value.file == site and err.value.key == key and reason in err.value.reason


def test_instance_errors_at_app_start(make_app, monkeypatch):
    with pytest.raises(ConfigError, match=r"sources.nps.plugin: unknown source plugin 'nope'"):
        make_app(sources={"nps": {"plugin": "nope"}})
    with pytest.raises(ConfigError, match=r"sinks.rec.colour: unknown setting"):
        make_app(sinks={"rec": {"plugin": "local", "colour": "red"}})
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    from tests.helpers import RecordingSinkPlugin

    with pytest.raises(ConfigError, match=r"sinks.rec.label: environment variable NOT_SET_ANYWHERE is not set"):
        make_app(plugins=(RecordingSinkPlugin(),), sinks={"rec": {"plugin": "recording", "label": "env:NOT_SET_ANYWHERE"}})


def test_secret_from_env_and_file(make_app, monkeypatch, tmp_path):
    from tests.helpers import RecordingSinkPlugin

    monkeypatch.setenv("REC_LABEL", "from-env")
    app = make_app(plugins=(RecordingSinkPlugin(),), sinks={"rec": {"plugin": "recording", "label": "env:REC_LABEL"}})
    assert app.extensions["hub"].registry.sinks["rec"].settings["label"] == "from-env"
    secret = tmp_path / "label"
    secret.write_text("from-file\n")
    app = make_app(plugins=(RecordingSinkPlugin(),), sinks={"rec": {"plugin": "recording", "label": f"file:{secret}"}})
    assert app.extensions["hub"].registry.sinks["rec"].settings["label"] == "from-file"
    assert "from-file" not in repr(app.extensions["hub"].registry.sinks["rec"])
