"""Configuration: three layers, validated at start.

1. ``config/default.toml`` (shipped, non-secret defaults),
2. the site file named by ``HUB_CONFIG`` (or ``--config``),
3. ``HUB_*`` environment variables, ``__`` nesting (``HUB_SCORING__RISK_THRESHOLD=50``),
   values parsed as JSON when they parse (so numbers and lists work), else strings.

Secrets are never written in files: a value ``"env:NAME"`` is read from the
environment and ``"file:/run/secrets/x"`` from a secrets file.  Any problem
raises :class:`ConfigError` naming the file, the key and the reason, so start-up
stops with a message an admin can act on.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import json
import logging
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub.sdk.contracts import dotted, readable

log = logging.getLogger(__name__)


def _default_file() -> Path:
    """The one copy of the defaults: ``config/default.toml`` in the source tree;
    a wheel installs it as data under ``<prefix>/share/feedback-hub/``."""
    in_tree = Path(__file__).resolve().parents[1] / "config" / "default.toml"
    installed = Path(sys.prefix) / "share" / "feedback-hub" / "default.toml"
    return in_tree if in_tree.is_file() or not installed.is_file() else installed


DEFAULT_FILE = _default_file()
# Variables with the prefix that are not configuration keys.
_NOT_CONFIG = {"HUB_CONFIG", "HUB_LOAD_PLUGINS", "HUB_TEST_DATABASE_URL", "HUB_INSTANCE_PATH"}


class ConfigError(Exception):
    """Bad configuration: where it is (file), which key, and why."""

    def __init__(self, file: str | os.PathLike[str] | None, key: str, reason: str):
        self.file = str(file) if file else "<environment>"
        self.key = key
        self.reason = reason
        super().__init__(f"{self.file}: {key}: {reason}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "-", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "-", f"invalid TOML: {exc}") from None


def _merge(base: dict[str, Any], over: Mapping[str, Any], origins: dict[str, str], origin: str, prefix=""):
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, origins, origin, dotted + ".")
        else:
            base[key] = copy.deepcopy(value) if isinstance(value, Mapping | list) else value
            origins[dotted] = origin
            if isinstance(value, Mapping):
                for sub in _walk_keys(value, dotted + "."):
                    origins[sub] = origin


def _walk_keys(mapping: Mapping[str, Any], prefix: str):
    for key, value in mapping.items():
        yield prefix + key
        if isinstance(value, Mapping):
            yield from _walk_keys(value, prefix + key + ".")


def env_layer(environ: Mapping[str, str], prefix: str = "HUB_") -> dict[str, Any]:
    """``HUB_*`` variables as a nested dict (like Flask's ``from_prefixed_env``)."""
    out: dict[str, Any] = {}
    for name in sorted(environ):
        if not name.startswith(prefix) or name in _NOT_CONFIG:
            continue
        raw = environ[name]
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        parts = [p.lower() for p in name[len(prefix):].split("__")]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    return out


class Config(dict):
    """The merged configuration plus where each key came from."""

    origins: dict[str, str]

    def origin(self, dotted_key: str) -> str:
        dotted_key = dotted_key.split("[", 1)[0]  # planner.business_hours[0] comes from planner.business_hours
        while dotted_key:
            if dotted_key in self.origins:
                return self.origins[dotted_key]
            dotted_key = dotted_key.rpartition(".")[0]
        return str(DEFAULT_FILE)

    def error(self, dotted_key: str, reason: str) -> ConfigError:
        return ConfigError(self.origin(dotted_key), dotted_key, reason)


def load_config(
    site_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the three layers (plus ``overrides`` from code, e.g. tests)."""
    environ = os.environ if environ is None else environ
    origins: dict[str, str] = {}
    merged: dict[str, Any] = {}
    _merge(merged, _read_toml(DEFAULT_FILE), origins, str(DEFAULT_FILE))
    site = site_file or environ.get("HUB_CONFIG")
    if site:
        _merge(merged, _read_toml(Path(site)), origins, str(site))
    _merge(merged, env_layer(environ), origins, "<environment HUB_*>")
    if overrides:
        _merge(merged, overrides, origins, "<overrides>")
    cfg = Config(merged)
    cfg.origins = origins
    _validate_core(cfg)
    return cfg


# -- the core's sections, declared once ----------------------------------------
# Defaults live in config/default.toml (always the first layer), so the model
# declares types, ranges and choices only; a key the defaults file lacks is
# optional here.  Values are strict: TOML and JSON (HUB_* variables) are typed,
# so "5" is not 5 and true is not 1.
Positive = Annotated[float, Field(strict=True, gt=0)]  # seconds, hours, days: more than 0
Count = Annotated[int, Field(strict=True, ge=1)]
Hour = Annotated[int, Field(strict=True, ge=0, le=24)]
Name = Annotated[str, StringConstraints(strict=True, min_length=1)]


class _Section(BaseModel):
    # A misspelt key in a core section would silently keep its default: refuse it.
    model_config = ConfigDict(extra="forbid")


class RoutingConfig(_Section):
    followups: Name = Field(description="sink instance that receives callbacks")
    unreachable: Name | None = Field(None, description="sink for customers known only by a social handle")


class SchedulerConfig(_Section):
    pull_interval_seconds: Positive
    dispatch_interval_seconds: Positive
    sync_interval_seconds: Positive
    lease_seconds: Positive = Field(description="SQLite: a crashed scheduler's lease frees after this long")
    leader_check_seconds: Positive = Field(2.0, description="how often the leading scheduler proves it still "
                                           "leads (it stops its jobs at once when not)")
    standby_retry_seconds: Positive = Field(5.0, description="how often a standby scheduler asks for leadership")


class DispatchConfig(_Section):
    batch_size: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    max_attempts: Count
    backoff_base_seconds: Positive
    backoff_max_seconds: Positive
    claim_timeout_seconds: Positive
    alert_after_seconds: Positive


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("zone", "unknown time zone {zone} (use an IANA name, e.g. Europe/Amsterdam)",
                                  {"zone": repr(value)}) from None
    return value


def _start_before_end(value: list[int]) -> list[int]:
    if value and value[0] >= value[1]:
        raise PydanticCustomError("hours", "must be [start, end] with start before end (got {value})",
                                  {"value": value})
    return value


def _known_country(value: str | None) -> str | None:
    if not value:
        return value
    import holidays

    if value.upper() not in holidays.list_supported_countries():
        raise PydanticCustomError("country", "no public holidays known for {country} (use an ISO code, e.g. NL)",
                                  {"country": repr(value)})
    return value.upper()


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
#: [open, close] local hours, or [] for closed.
HourSpan = Annotated[list[Hour], Field(max_length=2), AfterValidator(_start_before_end)]


class PlannerConfig(_Section):
    timezone: Name
    business_hours: Annotated[list[Hour], Field(min_length=2, max_length=2)]
    peak_hours: list[Annotated[int, Field(strict=True, ge=0, le=23)]]
    slot_capacity: Count
    # The priorities of hub.sdk.schema.Escalation.
    sla_hours: dict[Literal["urgent", "high", "normal", "low"], Positive] = Field(
        description="business hours from opening to the first contact, per priority")
    max_callback_age_days: Positive
    business_days: list[Weekday] | None = None
    weekday_hours: dict[Weekday, HourSpan] | None = None
    holidays_country: Annotated[str, StringConstraints(strict=True, max_length=3)] | None = Field(
        None, description="ISO country whose public holidays are closed (the holidays package); empty for none")
    holidays_subdivision: Annotated[str, StringConstraints(strict=True, max_length=10)] | None = None
    closed_dates: list[dt.date] | None = None
    peak_factor: Positive | None = None
    load_weeks: Count | None = None
    horizon_days: Annotated[int, Field(strict=True, ge=1, le=90)] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _known_zone(value)

    @field_validator("business_hours")
    @classmethod
    def _start_before_end(cls, value: list[int]) -> list[int]:
        return _start_before_end(value)

    @field_validator("holidays_country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        return _known_country(value)


def _email_address(value: str) -> str:
    local, at, domain = value.partition("@")
    if not (local and at and "." in domain) or any(c.isspace() for c in value):
        raise PydanticCustomError("email", "not an e-mail address (got {value})", {"value": repr(value)})
    return value


EmailAddress = Annotated[str, StringConstraints(strict=True, min_length=3), AfterValidator(_email_address)]


class TeamConfig(_Section):
    """``[teams.<name>]``: who calls back; calendar keys override ``[planner]``'s."""

    default: StrictBool = False
    capacity: Count | None = Field(None, description="callbacks per hour (default planner.slot_capacity)")
    crm_owner: Name | None = Field(None, description="CRM owner id the team's callback tasks get")
    lead: Name | None = Field(None, description="hub user who takes over the team's breached cases")
    lead_crm_owner: Name | None = Field(None, description="CRM owner id of the team lead")
    lead_email: EmailAddress | None = Field(None, description="where the SLA alert of a breached case goes ([sla] notifier)")
    themes: list[Name] = []
    channels: list[Name] = []
    peak_hours: list[Annotated[int, Field(strict=True, ge=0, le=23)]] | None = None
    timezone: Name | None = None
    business_hours: HourSpan | None = None
    business_days: list[Weekday] | None = None
    weekday_hours: dict[Weekday, HourSpan] | None = None
    holidays_country: Annotated[str, StringConstraints(strict=True, max_length=3)] | None = None
    holidays_subdivision: Annotated[str, StringConstraints(strict=True, max_length=10)] | None = None
    closed_dates: list[dt.date] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return value if value is None else _known_zone(value)

    @field_validator("holidays_country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        return _known_country(value)


class SlaConfig(_Section):
    at_risk_share: Annotated[float, Field(strict=False, gt=0, lt=1)] = Field(
        description="a case is at risk when less than this share of its SLA's business hours is left")
    escalate: StrictBool = Field(description="escalate breached cases (priority up, owner the team lead)")
    notifier: Name | None = Field(None, description="notifier instance that alerts the team lead of a breach (none: no alert)")
    language: Literal["nl", "en"] | None = Field(None, description="language of the alert (default: the notifier's)")


def _rate_limit(value: str) -> str:
    """A Flask-Limiter limit string, e.g. ``10 per minute`` (checked at start-up, not at the first login)."""
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise PydanticCustomError("limit", "not a rate limit (use e.g. '10 per minute'; got {value})",
                                  {"value": repr(value)}) from None
    return value


RateLimit = Annotated[str, StringConstraints(strict=True, min_length=1), AfterValidator(_rate_limit)]


def _limits_storage(value: str) -> str:
    from limits.storage import SCHEMES

    scheme = value.split("://", 1)[0]
    if "://" not in value or scheme not in SCHEMES or scheme.startswith("async+"):
        raise PydanticCustomError("storage", "not a rate-limit storage (use memory:// or redis://host:port; got {value})",
                                  {"value": repr(value)})
    return value


Days = Annotated[int, Field(strict=True, ge=0, le=36_500)]


class RetentionPolicy(_Section):
    raw_payload_days: Days | None = Field(None, description="empty raw payloads after this many days (0: never)")
    item_months: Days | None = Field(None, description="empty items after this many months (0: never)")


class RetentionConfig(_Section):
    raw_payload_days: Days = Field(description="empty raw events' payloads after this many days (0: never)")
    item_months: Days = Field(description="empty items' text and customer link after this many months (0: never)")
    interval_hours: Positive = Field(description="how often the scheduler applies the policy")
    sources: dict[Name, RetentionPolicy] = Field({}, description="per-source overrides")


class WebConfig(_Section):
    poll_seconds: Positive
    session_hours: Positive = Field(description="a signed-in session ends after this long without a request")
    secure_cookies: StrictBool = Field(description="send the session cookie only over https (also on when public_url is https)")
    login_limit_per_ip: RateLimit = Field(description="login attempts per client address")
    login_failures_per_user: RateLimit = Field(description="failed logins per username")
    ratelimit_storage_uri: Annotated[Name, AfterValidator(_limits_storage)] = Field(description="where login counters live: memory:// or redis://host:port")


def _outbound_entry(value: str) -> str:
    from hub.sdk.addresses import parse_entry

    try:
        parse_entry(value)
    except ValueError as exc:
        raise PydanticCustomError("host", "{reason}", {"reason": str(exc)}) from None
    return value


class HttpConfig(_Section):
    allowed_private_hosts: list[Annotated[str, StringConstraints(strict=True), AfterValidator(_outbound_entry)]] = Field(
        description="private, loopback or link-local hosts or CIDRs outbound HTTP may reach (e.g. [\"127.0.0.1\"])")


Confidence = Annotated[float, Field(strict=False, ge=0, le=1)]


class IdentityConfig(_Section):
    auto_link: Confidence = Field(description="from this confidence on an identity joins a customer by itself")
    suggest: Confidence = Field(description="from this confidence up to auto_link an agent is asked")
    phone_region: Annotated[str, StringConstraints(strict=True, min_length=2, max_length=2)] = Field(
        description="region of phone numbers written without a country code (ISO 3166, e.g. NL)")
    crm_lookup: StrictBool = Field(description="look contacts up in the follow-up sink by e-mail or phone")
    crm_merge: StrictBool = Field(description="merge the CRM contacts of merged customers too")
    free_mail_domains: list[str] = Field(description="shared mail providers: the same name there is no evidence")
    weights: dict[Literal["crm_lookup", "crm_handle", "handle_email_name", "handle_email", "name_email_domain",
                          "mention_hidden", "mention_text", "conflict"], Confidence]

    @model_validator(mode="after")
    def _suggest_below_auto_link(self) -> IdentityConfig:
        if self.suggest > self.auto_link:
            raise PydanticCustomError("order", "suggest ({suggest}) must not exceed auto_link ({auto_link})",
                                      {"suggest": self.suggest, "auto_link": self.auto_link})
        return self


# -- closing the loop (hub.engine.loop) --
Share = Annotated[float, Field(strict=False, ge=0, le=1)]
NonNegative = Annotated[float, Field(strict=False, ge=0)]


class ResurveyConfig(_Section):
    delay_hours: NonNegative = Field(description="hours after the follow-up is completed before the re-survey")
    notifier: Name | None = Field(None, description="notifier instance that sends invitations")
    source: Name | None = Field(None, description="survey source whose re-survey link is sent")


class ContactRulesConfig(_Section):
    survey_cooldown_days: NonNegative = Field(description="at most one invitation per customer in this many days")
    quiet_hours: Annotated[list[Hour], Field(min_length=2, max_length=2)] = Field(
        description="[from, until] local hours without invitations; [0, 0] for none")


class LoopConfig(_Section):
    company_name: Name = Field(description="signs every message to customers")
    control_share: Share = Field(description="share of eligible detractors held out of callbacks")
    control_salt: Name = Field(description="seed of the control group's hash")
    control_contact_hours: NonNegative = Field(description="a control case's stand-in for the time to a callback")
    repeat_window_days: Positive = Field(description="inbound contacts this soon after closure are repeats")
    answer_window_days: Positive = Field(description="an invitation is answered by an answer within this many days")
    invitation_source: Name | None = Field(None, description="default source of proactive invitations")


class CrmFactsConfig(_Section):
    interval_seconds: Positive = Field(description="how often sinks that expose customer facts are read")
    invite: list[Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z][a-z0-9_]{0,49}$")]] = Field(
        description="CRM moments that invite the customer to a survey, e.g. deal_won, deal_lost")
    invite_delay_hours: NonNegative = Field(description="hours after the moment before the invitation")
    source: Name | None = Field(None, description="survey source of these invitations (default: loop.invitation_source)")
    notifier: Name | None = Field(None, description="notifier of these invitations (default: resurvey.notifier)")


class RevenueConfig(_Section):
    currency: Name
    default_yearly_value: NonNegative = Field(description="yearly value of a customer the CRM has no revenue for")
    silent_per_complaining: NonNegative = Field(description="silent unhappy customers per complaining one")
    complainer_churn: Share = Field(description="churn of complaining customers whose complaint is handled")
    silent_churn: Share = Field(description="churn of silent unhappy customers")


class PromotersConfig(_Section):
    enabled: StrictBool
    review_url: Name | None = Field(None, description="the review or referral page promoters are sent to")
    notifier: Name | None = Field(None, description="default: resurvey.notifier")
    delay_hours: NonNegative


class WebcareConfig(_Section):
    presence_seconds: Positive = Field(description="how long after its last check-in a case page counts as open")
    presence_poll_seconds: Positive = Field(description="how often an open case page checks in")
    reply_links: dict[str, Annotated[str, StringConstraints(strict=True, pattern=r"^(https?://|\{url\})")]] = Field(
        default_factory=dict, description="per source plugin: reply URL with {external_id}, {url}, {thread_id}, {text}")


class InstanceTable(BaseModel):
    """``[sources.<name>]`` / ``[sinks.<name>]``: the plugin's own keys are checked
    against its declared settings when the registry builds the instance."""

    model_config = ConfigDict(extra="allow")

    plugin: str | None = Field(None, validate_default=True)

    @field_validator("plugin")
    @classmethod
    def _named(cls, value: str | None) -> str:
        if not isinstance(value, str) or not value:
            raise PydanticCustomError("plugin", "missing: name the plugin (entry-point name) of this instance")
        return value


def _instance_names(section: str):
    def check(tables: dict[str, InstanceTable]) -> dict[str, InstanceTable]:
        for name in tables:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise PydanticCustomError("name", "instance names may use letters, digits, '-' and '_' only",
                                          {"key": f"{section}.{name}"})
        return tables

    return check


class CeleryConfig(_Section):
    """``[celery]``: the distributed executor (``executor = "celery"``, docs/celery.md)."""

    visibility_timeout_seconds: Positive = Field(
        description="Redis broker: a task a worker took but did not acknowledge is given to another worker after "
                    "this long (longer than the longest job, or it runs twice)")
    queue_prefix: Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,40}$")] = Field(
        description="queues are <prefix>.pull, <prefix>.ingest, <prefix>.dispatch, <prefix>.default")
    queues: list[Literal["pull", "ingest", "dispatch", "default"]] = Field(
        min_length=1, description="the kinds of work `feedback-hub worker` consumes by default")


