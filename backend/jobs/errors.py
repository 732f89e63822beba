"""Errors a caller can cause or must wait out, whichever door it came through.

A ServiceError carries what a client needs: an HTTP status, a stable code and a
message. The job service raises it (404 unknown job, 422 bad input, 409 ended, 503
no waiting slot), and so do the API's own checks (401, 415). The API renders it as
its JSON error (backend/api/errors.py), the CLI as a one-line message.
REDIS_UNAVAILABLE lists the exceptions that mean "Redis (as broker, result backend
or store) did not answer", and is_redis_full() tells the errors of a Redis that
answered but refused a write because it is at its memory limit: for the API a 503
with Retry-After either way (codes `service_unavailable` and `redis_full`), never a
500; for a worker, a pause (backend/taskqueue/results.py).
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
    # During a Sentinel failover, a master demoted to replica refuses writes (READONLY).
    redis.exceptions.ReadOnlyError,
)

# Redis' own reply to a write it refuses at maxmemory (noeviction, as a broker must run).
# Every form of the refusal carries it: redis-py's OutOfMemoryError for a command, and
# the ResponseError it raises when EXEC was refused ("Transaction discarded because of:
# OOM ...") or, on Redis 6, when a script's write was ("Error running script ... -OOM ...").
REDIS_FULL_REPLY = "command not allowed when used memory > 'maxmemory'"
# What /readyz says, and what a 503 `redis_full` tells a client.
REDIS_FULL_MESSAGE = "used memory at maxmemory: Redis refuses writes until memory is freed"


def is_redis_full(exc: BaseException) -> bool:
    """True when `exc`, or an error it wraps, is Redis refusing a write at maxmemory.

    Wrapped (`raise ... from`): kombu raises OperationalError from the refusal of a
    publish, and the rate limiter's storage may raise its own error from a refused count.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, redis.exceptions.OutOfMemoryError):
            return True
        if isinstance(current, redis.exceptions.ResponseError) and REDIS_FULL_REPLY in str(current):
            return True
        current = current.__cause__
    return False


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
