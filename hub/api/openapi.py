"""OpenAPI 3.1 document of ``/api/v1``, generated from the declared contracts.

The schemas come from the pydantic models (:mod:`hub.sdk.contracts` for the
input, :mod:`hub.api.contracts` for the answers) through
``model_json_schema``; only the paths and query parameters are a table here.
OpenAPI 3.1 schemas are JSON Schema 2020-12, so tests validate real responses
against the document.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic.json_schema import models_json_schema

from hub.api import contracts as answers
from hub.sdk.contracts import FeedbackInput
from hub.sdk.schema import CASE_STATUSES, CATEGORIES, CHANNELS

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": answers.MAX_LIMIT, "default": answers.DEFAULT_LIMIT},
           "Page size"),
    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
]
ERRORS = {
    "400": _json("Error", "Invalid input; `error.field` names the field"),
    "401": _json("Error", "Missing, invalid, revoked or expired bearer token"),
    "403": _json("Error", "The token's scope does not cover this request (read < write < admin)"),
}

PATHS: dict[str, Any] = {
    "/health": {"get": {
        # Optional: without a token the answer leaves the instance names out.
        "security": [{}, {"bearer": []}], "summary": "Liveness and database check (instances with a token)",
        "responses": {"200": _json("Health", "Healthy"), "503": _json("Health", "Database unreachable")}}},
    "/feedback": {
        "post": {
            "summary": "Submit one feedback item in the common schema",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("FeedbackInput")}}},
            "responses": {"201": _json("Feedback", "Stored"),
                          "200": _json("Feedback", "Already stored (same source + external_id)"),
                          "413": _json("Error", "Body too large"), **ERRORS},
        },
        "get": {
            "summary": "List feedback, newest first",
            "parameters": [
                _query("channel", {"type": "string", "enum": list(CHANNELS)}, "Channel"),
                _query("category", {"type": "string", "enum": list(CATEGORIES)}, "NPS category"),
                _query("min_risk", {"type": "integer", "minimum": 0, "maximum": 100}, "Minimum risk"),
                _query("status", {"type": "string", "enum": list(CASE_STATUSES)}, "Status of the item's case"),
                _query("source", {"type": "string"}, "Source instance"),
                _query("q", {"type": "string"}, "Text contains"),
                _query("theme", {"type": "string", "maxLength": 100}, "Tagged with this theme (e.g. billing)"),
                *PAGING,
            ],
            "responses": {"200": _json("FeedbackPage", "A page"), **ERRORS},
        },
    },
    "/feedback/{id}": {"get": {
        "summary": "One feedback item with its risk reasons", "parameters": ID,
        "responses": {"200": _json("Feedback", "The item"), "404": _json("Error", "Unknown"), **ERRORS}}},
    "/cases": {"get": {
        "summary": "List cases, newest first",
        "parameters": [_query("status", {"type": "string", "enum": list(CASE_STATUSES)}, "Status"),
                       _query("customer_id", {"type": "integer"}, "Customer"), *PAGING],
        "responses": {"200": _json("CasePage", "A page"), **ERRORS}}},
    "/customers/{id}": {"get": {
        "summary": "A customer with identities and the timeline across channels", "parameters": ID,
        "responses": {"200": _json("Customer", "The customer"), "404": _json("Error", "Unknown"), **ERRORS}},
        "delete": {
            "summary": "GDPR erase: the customer, identities, items, payloads, cases and notes; the CRM contact too",
            "parameters": ID,
            "responses": {"200": _json("Erasure", "Erased"), "404": _json("Error", "Unknown"), **ERRORS}}},
}


# -- closing the loop (hub/api/reports_api.py) --
_SHARE = {"type": "number", "minimum": 0, "maximum": 1}
_PERIOD = [_query("since", {"type": "string", "format": "date-time"}, "Cases opened from (ISO-8601)"),
           _query("until", {"type": "string", "format": "date-time"}, "Cases opened before (ISO-8601)")]
PATHS.update({
    "/reports/outcomes": {"get": {
        "summary": "Outcome of detractor cases, treated (called back) vs control (held out), with 95 % intervals",
        "parameters": [*_PERIOD, _query("detail", {"type": "string", "enum": ["cases"]}, "Also the ledger per case"),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": answers.MAX_LIMIT,
                                        "default": answers.DEFAULT_LIMIT}, "Cases in the ledger (with detail)")],
        "responses": {"200": _json("OutcomeReport", "The comparison"), **ERRORS}}},
    "/reports/revenue-at-risk": {"get": {
        "summary": "Revenue at risk vs recovered; every model input can be overridden",
        "parameters": [
            _query("customers", {"type": "integer", "minimum": 0, "maximum": 1_000_000_000}, "Number of customers"),
            _query("yearly_value", {"type": "number", "minimum": 0, "maximum": 1_000_000_000}, "Yearly value per customer"),
            _query("unhappy_complaining", {"type": "integer", "minimum": 0, "maximum": 1_000_000_000}, "Unhappy customers who told us"),
            _query("unhappy_silent", {"type": "integer", "minimum": 0, "maximum": 1_000_000_000}, "Unhappy customers who stayed silent"),
            _query("complainer_churn", _SHARE, "Churn of complaining customers (complaint handled)"),
            _query("silent_churn", _SHARE, "Churn of silent unhappy customers"),
        ],
        "responses": {"200": _json("RevenueReport", "The model's answer"), **ERRORS}}},
    "/events": {"post": {
        "summary": "Record that a customer churned, renewed or filed a complaint",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("EventInput")}}},
        "responses": {"201": _json("EventStored", "Recorded"), "404": _json("Error", "Unknown customer"), **ERRORS}}},
    "/invitations": {"post": {
        "summary": "Invite customers to a survey (through a notifier, under the contact rules)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("InvitationRequest")}}},
        "responses": {"202": _json("InvitationBatch", "Queued (sent by the dispatcher)"), **ERRORS}}},
})

# The identity graph: review queue, customer search, merge and split.
_REASON_BODY = {"required": False, "content": {"application/json": {"schema": _ref("Decision")}}}
PATHS.update({
    "/identity/suggestions": {"get": {
        "summary": "Pending identity suggestions (are these one person?), newest first", "parameters": PAGING,
        "responses": {"200": _json("SuggestionPage", "A page"), **ERRORS}}},
    "/identity/suggestions/{id}/confirm": {"post": {
        "summary": "Confirm: merge the two customers (or give the customer the identity)", "parameters": ID,
        "requestBody": _REASON_BODY,
        "responses": {"200": _json("Customer", "The customer who holds the identity now"),
                      "404": _json("Error", "Unknown"), "409": _json("Error", "Already decided"), **ERRORS}}},
    "/identity/suggestions/{id}/reject": {"post": {
        "summary": "Reject: the pair is never suggested again", "parameters": ID, "requestBody": _REASON_BODY,
        "responses": {"200": _json("Suggestion", "The rejected suggestion"), "404": _json("Error", "Unknown"),
                      "409": _json("Error", "Already decided"), **ERRORS}}},
    "/customers": {"get": {
        "summary": "Find customers by name, e-mail or handle",
        "parameters": [_query("q", {"type": "string", "minLength": 1, "maxLength": 200},
                              "Part of a name, an e-mail address or a handle (with or without @)"), *PAGING],
        "responses": {"200": _json("CustomerPage", "A page"), **ERRORS}}},
    "/customers/{id}/merge": {"post": {
        "summary": "Merge another customer into this one (identities, items, cases, follow-ups)", "parameters": ID,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("MergeRequest")}}},
        "responses": {"200": _json("Customer", "The surviving customer"), "404": _json("Error", "Unknown"),
                      "409": _json("Error", "Already merged"), **ERRORS}}},
    "/customers/{id}/split": {"post": {
        "summary": "Split identities off (undoes the merge that brought exactly these)", "parameters": ID,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SplitRequest")}}},
        "responses": {"201": _json("Customer", "The customer who holds the identities now"),
                      "404": _json("Error", "Unknown"), **ERRORS}}},
})

# One case (with its callbacks and their CRM tasks), changes to it, and the planner's load.
PATHS.update({
    "/cases/{id}": {
        "get": {
            "summary": "A case with its SLA state, team, follow-up and CRM task state", "parameters": ID,
            "responses": {"200": _json("CaseDetail", "The case"), "404": _json("Error", "Unknown"), **ERRORS}},
        "patch": {
            "summary": "Change a case: status, owner, callback time, outcome, root cause, resolved, note "
                       "(the UI's rules, audit and CRM effects)",
            "parameters": ID,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CasePatch")}}},
            "responses": {"200": _json("CaseDetail", "The changed case"), "404": _json("Error", "Unknown"),
                          "409": _json("Error", "A status move the lifecycle does not allow, or a closed case"),
                          **ERRORS}},
    },
    "/planner/load": {"get": {
        "summary": "Planned callbacks, capacity, expected inbound and peaks per hour",
        "parameters": [
            {"name": "from", "in": "query", "required": True, "schema": {"type": "string", "format": "date-time"},
             "description": "First hour (ISO time with zone)"},
            {"name": "to", "in": "query", "required": True, "schema": {"type": "string", "format": "date-time"},
             "description": "End (exclusive); at most 31 days after from"},
            _query("team", {"type": "string", "maxLength": 50}, "One team ([teams.<name>]); default all teams"),
        ],
        "responses": {"200": _json("PlannerLoadAnswer", "One row per hour"), **ERRORS}}},
})


@functools.cache
def component_schemas() -> dict[str, Any]:
    """Every declared model's JSON Schema, keyed by model name (nested models included)."""
    models = [(FeedbackInput, "validation"), *((model, "serialization") for model in answers.ANSWERS)]
    _, schema = models_json_schema(models, ref_template=REF)
    return schema["$defs"]


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "feedback-hub API", "version": "1",
                 "description": "Closed-loop feedback hub: feedback in, scored cases and callbacks out."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": component_schemas(),
        },
    }
