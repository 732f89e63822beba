"""Bearer-token authentication for the API (off unless API_TOKENS is set).

Every route of the API blueprint asks for `Authorization: Bearer <token>`
except the health checks, which orchestrators call without credentials. The
OpenAPI document and /docs stay open: they describe the API, they do not use it.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app, g, request

from backend.errors import APIError

OPEN_ENDPOINTS = frozenset({"api.healthz", "api.readyz"})
ANONYMOUS = "anonymous"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def client_id_for(token: str) -> str:
    """A stable, non-secret name for a token: rate limits and idempotency keys are per client."""
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def authenticate() -> None:
    """before_request of the API: set g.client_id, or answer 401."""
    tokens = current_app.config["API_TOKENS"]
    if not tokens or request.endpoint in OPEN_ENDPOINTS:
        g.client_id = ANONYMOUS
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise APIError(
            401, "unauthorized", "send an API token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="jobs"'},
        )
    # Constant time: compare fixed-length digests with every token, without stopping at a match.
    presented_digest = _digest(presented)
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented_digest, _digest(token))
    if not matched:
        raise APIError(
            401, "invalid_token", "the API token is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="jobs", error="invalid_token"'},
        )
    g.client_id = client_id_for(presented)


def current_client() -> str:
    return g.get("client_id", ANONYMOUS)
