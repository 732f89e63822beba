"""Bearer-token authentication and role checks for the API.

Off unless API_TOKENS or API_CLIENTS_FILE is set. Then every route of the API blueprint
asks for `Authorization: Bearer <token>` except the health checks, which orchestrators
call without credentials. The OpenAPI document and /docs stay open: they describe the
API, they do not use it.

A token names a caller (backend/jobs/callers.py): a named client of the clients file
(backend/ops/clients.py) with its role, or for a token of API_TOKENS an admin named
`token-<start of its hash>`. Each route declares the role it needs (backend/api/routes.py);
authenticate() checks it before the view runs, so a view never checks a role itself.
Which jobs a caller sees is the service layer's business: it takes the caller.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from flask import Flask, Request, Response, current_app, g, request
from flask.sessions import NullSession, SessionInterface, SessionMixin

from backend.jobs.callers import Caller, Role
from backend.jobs.errors import ServiceError
from backend.ops.clients import ClientsFile

ANONYMOUS = "anonymous"
EXTENSION = "auth"
# With authentication off (development), every caller may do everything: there is no one to tell apart.
OPEN_API_CALLER = Caller(ANONYMOUS, Role.ADMIN)
# With authentication on, a caller of an open route (the health checks) without a valid token.
UNAUTHENTICATED = Caller(ANONYMOUS, Role.READ)


class NoSessions(SessionInterface):
    """No cookie session: clients authenticate with a token on every request.

    Flask's cookie session builds a signing serializer on every request even when
    nothing reads it: measured 55 µs CPU per request (226 -> 170 µs for /healthz)."""

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        pass


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def client_id_for(token: str) -> str:
    """A stable, non-secret name for a token of API_TOKENS: the owner of its jobs, the key
    of its rate limit and idempotency keys."""
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Credentials:
    """What a token may be: one of API_TOKENS (an admin), or a client's in the clients file."""

    api_tokens: tuple[str, ...]
    clients: ClientsFile | None

    @property
    def required(self) -> bool:
        # A clients file with no client yet still closes the API: revoking the last client
        # must not open it to everyone.
        return bool(self.api_tokens) or self.clients is not None

    def caller(self, presented: str) -> Caller | None:
        """The caller `presented` authenticates, or None for a token no one holds."""
        if _is_api_token(presented, self.api_tokens):
            return Caller(client_id_for(presented), Role.ADMIN)
        # A dict lookup by the token's SHA-256: timing tells an attacker about the hash of
        # the token it sent, which it knows already, not about any stored token.
        client = self.clients.find(presented) if self.clients is not None else None
        return Caller(client.name, client.role, client.max_running) if client is not None else None


def init_app(app: Flask) -> None:
    path = app.config["API_CLIENTS_FILE"]
    app.extensions[EXTENSION] = Credentials(app.config["API_TOKENS"], ClientsFile(Path(path)) if path else None)


def credentials(app: Flask | None = None) -> Credentials:
    return cast(Credentials, (app or current_app).extensions[EXTENSION])


def _presented_token() -> str | None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented.strip() else None


def _is_api_token(presented: str, tokens: tuple[str, ...]) -> bool:
    # Constant time: compare fixed-length digests with every token, without stopping at a match.
    presented_digest = _digest(presented)
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented_digest, _digest(token))
    return matched


def authenticate(open_endpoints: frozenset[str] = frozenset(), roles: Mapping[str, Role] | None = None) -> None:
    """Set the caller (current_caller), or answer 401; then 403 when the endpoint needs a
    higher role than the caller's (`roles`, by endpoint: Role.READ for any other).

    `open_endpoints` (the health checks) never answer 401 or 403; a valid token there
    only unlocks details.
    """
    creds = credentials()
    if not creds.required:
        g.caller = OPEN_API_CALLER
        return
    g.caller = UNAUTHENTICATED
    presented = _presented_token()
    caller = creds.caller(presented) if presented is not None else None
    if request.endpoint in open_endpoints:
        g.caller = caller or UNAUTHENTICATED
        return
    if presented is None:
        raise ServiceError(
            401, "unauthorized", "send an API token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="jobs"'},
        )
    if caller is None:
        raise ServiceError(
            401, "invalid_token", "the API token is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="jobs", error="invalid_token"'},
        )
    g.caller = caller
    require((roles or {}).get(request.endpoint or "", Role.READ))


def require(role: Role) -> None:
    """403 unless the caller has `role` or a higher one."""
    caller = current_caller()
    if caller.role < role:
        raise ServiceError(
            403, "forbidden",
            f"this route needs the {role.label} role; client {caller.name!r} has the {caller.role.label} role",
            details={"required_role": role.label, "role": caller.role.label},
        )


def authenticate_admin() -> None:
    """/metrics' check: a valid token of an admin."""
    authenticate()
    require(Role.ADMIN)


def may_see_details() -> bool:
    """Worker names and connection errors are for operators: with authentication on,
    only admins see them in the health checks."""
    return current_caller().role is Role.ADMIN


def current_caller() -> Caller:
    caller: Caller = g.get("caller", UNAUTHENTICATED)
    return caller


def current_client() -> str:
    """The caller's name: the owner of the jobs it submits, the key of its rate limit."""
    return current_caller().name
