"""The plugin SDK: everything a plugin may import, and nothing else of the hub.

A source, sink or scoring plugin imports from ``hub.sdk`` only (a test enforces
it for the bundled plugins).  ``hub.sdk`` itself imports nothing from the
engine, storage, API, web UI or CLI, so it stays small and stable.

* the contract: :mod:`hub.sdk.hookspecs` (``hookimpl``), documented in
  ``docs/plugin_hooks.md``;
* the common schema as frozen dataclasses: :mod:`hub.sdk.schema`;
* base classes for connectors, sinks and emulators: :mod:`hub.sdk.connectors`;
* the HTTP client with retries, backoff and rate budgets: :mod:`hub.sdk.http`;
* paginators: :mod:`hub.sdk.pagination`; the injected clock: :mod:`hub.sdk.clock`;
* webhook helpers (HMAC, headers, timestamps, handshakes): :mod:`hub.sdk.webhooks`;
* the per-instance state store (``self.state``): :mod:`hub.sdk.state`;
* generated demo people and opinions for emulators: :mod:`hub.sdk.demo_data`.
* for a plugin's own tests, a pytest plugin installed with the hub (``make_hub``,
  ``fake_vendor``, ``fake_clock``, ``live_server``, ``sign_hmac``): :mod:`hub.sdk.testing`.

Two tutorials walk through a complete plugin with its tests:
``docs/writing_a_source_plugin.md`` and ``docs/writing_a_sink_plugin.md``.

May import: nothing else of the hub (the version in ``hub/__init__.py`` aside).  The
testing kit (:mod:`hub.sdk.testing`) alone reaches the engine, lazily inside its
functions, to start a real hub; ``tests/test_layout.py`` holds the rules.
"""

from hub.sdk import webhooks
from hub.sdk.clock import Clock, FakeClock
from hub.sdk.connectors import (
    CrmSink,
    Emulator,
    Instance,
    Setting,
    SourceConnector,
    Stream,
    TaskState,
    WebhookRejected,
    WebhookRequest,
    WebhookResult,
)
from hub.sdk.hookspecs import hookimpl
from hub.sdk.http import (
    FatalError,
    HttpClient,
    HttpError,
    PaginationLoopError,
    RateBudget,
    RateLimitedError,
    RetriableError,
    RollingWindowBudget,
    parse_retry_after,
)
from hub.sdk.pagination import (
    BodyTokenPaginator,
    LastRecordPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    Page,
    PageNumberPaginator,
    Paginator,
    path_get,
)
from hub.sdk.schema import (
    CASE_STATUSES,
    CATEGORIES,
    CHANNELS,
    FOLLOWUP_STATUSES,
    OPEN_CASE_STATUSES,
    CaseView,
    Completion,
    CustomerRef,
    CustomerView,
    Escalation,
    FeedbackIn,
    FeedbackView,
    FollowupView,
    IdentityKind,
    PushResult,
    RawIn,
    ScoringContext,
    Signal,
    nps_category,
)
from hub.sdk.state import MemoryStateBackend, StateBackend, StateStore
from hub.sdk.webhooks import (
    check_timestamp,
    hmac_b64,
    hmac_hex,
    hmac_matches,
    subscription_challenge,
    verify_hmac,
)

__all__ = [
    "CASE_STATUSES", "CATEGORIES", "CHANNELS", "FOLLOWUP_STATUSES", "OPEN_CASE_STATUSES",
    "BodyTokenPaginator", "CaseView", "Clock", "Completion", "CrmSink", "CustomerRef", "CustomerView", "Emulator",
    "Escalation", "FakeClock", "FatalError", "FeedbackIn", "FeedbackView", "FollowupView", "HttpClient", "HttpError",
    "IdentityKind", "Instance", "LastRecordPaginator", "PaginationLoopError", "Paginator", "PushResult", "RateBudget", "RawIn",
    "RetriableError", "RollingWindowBudget", "ScoringContext", "Setting", "Signal", "SourceConnector", "Stream",
    "TaskState",
    "WebhookRejected", "WebhookRequest", "WebhookResult", "hookimpl", "nps_category", "parse_retry_after",
]
# Pagination, webhook helpers (also as the module ``hub.sdk.webhooks``) and the per-instance state store.
__all__ += [
    "LinkHeaderPaginator", "MemoryStateBackend", "NextUrlPaginator", "OffsetPaginator", "Page", "PageNumberPaginator",
    "RateLimitedError", "StateBackend", "StateStore", "check_timestamp", "hmac_b64", "hmac_hex", "hmac_matches",
    "path_get", "subscription_challenge", "verify_hmac", "webhooks",
]