class MetricsConfig(_Section):
    """``[metrics]``: Prometheus metrics at ``/metrics`` (docs/deploying.md)."""

    enabled: StrictBool = Field(True, description="serve /metrics")
    token_file: Name | None = Field(None, description="a file holding a bearer token the scraper sends instead of "
                                    "an API token with the read scope")


class RateLimitsConfig(_Section):
    """``[rate_limits]``: where vendor rate budgets live so that every process shares them (issue 15)."""

    backend: Literal["auto", "redis", "database", "memory"] = Field(
        "auto", description="auto: Redis when redis_url (or a redis:// broker_url) is set, else the database on "
                            "PostgreSQL, else in process")
    redis_url: Name | None = Field(None, description="redis://host:6379/N for the shared budgets (a secret: env:NAME "
                                                     "or file:PATH); default: a redis:// broker_url")
    key_prefix: Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_:.-]{1,60}$")] = Field(
        "hub:rate", description="Redis keys are <prefix>:<instance>:<purpose>:sent / :blocked")


class CoreConfig(BaseModel):
    """The top level of the merged configuration."""

    # Unknown top-level *tables* are allowed: plugins (the default ones too,
    # e.g. [scoring], [enrich]) read their own sections through hub_configure,
    # and the core cannot know them.  An unknown top-level *value* is most
    # likely a typo of a core key (which then keeps its default), so it is
    # logged as a warning rather than refused: refusing would also break sites
    # whose plugins read a top-level value.
    model_config = ConfigDict(extra="allow")

    public_url: Name = Field(description="how users and vendors reach this hub (links in CRM tasks, webhooks)")
    max_body_bytes: Count
    executor: Literal["threads", "inline", "celery"]
    executor_workers: Annotated[int, Field(strict=True, ge=1, le=256)]
    webhook_processing: Literal["executor", "worker"] = Field(
        "executor", description="where webhook deliveries are processed: the executor (in the web process for "
        "\"threads\"), or only `feedback-hub worker` processes (the web node just stores and answers)")
    worker_yield: Annotated[float, Field(ge=0, le=20)] = Field(
        3.0, description="while webhook deliveries keep arriving, `feedback-hub worker` pauses this many times as "
        "long as each batch took, so acknowledgements come first on a machine both share (3: about three quarters "
        "to the deliveries); 0: no pauses, for a worker on a machine of its own")
    broker_url: Name | None = Field(None, description="Celery broker for executor = \"celery\": redis://... or amqp://... "
                                    "(a secret: env:NAME or file:PATH)")
    celery: CeleryConfig | None = None
    rate_limits: RateLimitsConfig | None = None
    database_url: Name | None = None
    sqlite_mmap_mb: Annotated[int, Field(strict=True, ge=0, le=65536)] = Field(
        1024, description="SQLite: MB of the database file that a connection serving pages and API reads maps into "
        "memory (0: none); imports and workers never map it")
    instance_path: Name | None = None
    secret_key: Name | None = None
    secret_key_file: Name | None = Field(None, description="a file holding the session signing key "
                                         "(HUB_SECRET_KEY_FILE; Docker/systemd secrets)")
    environment: Literal["development", "production"] = Field(
        "development", description="production: refuse to start without a secret key from the environment or a "
                                   "file (no generated key in the instance folder)")
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line "
                                                "(HUB_LOG_FORMAT=json)")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    demo: StrictInt | StrictBool | None = Field(None, description="set by run --demo (HUB_DEMO)")
    routing: RoutingConfig
    scheduler: SchedulerConfig
    dispatch: DispatchConfig
    planner: PlannerConfig
    teams: dict[Name, TeamConfig] = {}
    sla: SlaConfig
    web: WebConfig
    webcare: WebcareConfig
    retention: RetentionConfig
    identity: IdentityConfig
    http: HttpConfig
    scoring: dict[str, Any]  # loose: the scoring plugin owns its keys
    resurvey: ResurveyConfig
    contact_rules: ContactRulesConfig
    loop: LoopConfig
    revenue: RevenueConfig
    crm_facts: CrmFactsConfig
    promoters: PromotersConfig
    notifiers: Annotated[dict[str, InstanceTable], AfterValidator(_instance_names("notifiers"))] = {}
    sources: Annotated[dict[str, InstanceTable], AfterValidator(_instance_names("sources"))] = {}
    sinks: Annotated[dict[str, InstanceTable], AfterValidator(_instance_names("sinks"))] = {}

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise PydanticCustomError("url", "must start with http:// or https:// (got {value})", {"value": repr(value)})
        return value

    @model_validator(mode="after")
    def _sla_alert_notifier_exists(self) -> CoreConfig:
        name = self.sla.notifier
        table = self.notifiers.get(name) if name else None
        if name and (table is None or getattr(table, "enabled", True) is False):
            raise PydanticCustomError("notifier", "names notifier {quoted}, but there is no enabled [notifiers.{name}] table",
                                      {"quoted": repr(name), "name": name, "key": "sla.notifier"})
        return self

    @model_validator(mode="after")
    def _celery_has_a_broker(self) -> CoreConfig:
        if self.executor == "celery" and not self.broker_url:
            raise PydanticCustomError("broker", "executor \"celery\" needs a broker_url (HUB_BROKER_URL=redis://... "
                                      "or amqp://...)", {"key": "broker_url"})
        if self.broker_url and not self.broker_url.startswith(("redis://", "rediss://", "amqp://", "amqps://",
                                                               "env:", "file:")):
            raise PydanticCustomError("broker", "must be redis://, rediss://, amqp:// or amqps:// (or env:NAME, "
                                      "file:PATH)", {"key": "broker_url"})
        return self

    @model_validator(mode="after")
    def _route_has_a_sink(self) -> CoreConfig:
        target = self.routing.followups
        if target not in self.sinks:
            raise PydanticCustomError("route", "names sink {quoted}, but there is no [sinks.{target}] table",
                                      {"quoted": repr(target), "target": target, "key": "routing.followups"})
        return self


