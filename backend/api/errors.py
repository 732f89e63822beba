"""One error shape for every failure: {"error": {"code", "message", "details"?}}.

No HTML error page and no traceback ever reaches a client; anything a client
can cause is a 4xx, and a Redis outage is a fast 503 with Retry-After: code
`service_unavailable` when Redis does not answer, `redis_full` when it answers but
refuses writes at its memory limit (reads still work then).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from backend.jobs.errors import REDIS_FULL_MESSAGE, REDIS_UNAVAILABLE, ServiceError, is_redis_full

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying after Redis was unavailable.
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    response = jsonify(error=error)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _code_for(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def handle_service_error(exc: ServiceError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def handle_http_exception(exc: HTTPException) -> Response:
    headers = dict(exc.get_headers()) if exc.code == 405 else {}
    headers.pop("Content-Type", None)
    return error_response(exc.code or 500, _code_for(exc), exc.description or exc.name, headers=headers)


def handle_redis_error(exc: Exception) -> Response:
    """Redis did not answer, or refused a write at its memory limit: a 503 either way.
    Any other error Redis answered (a bug of ours, such as WRONGTYPE) stays a 500."""
    retry_after = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}
    if is_redis_full(exc):
        log.warning("Redis full: %s", exc)
        return error_response(503, "redis_full", f"the task queue is full ({REDIS_FULL_MESSAGE}); retry later",
                              headers=retry_after)
    if isinstance(exc, REDIS_UNAVAILABLE):
        log.warning("Redis unavailable: %s", exc)
        return error_response(503, "service_unavailable", "the task queue is unavailable; retry later",
                              headers=retry_after)
    return handle_unexpected(exc)


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal server error")


def init_app(app: Flask) -> None:
    app.register_error_handler(ServiceError, handle_service_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    # ResponseError: Redis' refusal at maxmemory comes as one of its kinds (is_redis_full).
    for redis_error in (*REDIS_UNAVAILABLE, redis.exceptions.ResponseError):
        app.register_error_handler(redis_error, handle_redis_error)
    app.register_error_handler(Exception, handle_unexpected)
