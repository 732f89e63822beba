"""Per-client limits on submits: 429 with Retry-After, counted in Redis so every
gunicorn worker and every API machine shares one count per client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter

from backend.api.auth import ANONYMOUS, current_client

SUBMIT_SCOPE = "submit"


def rate_limit_key() -> str:
    """The token's client id when authenticated, else the client's address."""
    client = current_client()
    return client if client != ANONYMOUS else f"ip-{request.remote_addr or 'unknown'}"


def submit_limit(app: Flask) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator for submit views: one shared limit across all of them, so a
    client cannot multiply its rate by spreading submits over several routes."""
    limit = app.config["SUBMIT_RATE_LIMIT"]
    if limit.strip().lower() in {"", "off"}:
        return lambda view: view
    limiter = Limiter(
        rate_limit_key,
        app=app,
        # Beside the job records: the Redis every API machine already shares.
        storage_uri=app.config["RESULT_BACKEND"],
        # A Redis outage must stay a fast 503 here too (the error reaches backend/api/errors.py).
        storage_options={
            "socket_timeout": app.config["REDIS_SOCKET_TIMEOUT"],
            "socket_connect_timeout": app.config["REDIS_CONNECT_TIMEOUT"],
        },
        strategy="fixed-window",
        headers_enabled=True,
        key_prefix="ratelimit",
    )
    return limiter.shared_limit(limit, scope=SUBMIT_SCOPE)