_MESSAGES = {
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "greater_than": "must be more than {gt}",
}


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The declared keys of the section that ``loc`` points into."""
    model: Any = CoreConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        near = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(error["loc"]), n=1)
        return "unknown key" + (f" (did you mean {near[0]}?)" if near else "")
    template = _MESSAGES.get(error["type"])
    if template is None:
        return readable(error)
    ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in (error.get("ctx") or {}).items()}
    return template.format(**ctx) + f" (got {json.dumps(error.get('input'), default=str)[:60]})"


def _validate_core(cfg: Config) -> None:
    for section in ("sources", "sinks"):
        cfg.setdefault(section, {})
    cfg.setdefault("routing", {})
    try:
        model = CoreConfig.model_validate(dict(cfg))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = (error.get("ctx") or {}).get("key") or dotted(error["loc"])
        raise cfg.error(key, _reason(error)) from None
    for key, value in (model.model_extra or {}).items():
        if not isinstance(value, Mapping):
            near = difflib.get_close_matches(key, CoreConfig.model_fields, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            log.warning("%s: %s: unknown top-level key, ignored%s", cfg.origin(key), key, hint)


def resolve_secret(value: Any, cfg: Config, key: str, environ: Mapping[str, str] | None = None) -> Any:
    """Turn ``env:NAME`` / ``file:PATH`` references into their value."""
    environ = os.environ if environ is None else environ
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        var = value[4:]
        if var not in environ or environ[var] == "":
            raise cfg.error(key, f"environment variable {var} is not set")
        return environ[var]
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise cfg.error(key, f"cannot read secrets file {path}: {exc.strerror}") from None
    return value
