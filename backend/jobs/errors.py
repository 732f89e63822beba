"""Errors a caller can cause or must wait out, whichever door it came through.

A ServiceError carries what a client needs: an HTTP status, a stable code and a
message. The job service raises it (404 unknown job, 422 bad input, 409 ended, 503
no waiting slot), and so do the API's own checks (401, 415). The API renders it as
its JSON error (backend/api/errors.py), the CLI as a one-line message.
REDIS_UNAVAILABLE lists the exceptions that mean "Redis (as broker, result backend
or store) did not answer": a 503 with Retry-After for the API, a "retry later" for
the CLI, never a 500.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.exceptions import OperationalError

REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # kombu's wrapper of a broker connection error, raised by apply_async and broadcasts.
    OperationalError,
)


class ServiceError(Exception):
    """A request refused, or one that cannot be served now; never a bug of ours."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
