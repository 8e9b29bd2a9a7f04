"""Errors on the wire: one table from error code to HTTP status, one envelope.

Every answer that is not a success is ``{"error": {"code", "message",
"details"}}``, whether it comes from a ``vifplug.exceptions`` class, from
FastAPI's request validation, from the router (unknown path or method) or
from the body-size guard.  The status is looked up by ``code`` in ``STATUS``
and nowhere else, so changing what a failure means to a client is a one-line
change here, and a test checks that every exception class has its row.

Caller mistakes are 4xx; a 5xx means the host (OVSDB, the kernel, the state
database) did not do what was asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vifplug import exceptions
from vifplug.api import models
from vifplug.records import JsonObject

LOG = logging.getLogger(__name__)

# Codes the API layer itself produces (no exception class behind them).
MALFORMED_JSON = "malformed_json"
MALFORMED_HTTP = "malformed_http"
REQUEST_TIMEOUT = "request_timeout"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
REQUEST_TOO_LARGE = "request_too_large"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"

#: THE table: error code -> HTTP status.
STATUS: Mapping[str, int] = {
    # --- the caller got it wrong ------------------------------------------------
    exceptions.InvalidRequest.code: 400,
    exceptions.InvalidObject.code: 400,
    exceptions.UnwritableValue.code: 400,
    exceptions.UnsupportedVersion.code: 400,
    exceptions.NoMatchingPlugin.code: 400,
    exceptions.UnsupportedVIFType.code: 400,
    exceptions.UnsupportedPortProfile.code: 400,
    exceptions.MissingPortProfile.code: 400,
    exceptions.BridgeNotAllowed.code: 400,
    exceptions.InvalidDeviceName.code: 400,
    exceptions.NetworkNotFound.code: 400,
    exceptions.PhysicalDeviceNotFound.code: 400,
    exceptions.PurgeNotConfirmed.code: 400,
    exceptions.TeamingMismatch.code: 400,
    MALFORMED_JSON: 400,
    MALFORMED_HTTP: 400,
    exceptions.Unauthorized.code: 401,
    exceptions.VIFNotFound.code: 404,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    exceptions.VersionNotAvailable.code: 406,
    REQUEST_TIMEOUT: 408,
    exceptions.VIFConflict.code: 409,
    exceptions.DeviceInUse.code: 409,
    exceptions.PoolExhausted.code: 409,
    exceptions.PoolDeviceTaken.code: 409,
    exceptions.VIFLifecycleError.code: 409,
    exceptions.TeamingPeerNotPlugged.code: 409,
    exceptions.TeamingPeerTaken.code: 409,
    exceptions.TeamingMemberPlugged.code: 409,
    REQUEST_TOO_LARGE: 413,
    UNSUPPORTED_MEDIA_TYPE: 415,
    # --- the host did not do what was asked -------------------------------------
    exceptions.VifplugError.code: 500,  # internal_error
    exceptions.NetdevError.code: 500,
    exceptions.StateWriteFailed.code: 500,
    exceptions.OvsdbTransactionFailed.code: 502,
    exceptions.InterfaceError.code: 502,
    exceptions.InterfaceGone.code: 409,
    exceptions.IfaceIdTaken.code: 409,
    exceptions.ReloadFailed.code: 400,
    exceptions.ReloadUnavailable.code: 503,
    exceptions.OvsdbUnavailable.code: 503,
    exceptions.NotReady.code: 503,
    exceptions.ShuttingDown.code: 503,
    exceptions.StateUnavailable.code: 503,
    exceptions.StateSchemaTooNew.code: 503,
    exceptions.ClonedSystemId.code: 503,
    exceptions.PlugTimeout.code: 504,
    exceptions.OvsdbTimeout.code: 504,
}

INTERNAL_ERROR = exceptions.VifplugError.code


def printable(text: str) -> str:
    """``text`` with control characters (newlines, U+2028, ...) and
    backslashes escaped, so that a client-chosen path cannot forge a log line."""
    if text.isprintable() and "\\" not in text:
        return text  # every path a client means (one scan, not a generator per character)
    return "".join(
        c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def documented(description: str) -> JsonObject:
    """An error answer as a route's ``responses=`` describes it in OpenAPI."""
    return {"model": models.ErrorEnvelope, "description": description}


#: The server-side failures any route that reaches the service may answer.
SERVER_ERRORS: dict[int | str, JsonObject] = {
    500: documented(
        "the host failed to do it (internal_error, netdev_error, state_write_failed); "
        "the error code and details say what"
    ),
    503: documented(
        "the daemon cannot serve now: not ready, OVSDB unavailable, shutting down, "
        "or the state database unusable; retry later"
    ),
}

