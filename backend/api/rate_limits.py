"""Per-client limits on submits: 429 with Retry-After, counted in Redis so every
gunicorn worker and every API machine shares one count per client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, request
from flask_limiter import Limiter
from limits.storage import RedisStorage

from backend.api.auth import ANONYMOUS, current_client
from backend.jobs.errors import REDIS_UNAVAILABLE

SUBMIT_SCOPE = "submit"


class SharedRedisStorage(RedisStorage):
    """limits' Redis storage on the connections it is given (storage_options' connection_pool),
    whose reads for the X-RateLimit headers answer "nothing counted" when Redis does not.
    Flask-Limiter reads them after the view, in an after_request hook that no error handler
    covers: Redis lost between the count and the headers (a failover) must leave the
    response the view made, a 202 or its 503, not turn it into a 500. Counting still raises."""

    STORAGE_SCHEME = ["shared+redis"]

    def get(self, key: str) -> int:
        try:
            return super().get(key)
        except REDIS_UNAVAILABLE:
            return 0

    def get_expiry(self, key: str) -> float:
        try:
            return super().get_expiry(key)
        except REDIS_UNAVAILABLE:
            return time.time()


def rate_limit_key() -> str:
    """The token's client id when authenticated, else the client's address."""
    client = current_client()
    return client if client != ANONYMOUS else f"ip-{request.remote_addr or 'unknown'}"


def submit_limit(app: Flask, client: redis.Redis) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator for submit views: one shared limit across all of them, so a
    client cannot multiply its rate by spreading submits over several routes.
    Counted through `client`, the job records' (backend/jobs/redis_client.py)."""
    limit = app.config["SUBMIT_RATE_LIMIT"]
    if limit.strip().lower() in {"", "off"}:
        return lambda view: view
    limiter = Limiter(
        rate_limit_key,
        app=app,
        # Beside the job records, on their connections: the Redis every API machine already
        # shares, plain or through Sentinel, with their timeouts (a Redis outage is a fast 503
        # here too). The URI only picks the storage class above; its pool is the records'.
        storage_uri="shared+redis://",
        storage_options={"connection_pool": client.connection_pool},  # type: ignore[dict-item]  # limits' hint is too narrow
        strategy="fixed-window",
        headers_enabled=True,
        key_prefix="ratelimit",
    )
    return limiter.shared_limit(limit, scope=SUBMIT_SCOPE)
