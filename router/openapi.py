"""The router's OpenAPI document (``GET /openapi.json``): every route, its body and its replies.

The invocation routes are answered by an ASGI handler in front of FastAPI
(:class:`router.app.Invocations`), so FastAPI cannot describe them; :func:`document` writes
their entries by hand, beside the FastAPI routes' own, with the request bodies of the MLflow
scoring protocol (JSON in one of four formats, or CSV), the headers the router reads, and every
error reply with its schema (``{"error_code", "message"}``). A fuzzer (schemathesis) reads this
document; every status it may see is listed here.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_ERROR: Final = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int, here: dict[int, str] | None = None) -> dict[str, Any]:
    """Error replies of ``statuses``; ``here`` says what a status means on this route."""
    why = {
        400: "the body or a header is malformed (not JSON/CSV, too deep, a non-finite number, "
        "a bad shape); the message names the field",
        401: "x-model-version without a bearer token",
        403: "the token may not pin a version",
        404: "no traffic plan for the model, or a version the plan does not serve",
        405: "only POST",
        413: "the body is larger than ROLLOUT_MAX_BODY_BYTES",
        415: "neither application/json nor text/csv (UTF-8)",
        422: "the input does not match the version's signature",
        500: "the version failed (the message has an incident id; details are in the log)",
        503: "not ready, no plan, or the store is unavailable",
        504: "the version did not answer in time",
    }
    why.update(here or {})
    return {
        str(status): {
            "description": why[status],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for status in statuses
    }


_SCALAR: Final = {"type": ["string", "number", "integer", "boolean", "null"]}
_ROW_OBJECT: Final = {"type": "object", "additionalProperties": True}
_SCORING_JSON: Final = {
    "type": "object",
    "description": "Exactly one of dataframe_split, dataframe_records, instances, inputs; "
    "optionally params. At most 64 levels deep; every number finite.",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "index": {"type": "array", "items": _SCALAR},
                "data": {"type": "array", "items": {"type": "array", "items": {}}},
            },
            "required": ["data"],
            "additionalProperties": False,
        },
        "dataframe_records": {"type": "array", "items": _ROW_OBJECT},
        "instances": {"type": "array", "items": {}},
        "inputs": {},
        "params": {"type": "object", "additionalProperties": True},
    },
    "minProperties": 1,
}
_HEADERS: Final = [
    {
        "name": "x-request-id",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 128},
        "description": "the request's id (else the router issues one)",
    },
    {
        "name": "x-rollout-key",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "sticky routing key",
    },
    {
        "name": "x-model-version",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "pin a version the plan serves (needs Authorization: Bearer TOKEN)",
    },
]


def _invocation(summary: str, with_model: bool) -> dict[str, Any]:
    parameters = list(_HEADERS)
    if with_model:
        parameters.insert(
            0, {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
        )
    return {
        "post": {
            "summary": summary,
            "operationId": "invoke_model" if with_model else "invoke_default",
            "parameters": parameters,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _SCORING_JSON},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            "responses": {
                "200": {
                    "description": "the predictions, as mlflow models serve writes them",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"predictions": {}},
                                "required": ["predictions"],
                            }
                        }
                    },
                },
                **_errors(400, 401, 403, 404, 413, 415, 422, 500, 503, 504),
            },
        }
    }


_LABEL_VALUE: Final = {"type": ["string", "number", "integer", "boolean"]}
_FEEDBACK_ITEM: Final = {
    "type": "object",
    "properties": {
        "request_id": {
            "type": "string",
            "minLength": 1,
            "description": "the x-request-id the router answered the request with",
        },
        "label": {
            "description": "a number, string or boolean, or a list of them (one per row); "
            "at most ROLLOUT_LABEL_MAX_BYTES of JSON",
            "oneOf": [_LABEL_VALUE, {"type": "array", "items": _LABEL_VALUE}],
        },
    },
    "required": ["request_id", "label"],
}
_FEEDBACK_ERRORS: Final = {
    400: "malformed: not JSON, too deep, a non-finite number, a label that is no value, one "
    "request id twice; the message names the item",
    401: "no label writer's bearer token, or one whose sha256 is not in ROLLOUT_LABEL_TOKEN_SHA256",
    403: "labels_not_configured: this router accepts labels from no one",
    404: "unknown_request_id: no router with this key issued the id",
    409: "label_conflict: another writer labelled the request first",
    410: "label_expired: the request is older than ROLLOUT_LABEL_MAX_AGE_S",
    413: "over ROLLOUT_LABEL_MAX_BODY_BYTES, ROLLOUT_LABEL_MAX_ITEMS or ROLLOUT_LABEL_MAX_BYTES",
    503: "store_unavailable (an incident id; the cause is in the router's log only)",
}


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (a router app), built once and cached on it."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    paths: dict[str, Any] = schema.setdefault("paths", {})
    paths["/v1/models/{model}/invocations"] = _invocation("score with the model's plan", True)
    paths["/invocations"] = _invocation("score with the default model's plan", False)
    feedback = paths.get("/v1/feedback", {}).get("post")
    if feedback is not None:
        feedback["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [_FEEDBACK_ITEM, {"type": "array", "items": _FEEDBACK_ITEM}]
                    }
                }
            },
        }
        feedback["responses"] = {
            "202": {
                "description": "labels stored",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"accepted": {"type": "integer"}},
                            "required": ["accepted"],
                        }
                    }
                },
            },
            **_errors(400, 401, 403, 404, 409, 410, 413, 415, 503, here=_FEEDBACK_ERRORS),
        }
        feedback["security"] = [{"labelWriter": []}]
    probes = {
        "/readyz": ("200", "503"),
        "/ping": ("200", "404"),
        "/health": ("200", "404"),
    }
    for path, statuses in probes.items():
        get = paths.get(path, {}).get("get")
        if get is not None:
            for status in statuses:
                get["responses"].setdefault(status, {"description": "not ready"})
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["labelWriter"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a label writer's token (its sha256 is in ROLLOUT_LABEL_TOKEN_SHA256)",
    }
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object",
        "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["error_code", "message"],
    }
    app.openapi_schema = schema
    return schema
