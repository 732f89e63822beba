"""Request ids: every request has one, echoed in `X-Request-ID`, carried to the worker.

A client's (or proxy's) id is kept when it is short and plain, so one id follows a
request through the proxy, the API and the worker; anything else is replaced, since
the id is written into every log line and response. A job published while serving
a request carries the id in its message headers; the worker's log lines for that
job show it (backend/ops/logs.py).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from celery import current_task
from celery.signals import before_task_publish
from flask import Flask, Response, g, has_app_context, request

HEADER = "X-Request-ID"
# The key in a task message's headers; the worker sees it as task.request.request_id.
MESSAGE_HEADER = "request_id"
# Bounded, and no spaces, quotes or control characters that could forge log lines:
# UUIDs, ULIDs, hex and most proxies' trace ids pass.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def new_request_id() -> str:
    # 128 random bits as 32 hex digits, like a UUID's hex without its cost (~10 µs less per request).
    return secrets.token_hex(16)


def request_id_from(value: str | None) -> str:
    """The client's id if it is sane, else a new one."""
    return value if value and VALID_REQUEST_ID.fullmatch(value) else new_request_id()


def current_request_id() -> str | None:
    """The id of the request (or CLI command) being served, else of the job being run."""
    if has_app_context():
        request_id: str | None = g.get("request_id")
        if request_id:
            return request_id
    if current_task and current_task.request.id is not None:
        carried: str | None = current_task.request.get(MESSAGE_HEADER)
        return carried
    return None


def _assign_request_id() -> None:
    g.request_id = request_id_from(request.headers.get(HEADER))


def _echo_request_id(response: Response) -> Response:
    # Also on error responses. g has no id only if a before_request hook registered
    # ahead of ours (an extension's) ended the request first.
    response.headers[HEADER] = g.get("request_id") or request_id_from(request.headers.get(HEADER))
    return response


def _add_to_message(headers: dict[str, Any] | None = None, **_: object) -> None:
    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(MESSAGE_HEADER, request_id)


def init_app(app: Flask) -> None:
    """Call first in the factory, so the id exists before any other hook can fail a request."""
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
    # Process-wide, like every Celery signal: one receiver serves every app (dispatch_uid).
    before_task_publish.connect(_add_to_message, weak=False, dispatch_uid="backend.ops.tracing")
