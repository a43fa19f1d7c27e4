"""Outbound HTTP reaches public hosts or the allow-list only (server-side request forgery).

Real sockets throughout: local servers on 127.0.0.1 stand for the internal
systems an attacker would aim at, and the policy under test refuses them
unless ``http.allowed_private_hosts`` lists them.  Name resolution is faked
(``socket.getaddrinfo`` for made-up ``.test`` names only) to play a DNS server
that answers with private addresses or changes its answer (rebinding).
"""

from __future__ import annotations

import socket

import flask
import pytest

from hub.config import ConfigError, load_config
from hub.engine.registry import outbound_policy
from hub.sdk import FakeClock, SourceConnector, Stream, hookimpl
from hub.sdk.addresses import STRICT, OutboundPolicy
from hub.sdk.http import BlockedDestinationError, HttpClient, RedirectRefusedError

REFUSED = ["169.254.169.254", "127.0.0.1", "127.3.4.5", "::1", "10.1.2.3", "172.16.0.1", "172.31.255.254",
           "192.168.1.1", "::ffff:127.0.0.1", "fe80::1", "100.64.0.1", "0.0.0.0", "fd00::1",
           "2002:7f00:1::", "64:ff9b::a9fe:a9fe"]  # 6to4 of 127.0.0.1, NAT64 of 169.254.169.254


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_and_link_local_addresses_are_refused(address):
    reason = STRICT.refusal("target", address)
    assert reason is not None and "http.allowed_private_hosts" in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert STRICT.refusal("api.example.com", address) is None


def test_the_allow_list_takes_hosts_addresses_and_networks():
    policy = OutboundPolicy.allowing(["127.0.0.1", "10.20.0.0/16", "crm.intern.example", "[::1]"])
    assert policy.refusal("x", "127.0.0.1") is None
    assert policy.refusal("x", "10.20.3.4") is None and policy.refusal("x", "10.21.0.1") is not None
    assert policy.refusal("crm.intern.example", "192.168.7.7") is None  # the name is allowed, whatever it resolves to
    assert policy.refusal("other.intern.example", "192.168.7.7") is not None
    assert policy.refusal("x", "::1") is None and policy.refusal("x", "127.0.0.2") is not None
    for bad in ("http://127.0.0.1", "10.0.0.1/8", "host:8080", "", "1.2.3"):
        with pytest.raises(ValueError):
            OutboundPolicy.allowing([bad])


# -- configuration ---------------------------------------------------------------
def test_allowed_private_hosts_from_the_environment():
    cfg = load_config(environ={"HUB_HTTP__ALLOWED_PRIVATE_HOSTS": '["127.0.0.1", "10.0.0.0/8"]'})
    assert cfg["http"]["allowed_private_hosts"] == ["127.0.0.1", "10.0.0.0/8"]
    assert outbound_policy(cfg).refusal("x", "10.9.9.9") is None
    assert load_config(environ={})["http"]["allowed_private_hosts"] == []


def test_a_bad_allow_list_entry_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        load_config(environ={"HUB_HTTP__ALLOWED_PRIVATE_HOSTS": '["127.0.0.1", "http://10.0.0.1/"]'})
    assert err.value.key.startswith("http.allowed_private_hosts") and "http://10.0.0.1/" in err.value.reason


class ApiSource(SourceConnector):
    plugin_name = "api_source"
    default_base_url = "https://api.example.com"

    def streams(self):
        return []


class Plugin:
    @hookimpl
    def hub_register_connectors(self):
        return [ApiSource]


@pytest.mark.parametrize("base_url", ["http://169.254.169.254/latest/meta-data", "http://127.0.0.1:6379",
                                      "http://[::1]:8080", "http://10.0.0.7", "http://localhost:9200"])
def test_a_private_base_url_stops_the_start_with_the_key(make_app, base_url):
    with pytest.raises(ConfigError) as err:
        make_app(plugins=(Plugin(),), http={"allowed_private_hosts": []},
                 sources={"feed": {"plugin": "api_source", "base_url": base_url}})
    assert err.value.key == "sources.feed.base_url"
    assert "http.allowed_private_hosts" in err.value.reason


def test_an_allowed_private_base_url_starts_and_its_client_carries_the_policy(make_app):
    app = make_app(plugins=(Plugin(),), http={"allowed_private_hosts": ["10.0.0.0/8"]},
                   sources={"feed": {"plugin": "api_source", "base_url": "http://10.0.0.7"}})
    client = app.extensions["hub"].registry.connector("feed").http
    assert client.policy.refusal("x", "10.0.0.7") is None
    assert client.policy.refusal("x", "127.0.0.1") is not None  # only what the site listed


def test_demo_mode_allows_its_own_emulators_only():
    cfg = load_config(environ={"HUB_DEMO": "1", "HUB_PUBLIC_URL": '"http://127.0.0.1:5000"'})
    policy = outbound_policy(cfg)
    assert policy.refusal("127.0.0.1", "127.0.0.1") is None
    assert policy.refusal("x", "169.254.169.254") is not None
    assert outbound_policy(load_config(environ={})).refusal("127.0.0.1", "127.0.0.1") is not None


# -- at request time -----------------------------------------------------------------
@pytest.fixture
def internal(live_server):
    """An "internal system" on 127.0.0.1 that records what reached it."""
    app = flask.Flask(__name__)
    app.hits = []

    @app.route("/<path:path>")
    def anything(path):
        app.hits.append(path)
        return {"secret": "internal"}

    app.url = live_server(app)
    app.port = int(app.url.rsplit(":", 1)[1])
    return app