#: The failures of routes that write to OVSDB.
OVSDB_ERRORS: dict[int | str, JsonObject] = {
    502: documented(
        "OVSDB or ovs-vswitchd refused or failed the change (ovsdb_transaction_failed, "
        "interface_error)"
    ),
    504: documented("OVSDB did not answer in time (ovsdb_timeout)"),
}

#: The answer of every route on the TCP listener without the right token.
UNAUTHORIZED = "TCP listener only: the Authorization header does not carry the bearer token"

#: The error answers of every route that takes a query or a body (FastAPI's
#: own 422 is rewritten to the same 400 by ``app``'s OpenAPI post-processing).
REQUEST_ERRORS: dict[int | str, JsonObject] = {
    status: documented(description)
    for status, description in (
        (400, "the request is invalid (code says how)"),
        (413, "the body is larger than [api] max_body_bytes"),
        (415, "the body is not application/json"),
    )
}


def status_for(code: str) -> int:
    """The HTTP status of an error code; 500 for a code the table lacks."""
    return STATUS.get(code, 500)


def envelope(code: str, message: str, details: Mapping[str, object] | None = None) -> JsonObject:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def error_response(
    code: str,
    message: str,
    details: Mapping[str, object] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        envelope(code, message, details),
        status_code=status_for(code),
        headers=dict(headers) if headers else None,
    )


def from_exception(exc: exceptions.VifplugError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, exceptions.Unauthorized) else None
    return error_response(exc.code, exc.message, exc.details(), headers=headers)


def _json_safe(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def _validation_problems(exc: RequestValidationError) -> list[JsonObject]:
    """FastAPI's error list, without the offending input echoed back (it may be
    a megabyte of JSON) and with JSON-safe locations."""
    problems = []
    for err in exc.errors():
        problems.append(
            {
                "loc": [_json_safe(p) for p in err.get("loc", ())],
                "type": str(err.get("type", "")),
                "msg": str(err.get("msg", "")),
            }
        )
    return problems


def _validation_error(exc: RequestValidationError) -> tuple[str, str, JsonObject]:
    problems = _validation_problems(exc)
    if any(p["type"] == "json_invalid" for p in problems):
        return MALFORMED_JSON, "The request body is not valid JSON.", {"problems": problems}
    first = problems[0] if problems else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"]) or "request"
    message = f"The request is invalid: {where}: {first['msg']}."
    return exceptions.InvalidRequest.code, message, {"problems": problems}


def _http_error(exc: StarletteHTTPException) -> tuple[str, str]:
    if exc.status_code == 404:
        code, message = NOT_FOUND, "There is no such resource in API v1."
    elif exc.status_code == 405:
        code, message = METHOD_NOT_ALLOWED, "This method is not allowed on this resource."
    elif exc.status_code == 413:
        code, message = REQUEST_TOO_LARGE, "The request body is too large."
    elif exc.status_code == 415:
        code, message = UNSUPPORTED_MEDIA_TYPE, "The request body must be application/json."
    elif exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer for a body json cannot decode (bad UTF-8, nesting
        # deeper than the parser's recursion limit).
        code, message = MALFORMED_JSON, "The request body is not valid JSON."
    elif exc.status_code == 401:
        code, message = exceptions.Unauthorized.code, exceptions.Unauthorized.template
    elif 400 <= exc.status_code < 500:
        code = exceptions.InvalidRequest.code
        message = f"The request is invalid: {exc.detail}"
    else:
        code, message = INTERNAL_ERROR, str(exc.detail)
    return code, message


def install(app: FastAPI, *, on_error: Callable[[str], None] | None = None) -> None:
    """Route every failure through the envelope.

    ``on_error(code)`` is called once per error answered (metrics).
    """

    def count(code: str) -> None:
        if on_error is not None:
            on_error(code)

    async def vifplug_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, exceptions.VifplugError)
        count(exc.code)
        if status_for(exc.code) >= 500:
            LOG.error(
                "%s %s failed: %s",
                request.method,
                printable(request.url.path),
                printable(exc.message),
            )
        return from_exception(exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        code, message, details = _validation_error(exc)
        count(code)
        return error_response(code, message, details)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code, message = _http_error(exc)
        count(code)
        response = error_response(code, message, headers=exc.headers)
        response.status_code = exc.status_code  # the router's status stands (e.g. 405)
        return response

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        count(INTERNAL_ERROR)
        LOG.exception("%s %s failed unexpectedly", request.method, printable(request.url.path))
        return error_response(INTERNAL_ERROR, f"An internal error occurred: {type(exc).__name__}.")

    app.add_exception_handler(exceptions.VifplugError, vifplug_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
