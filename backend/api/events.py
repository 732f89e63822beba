"""Live job status over Server-Sent Events: GET /status/<id>/events.

Each event carries the same object as GET /status/<id>; the first is the current
status, and the server closes the stream after a final state. Like the long-poll
(backend.jobs.service.wait_for_change) the stream follows the job through a Watch
(backend/jobs/watch.py), not a sleep loop.

What an open stream holds for its whole life: one gunicorn thread (gthread) or
greenlet (gevent) and one Redis connection in subscribe mode (plus, under gunicorn,
an epoll descriptor to notice a client that leaves). Plain blocking redis-py with
timeouts, so it works under both worker classes; EVENTS_MAX_SECONDS bounds how long
one client can keep them, and clients reconnect.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request, stream_with_context

from backend.api.responses import json_text
from backend.jobs import extensions, service
from backend.jobs.callers import Caller
from backend.jobs.errors import REDIS_UNAVAILABLE, ServiceError
from backend.jobs.states import FINAL_STATES
from backend.jobs.status import JobStatus
from backend.jobs.watch import Watch

log = logging.getLogger(__name__)

# How long a client waits before reconnecting after the stream ends without a
# final state (lifetime reached, server restart); sent once per stream.
RETRY_MILLISECONDS = 3000
EVENT_NAME = "status"
# The id of a final state's event, the only one with an id. A browser's EventSource
# reconnects after every close, a final one too, and sends the last id it saw: a
# reconnect that says "end" gets 204 No Content, which ends the EventSource for good.
END_EVENT_ID = "end"
# How often a waiting stream checks that its client is still connected. Without it,
# a stream whose client left would hold its thread until the next write (heartbeat).
CLIENT_CHECK_SECONDS = 1.0


def stream_response(job_id: str, caller: Caller) -> Response:
    """The event stream of a job; 404 (unknown, or another client's) / 503 JSON (raised)
    before any streaming starts."""
    if request.headers.get("Last-Event-ID") == END_EVENT_ID:
        # The client has seen the final state. Not for a cache to give to a first request.
        return Response(status=204, headers={"Cache-Control": "no-store"})
    status = service.job_status(job_id, caller=caller)
    watch = slot = None
    if status.state not in FINAL_STATES:
        # A stream holds a gunicorn thread until it ends: 503 when the process has none to spare.
        slot = extensions.waiting_slots().take()
        subscription = None
        try:
            subscription = extensions.subscriptions().subscription(service.status_channel(job_id))
            watch = Watch(subscription, lambda: service.job_status(job_id, caller=caller))
            status = watch.status
        except BaseException:
            if subscription is not None:
                subscription.close()
            slot.release()
            raise
    config = current_app.config
    client = request.environ.get("gunicorn.socket")  # absent under other servers: no check
    events = _events(job_id, status, watch, client, config["EVENTS_MAX_SECONDS"], config["EVENTS_HEARTBEAT_SECONDS"])
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    if watch is not None:
        # A response closed before its first chunk never runs the generator's finally.
        response.call_on_close(watch.subscription.close)
    if slot is not None:
        response.call_on_close(slot.release)
    response.headers["Cache-Control"] = "no-cache"
    # nginx buffers proxied responses by default, which would hold events back.
    response.headers["X-Accel-Buffering"] = "no"
    return response


def format_event(status: JobStatus) -> str:
    """One `status` event. Only a final state's has an `id:` (END_EVENT_ID): every stream
    starts with the full current status, so there is nothing else to resume from."""
    end = f"id: {END_EVENT_ID}\n" if status.state in FINAL_STATES else ""
    return f"event: {EVENT_NAME}\n{end}data: {json_text(status)}\n\n"


def _events(
    job_id: str,
    status: JobStatus,
    watch: Watch[JobStatus] | None,
    client: socket.socket | None,
    max_seconds: float,
    heartbeat_seconds: float,
) -> Iterator[str]:
    client_socket = None
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n" + format_event(status)
        if watch is None:
            return
        client_socket = _ClientSocket.of(client)
        deadline = time.monotonic() + max_seconds
        next_heartbeat = time.monotonic() + heartbeat_seconds
        while watch.status.state not in FINAL_STATES:
            now = time.monotonic()
            if now >= deadline:
                # Bounded lifetime: a stream cannot hold a server thread forever.
                yield ": stream lifetime reached; reconnect to follow the job\n\n"
                return
            if now >= next_heartbeat:
                next_heartbeat = now + heartbeat_seconds
                # A comment: proxies keep the connection, and writing to a client that
                # has gone away ends the stream. Reading again is Watch.refresh's safety net.
                yield format_event(watch.status) if watch.refresh() else ": keep-alive\n\n"
                continue
            wait = min(deadline, next_heartbeat, now + CLIENT_CHECK_SECONDS) - now
            if watch.next_change(wait):
                next_heartbeat = time.monotonic() + heartbeat_seconds
                yield format_event(watch.status)
            elif client_socket is not None and client_socket.disconnected():
                return
    except REDIS_UNAVAILABLE + (ServiceError,) as exc:
        # Too late for an error response: end the stream; the client reconnects
        # and then gets the 503 (or 404 if the job expired meanwhile).
        log.warning("event stream of job %s ended early: %s", job_id, exc)
    finally:
        if watch is not None:
            watch.subscription.close()
        if client_socket is not None:
            client_socket.close()


class _ClientSocket:
    """Tells when the client has closed the connection (end of file on its socket).

    Safe to peek: while a response is being written, the server reads nothing from
    the socket. A zero-timeout epoll never blocks, under gthread or gevent, and has
    no limit on descriptor numbers (select() fails above 1024).
    """

    def __init__(self, client: socket.socket, selector: selectors.BaseSelector) -> None:
        self.client = client
        self.selector = selector

    @classmethod
    def of(cls, client: socket.socket | None) -> _ClientSocket | None:
        """A watch on the client's socket; None when there is none to watch."""
        if client is None:
            return None
        selector = selectors.DefaultSelector()
        try:
            selector.register(client, selectors.EVENT_READ)
        except (OSError, ValueError):  # already closed
            selector.close()
            return None
        return cls(client, selector)

    def disconnected(self) -> bool:
        try:
            if not self.selector.select(timeout=0):
                return False
            return self.client.recv(1, socket.MSG_PEEK) == b""
        except ValueError:  # gunicorn serving TLS itself: an SSL socket cannot peek; heartbeats will tell
            return False
        except OSError:  # reset by the client
            return True

    def close(self) -> None:
        self.selector.close()


def openapi_operation(status_schema: dict[str, Any], error_responses: dict[str, Any]) -> dict[str, Any]:
    """The route's OpenAPI operation. spectree documents every response as JSON (and its
    stock Flask plugin reads the whole response body), so the route is documented here.

    Before OpenAPI 3.2 (and its `itemSchema`), the schema of a text/event-stream
    describes one event, as its fields: `data` is the status object as JSON text.
    """
    event_schema = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": EVENT_NAME},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": status_schema},
            "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting."},
            "id": {"const": END_EVENT_ID, "description": "Only on a final state's event."},
        },
    }
    return {
        "summary": "Follow a job live over Server-Sent Events; 404 for an unknown or expired id.",
        "description": (
            f"`text/event-stream`: a `{EVENT_NAME}` event carrying the same object as "
            "`GET /status/{task_id}` for the current status and for each change of state or progress. "
            "The server closes the stream after a final state (SUCCESS, FAILURE, REVOKED), or after "
            "EVENTS_MAX_SECONDS (reconnect then). Comment lines are heartbeats. The final state's event "
            f"has the id `{END_EVENT_ID}`; a reconnect with `Last-Event-ID: {END_EVENT_ID}` gets 204, which "
            "ends an EventSource. EventSource cannot send an Authorization header: when tokens are on, "
            "read the stream with fetch()."
        ),
        "operationId": "get__status_{task_id}_events",
        "tags": ["status"],
        # Last-Event-ID is described above, not declared as a header parameter: with one,
        # schemathesis 4.32's stateful run takes the configured token for a generated one
        # and reports that an invalid token was accepted.
        "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": {
                "description": "The event stream.",
                "content": {"text/event-stream": {"schema": event_schema}},
            },
            "204": {"description": f"Last-Event-ID was `{END_EVENT_ID}`: the task has ended, stop reconnecting."},
            **error_responses,
        },
    }