@pytest.fixture
def fake_dns(monkeypatch):
    """``fake_dns["name.test"] = [addresses...]``: answers consumed one per look-up (the last repeats)."""
    class Answers(dict):
        lookups: list[str]

    answers = Answers()
    answers.lookups = lookups = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            lookups.append(host)
            queue = answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port or 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_a_literal_private_address_is_refused_before_sending(internal):
    client = HttpClient(internal.url, clock=FakeClock(), policy=STRICT, max_retries=3)
    with pytest.raises(BlockedDestinationError, match="http.allowed_private_hosts"):
        client.get("/latest/meta-data")
    assert internal.hits == [] and client.requests_sent == 1  # not retried either


def test_the_allow_list_lets_the_same_request_through(internal):
    client = HttpClient(internal.url, clock=FakeClock(), policy=OutboundPolicy.allowing(["127.0.0.1"]))
    assert client.get("/status").json() == {"secret": "internal"}
    assert internal.hits == ["status"]


def test_a_public_looking_name_that_resolves_private_is_refused(internal, fake_dns):
    fake_dns["metadata.test"] = ["127.0.0.1"]
    client = HttpClient(f"http://metadata.test:{internal.port}", clock=FakeClock(), policy=STRICT)
    with pytest.raises(BlockedDestinationError, match=r"metadata.test \(127.0.0.1\) is a loopback address"):
        client.get("/latest/meta-data")
    assert internal.hits == []


def test_dns_rebinding_connects_to_the_address_that_was_checked(internal, fake_dns):
    # First answer allowed, every later one private: a client that checks one
    # answer and lets the socket resolve again would connect to 10.255.255.1.
    fake_dns["rebind.test"] = ["127.0.0.1", "10.255.255.1"]
    client = HttpClient(f"http://rebind.test:{internal.port}", clock=FakeClock(), timeout=(2.0, 5.0),
                        policy=OutboundPolicy.allowing(["127.0.0.1"]))
    assert client.get("/x").json() == {"secret": "internal"}
    assert fake_dns.lookups == ["rebind.test"]  # resolved once, for check and connection alike
    # The next connection gets the private answer, and is refused.
    client.session.close()
    with pytest.raises(BlockedDestinationError, match="10.255.255.1"):
        client.get("/y")
    assert internal.hits == ["x"]


def test_an_allowed_host_name_may_resolve_private(internal, fake_dns):
    fake_dns["crm.intern.test"] = ["127.0.0.1"]
    client = HttpClient(f"http://crm.intern.test:{internal.port}", clock=FakeClock(),
                        policy=OutboundPolicy.allowing(["crm.intern.test"]))
    assert client.get("/ok").status_code == 200


# -- redirects ---------------------------------------------------------------------------
@pytest.fixture
def redirector(live_server, internal):
    app = flask.Flask("redirector")
    app.hits = []

    @app.get("/elsewhere")
    def elsewhere():
        app.hits.append("elsewhere")
        return flask.redirect(f"{internal.url}/stolen", 302)

    @app.get("/moved")
    def moved():
        return flask.redirect("/here", 301)

    @app.get("/here")
    def here():
        app.hits.append("here")
        return {"ok": True}

    app.url = live_server(app)
    return app


def test_a_redirect_to_another_port_is_not_followed(redirector, internal):
    client = HttpClient(redirector.url, clock=FakeClock(), policy=OutboundPolicy.allowing(["127.0.0.1"]))
    with pytest.raises(RedirectRefusedError, match="not followed"):
        client.get("/elsewhere")
    assert redirector.hits == ["elsewhere"] and internal.hits == []


def test_a_redirect_on_the_same_origin_is_followed(redirector):
    client = HttpClient(redirector.url, clock=FakeClock(), policy=OutboundPolicy.allowing(["127.0.0.1"]))
    assert client.get("/moved").json() == {"ok": True}
    assert redirector.hits == ["here"]


def test_a_client_sharing_a_guarded_session_keeps_its_policy(internal):
    first = HttpClient(internal.url, clock=FakeClock(), policy=STRICT)
    second = HttpClient(internal.url, clock=FakeClock(), session=first.session)
    assert second.policy is STRICT
    with pytest.raises(BlockedDestinationError):
        second.get("/x")


# -- through the hub ----------------------------------------------------------------------
class Items(Stream):
    name = "items"
    path = "/items"

    def parse_records(self, response):
        return response.json()["items"]


class PullSource(ApiSource):
    plugin_name = "pull_source"

    def streams(self):
        return [Items(self)]

    def normalize(self, raw):
        return []


class PullPlugin:
    @hookimpl
    def hub_register_connectors(self):
        return [PullSource]


def test_a_pull_to_a_name_that_resolves_private_fails_with_the_key_and_sends_nothing(make_app, internal, fake_dns):
    from hub.engine.pulls import pull, source_status

    fake_dns["vendor.test"] = ["127.0.0.1"]
    app = make_app(plugins=(PullPlugin(),), http={"allowed_private_hosts": []},
                   sources={"feed": {"plugin": "pull_source", "base_url": f"http://vendor.test:{internal.port}"}})
    hub = app.extensions["hub"]
    with pytest.raises(BlockedDestinationError):
        pull(hub, "feed")
    assert internal.hits == []
    (status,) = source_status(hub)
    assert "http.allowed_private_hosts" in status["last_error"] and "loopback" in status["last_error"]


def test_the_crm_sinks_second_client_keeps_the_hubs_policy(make_app):
    app = make_app(http={"allowed_private_hosts": ["10.0.0.0/8"]},
                   sinks={"hs": {"plugin": "crm_hubspot", "token": "pat-x", "base_url": "http://10.0.0.7"}})
    sink = app.extensions["hub"].registry.sink("hs")
    assert sink.create_http.policy is sink.http.policy
    assert sink.http.policy.refusal("x", "10.0.0.7") is None and sink.http.policy.refusal("x", "192.168.0.1")
