"""Typed API errors and the one table that maps them to HTTP status codes.

Routes, middleware and the serving core raise these; nothing builds an error response by hand. Every error
body has the shape ``{"error": code, "detail": message, ...extra}`` where extra names the field, limit and
value when known; the table also says which answers carry ``Retry-After`` (come back later, not give up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of every error the API answers with a specific status (see STATUS)."""

    code = "error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BodyTooLarge(ApiError):
    code = "body_too_large"


class TooManyTexts(ApiError):
    code = "too_many_texts"


class TextTooLong(ApiError):
    code = "text_too_long"


class InvalidInput(ApiError):
    code = "invalid_input"


class MalformedJson(ApiError):
    code = "malformed_json"


class UnsupportedMediaType(ApiError):
    code = "unsupported_media_type"


class Overloaded(ApiError):
    code = "overloaded"


class NotReady(ApiError):
    code = "not_ready"


class ClientClosed(ApiError):
    """The client disconnected before its answer was ready (recorded as 499; nobody reads the body)."""

    code = "client_closed_request"


class InferenceFailed(ApiError):
    code = "inference_failed"


@dataclass(frozen=True)
class Answer:
    """How an error is answered: its HTTP status, and whether ``Retry-After`` says when to retry."""

    status: int
    retry_after: bool = False


# The one table: error type -> HTTP answer.
ANSWERS: dict[type[ApiError], Answer] = {
    BodyTooLarge: Answer(413),
    TooManyTexts: Answer(413),
    TextTooLong: Answer(413),
    InvalidInput: Answer(422),
    MalformedJson: Answer(422),
    UnsupportedMediaType: Answer(415),
    Overloaded: Answer(429, retry_after=True),
    NotReady: Answer(503, retry_after=True),
    ClientClosed: Answer(499),
    InferenceFailed: Answer(500),
}


def answer_of(exc: ApiError) -> Answer:
    for cls in type(exc).__mro__:
        if cls in ANSWERS:
            return ANSWERS[cls]
    return Answer(500)


def status_of(exc: ApiError) -> int:
    return answer_of(exc).status


def error_response(exc: ApiError, retry_after_seconds: int) -> Response:
    """The JSON answer for ``exc``; ``retry_after_seconds`` is sent where the table asks for Retry-After."""
    answer = answer_of(exc)
    body = {"error": exc.code, "detail": exc.detail, **exc.extra}
    headers = {"Retry-After": str(retry_after_seconds)} if answer.retry_after else None
    return Response(
        orjson.dumps(body), status_code=answer.status, media_type="application/json", headers=headers
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def from_validation_errors(errors: list[Any], *, skip_prefix: tuple[str, ...] = ()) -> ApiError:
    """A pydantic error list -> 422 naming the first offending field (the full list is attached)."""
    simplified = []
    for err in errors:
        loc = tuple(p for p in err.get("loc", ()) if p not in skip_prefix)
        # pydantic reports one branch per union member ("text.list[str]"/"text.str"); drop the branch names.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "list"))))
        simplified.append({"field": _loc(loc) or "body", "message": str(err.get("msg", "invalid"))})
    if any(e.get("type") == "json_invalid" for e in errors):
        first = errors[0]
        return MalformedJson(
            f"request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}",
            field="body",
        )
    first_err = simplified[0] if simplified else {"field": "body", "message": "invalid request"}
    return InvalidInput(
        f"{first_err['field']}: {first_err['message']}", field=first_err["field"], errors=simplified
    )


def install_error_handlers(app: FastAPI, retry_after_seconds: int) -> None:
    """Route every error through error_response, so nothing reaches the client as a bare 500 page."""

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc, retry_after_seconds)

    async def request_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = from_validation_errors(list(exc.errors()), skip_prefix=("body",))
        return error_response(errors, retry_after_seconds)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        body = {"error": "http_error", "detail": exc.detail}
        return Response(
            orjson.dumps(body),
            status_code=exc.status_code,
            media_type="application/json",
            headers=exc.headers,
        )

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("Unhandled error: %s", exc)
        return error_response(InferenceFailed(f"internal error: {type(exc).__name__}"), retry_after_seconds)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
