"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, for every failure.

Route code raises `APIError(status, message, param=..., code=...)`; `install` makes FastAPI answer it,
its own validation errors (malformed JSON, wrong types, out-of-range values: 400 naming the field),
unknown paths and methods, and anything unexpected (500, the message without internals) in that shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("charrnn.serve")

# status -> OpenAI's error type
TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
         500: "server_error", 503: "server_error", 504: "timeout_error"}


class APIError(Exception):
    """An answer that is an error: status, one-line message, the request field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def body(self) -> dict:
        return error_body(self.status, self.message, self.param, self.code)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error the app can meet in the OpenAI shape."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return error_response(e.status, e.message, e.param, e.code, e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        return error_response(400, *validation_message(e.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(e.status_code)
        return error_response(e.status_code, str(e.detail), None, code, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(e).__name__} (the server log has the traceback)",
                              None, "internal_error")


def validation_message(errors) -> tuple[str, str | None, str]:
    """Pydantic's first complaint as (one line, the field it concerns, a code)."""
    first = errors[0] if errors else {"msg": "invalid request", "loc": (), "type": "invalid"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    kind = first.get("type", "invalid")
    if kind == "json_invalid":
        return f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}", None, "invalid_json"
    if kind == "missing":
        return f"{'.'.join(loc)} is required", ".".join(loc) or None, "missing_field"
    if kind == "extra_forbidden":
        return f"unknown field {'.'.join(loc)!r}", ".".join(loc), "unknown_field"
    if not loc:
        return f"the body must be a JSON object: {first['msg']}", None, "invalid_body"
    # a union reports one complaint per member (str / list[str]): the field is the first element
    param = loc[0] if loc[0] in ("prompt", "stop") else ".".join(loc)
    return f"{param}: {first['msg']} (got {first.get('input')!r})"[:400], param, "invalid_value"
