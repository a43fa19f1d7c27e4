"""OpenAPI 3.1 document of ``/api/v1`` (schemas are JSON Schema 2020-12, so
tests validate real responses against them with ``jsonschema``)."""

from __future__ import annotations

from typing import Any

from hub.sdk.contracts import FEEDBACK_INPUT_SCHEMA
from hub.sdk.schema import CASE_STATUSES, CATEGORIES, CHANNELS, FOLLOWUP_STATUSES

NULL_STR = {"type": ["string", "null"]}
NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
NULL_INT = {"type": ["integer", "null"]}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props)}


REASON = _obj({"signal": {"type": "string"}, "weight": {"type": "number"}, "detail": {"type": "string"}})
FEEDBACK = _obj({
    "id": {"type": "integer"},
    "source": {"type": "string"},
    "external_id": {"type": "string"},
    "channel": {"type": "string", "enum": list(CHANNELS)},
    "occurred_at": {"type": "string", "format": "date-time"},
    "received_at": {"type": "string", "format": "date-time"},
    "text": NULL_STR,
    "nps": {"type": ["integer", "null"], "minimum": 0, "maximum": 10},
    "language": NULL_STR,
    "sentiment": {"type": ["number", "null"]},
    "category": {"type": ["string", "null"], "enum": [*CATEGORIES, None]},
    "risk": {"type": "integer", "minimum": 0, "maximum": 100},
    "risk_reasons": {"type": "array", "items": {"$ref": "#/components/schemas/RiskReason"}},
    "reach": NULL_INT,
    "thread_id": NULL_STR,
    "url": NULL_STR,
    "customer_id": NULL_INT,
    "case_id": NULL_INT,
    "case_status": {"type": ["string", "null"], "enum": [*CASE_STATUSES, None]},
})
FOLLOWUP = _obj({
    "id": {"type": "integer"}, "sink": {"type": "string"}, "status": {"type": "string", "enum": list(FOLLOWUP_STATUSES)},
    "due_at": {"type": "string", "format": "date-time"}, "attempts": {"type": "integer"},
    "external_id": NULL_STR, "last_error": NULL_STR,
})
CASE = _obj({
    "id": {"type": "integer"}, "customer_id": NULL_INT, "status": {"type": "string", "enum": list(CASE_STATUSES)},
    "priority": {"type": "string"}, "risk": {"type": "integer"}, "owner": NULL_STR, "sla_due_at": NULL_TIME,
    "opened_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"},
    "contacted_at": NULL_TIME, "closed_at": NULL_TIME, "outcome": NULL_STR, "resurvey_nps": NULL_INT,
})
CASE_LISTED = {"allOf": [{"$ref": "#/components/schemas/Case"}, _obj({
    "items": {"type": "integer"},
    "followup": {"oneOf": [{"$ref": "#/components/schemas/Followup"}, {"type": "null"}]},
})]}
CUSTOMER = _obj({
    "id": {"type": "integer"}, "name": NULL_STR, "value": {"type": ["number", "null"]},
    "identities": {"type": "array", "items": _obj({"kind": {"type": "string"}, "value": {"type": "string"},
                                                    "confidence": {"type": "number"}, "evidence": NULL_STR})},
    "timeline": {"type": "array", "items": {"$ref": "#/components/schemas/Feedback"}},
    "cases": {"type": "array", "items": {"$ref": "#/components/schemas/Case"}},
})
ERROR = _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
                            ["code", "message"])})


def _list_of(ref: str) -> dict[str, Any]:
    return _obj({"items": {"type": "array", "items": {"$ref": ref}}, "next_cursor": NULL_STR})


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


ERRORS = {
    "400": _json(_ref("Error"), "Invalid input; `error.field` names the field"),
    "401": _json(_ref("Error"), "Missing or invalid bearer token"),
}


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PAGING = [
    _param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Page size"),
    _param("cursor", {"type": "string"}, "next_cursor of the previous page"),
]


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "feedback-hub API", "version": "1",
                 "description": "Closed-loop feedback hub: feedback in, scored cases and callbacks out."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {"security": [], "summary": "Liveness and database check",
                                "responses": {"200": _json(_obj({"status": {"type": "string"}}, ["status"]), "Healthy"),
                                              "503": _json(_obj({"status": {"type": "string"}}, ["status"]),
                                                           "Database unreachable")}}},
            "/feedback": {
                "post": {
                    "summary": "Submit one feedback item in the common schema",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("FeedbackInput")}}},
                    "responses": {"201": _json(_ref("Feedback"), "Stored"),
                                  "200": _json(_ref("Feedback"), "Already stored (same source + external_id)"),
                                  "413": _json(_ref("Error"), "Body too large"), **ERRORS},
                },
                "get": {
                    "summary": "List feedback, newest first",
                    "parameters": [
                        _param("channel", {"type": "string", "enum": list(CHANNELS)}, "Channel"),
                        _param("category", {"type": "string", "enum": list(CATEGORIES)}, "NPS category"),
                        _param("min_risk", {"type": "integer", "minimum": 0, "maximum": 100}, "Minimum risk"),
                        _param("status", {"type": "string", "enum": list(CASE_STATUSES)}, "Status of the item's case"),
                        _param("source", {"type": "string"}, "Source instance"),
                        _param("q", {"type": "string"}, "Text contains"),
                        *PAGING,
                    ],
                    "responses": {"200": _json(_list_of("#/components/schemas/Feedback"), "A page"), **ERRORS},
                },
            },
            "/feedback/{id}": {"get": {
                "summary": "One feedback item with its risk reasons",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json(_ref("Feedback"), "The item"), "404": _json(_ref("Error"), "Unknown"),
                              **ERRORS}}},
            "/cases": {"get": {
                "summary": "List cases, newest first",
                "parameters": [_param("status", {"type": "string", "enum": list(CASE_STATUSES)}, "Status"),
                               _param("customer_id", {"type": "integer"}, "Customer"), *PAGING],
                "responses": {"200": _json(_list_of("#/components/schemas/CaseListed"), "A page"), **ERRORS}}},
            "/customers/{id}": {"get": {
                "summary": "A customer with identities and the timeline across channels",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json(_ref("Customer"), "The customer"), "404": _json(_ref("Error"), "Unknown"),
                              **ERRORS}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "FeedbackInput": FEEDBACK_INPUT_SCHEMA,
                "Feedback": FEEDBACK,
                "RiskReason": REASON,
                "Case": CASE,
                "CaseListed": CASE_LISTED,
                "Followup": FOLLOWUP,
                "Customer": CUSTOMER,
                "Error": ERROR,
            },
        },
    }
