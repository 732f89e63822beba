"""The API blueprint. Routes stay thin: parse, call the service layer, shape the response."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, request, url_for
from spectree import Response, SpecTree
from werkzeug.exceptions import RequestEntityTooLarge

from backend import events, jobs
from backend.auth import authenticate, may_see_details
from backend.errors import APIError
from backend.idempotency import HEADER as IDEMPOTENCY_HEADER
from backend.health import readiness
from backend.registry import PublicTask, public_tasks
from backend.schemas import ErrorBody, Health, Readiness, StatusQuery, Submitted, TaskList, TaskStatus
from backend.tasks import LongTaskInput

# 401 only when API_TOKENS is set; 429 only when SUBMIT_RATE_LIMIT is on.
SUBMIT_RESPONSES = {
    "HTTP_202": Submitted,
    "HTTP_400": ErrorBody,
    "HTTP_401": ErrorBody,
    "HTTP_404": ErrorBody,
    "HTTP_413": ErrorBody,
    "HTTP_415": ErrorBody,
    "HTTP_422": ErrorBody,
    "HTTP_429": ErrorBody,
    "HTTP_503": ErrorBody,
}
STATUS_RESPONSES = {
    "HTTP_200": TaskStatus,
    "HTTP_401": ErrorBody,
    "HTTP_404": ErrorBody,
    "HTTP_422": ErrorBody,
    "HTTP_503": ErrorBody,
}


def json_body() -> Any:
    """The request's JSON body: {} when empty, 415 when not JSON, 400 when malformed, 413 when too big."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(raw) >= limit:
        # A streamed (chunked) body: werkzeug stops reading at MAX_CONTENT_LENGTH and returns
        # what it read without a 413 (only a further read raises), so a cut body would be parsed.
        raise RequestEntityTooLarge()
    # JSON's own whitespace only: bytes.strip() would also drop \x0b and \x0c, invalid in JSON.
    if not raw.strip(b" \t\r\n"):
        return {}
    if not request.is_json:
        raise APIError(415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json")
    return parse_json(raw)


def parse_json(raw: bytes | str) -> Any:
    """JSON text of a submit, parsed as the API does (also `flask tasks submit --json`); 400 when malformed."""
    try:
        return json.loads(raw, parse_float=_json_number)
    except (ValueError, RecursionError) as exc:
        raise APIError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def _json_number(text: str) -> int | float:
    """A JSON number written with a fraction or exponent; an int when integral (2.0, 1e3).

    JSON has one number type and JSON Schema's "integer" accepts 2.0, so the published
    schema says {"steps": 2.0} is valid, where strict pydantic refuses a float for an int.
    """
    value = float(text)
    return int(value) if value.is_integer() else value


def submit(name: str, data: Any, *, from_query: bool = False):
    """Submit through the service layer; 202 with the task's id and status URL."""
    submission = jobs.submit(
        name, data, from_query=from_query, idempotency_key=request.headers.get(IDEMPOTENCY_HEADER)
    )
    status_url = url_for("api.task_status", task_id=submission.task_id)
    response = jsonify(task_id=submission.task_id, state="QUEUED", status_url=status_url)
    response.status_code = 202
    response.headers["Location"] = status_url
    if submission.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def create_blueprint(spec: SpecTree, limit_submits: Callable[[Callable], Callable]) -> Blueprint:
    """The API's routes; `limit_submits` decorates every submit view (rate limits)."""
    bp = Blueprint("api", __name__)
    bp.before_request(authenticate)

    def submit_route(rule: str, task: PublicTask, endpoint: str, tags: tuple[str, ...]) -> None:
        @spec.validate(json=task.input_model, resp=Response(**SUBMIT_RESPONSES), tags=tags, skip_validation=True)
        @limit_submits
        def submit_task():
            return submit(task.name, json_body())

        submit_task.__doc__ = f"Submit `{task.name}`: {task.summary}"
        bp.add_url_rule(rule, endpoint=endpoint, view_func=submit_task, methods=["POST"])

    registry = public_tasks()
    for name, task in registry.items():
        submit_route(f"/tasks/{name}", task, f"submit_{name}", ("tasks",))
    # The seed's routes: thin aliases over the same submit path.
    submit_route("/longtask", registry["long_task"], "longtask_post", ("aliases",))
    submit_route("/add", registry["add"], "add_post", ("aliases",))

    @bp.get("/longtask")
    @spec.validate(query=LongTaskInput, resp=Response(**SUBMIT_RESPONSES), tags=("aliases",), skip_validation=True)
    @limit_submits
    def longtask_get():
        """Submit `long_task` with its input in the query string (defaults: 10 steps × 1 s)."""
        return submit("long_task", request.args.to_dict(), from_query=True)

    @bp.post("/tasks/<name>")
    @limit_submits
    def submit_by_name(name: str):
        # Registered names match their own documented route first; this answers the rest (404).
        return submit(name, json_body())

    @bp.get("/tasks")
    @spec.validate(resp=Response(HTTP_200=TaskList, HTTP_401=ErrorBody), tags=("tasks",), skip_validation=True)
    def list_tasks():
        """List the public tasks with the JSON Schema of their input."""
        return jsonify(
            tasks=[
                {
                    "name": task.name,
                    "summary": task.summary,
                    "submit_url": url_for(f"api.submit_{task.name}"),
                    "input_schema": task.input_model.model_json_schema(),
                }
                for task in public_tasks().values()
            ]
        )

    @bp.get("/status/<task_id>")
    @spec.validate(query=StatusQuery, resp=Response(**STATUS_RESPONSES), tags=("status",), skip_validation=True)
    def task_status(task_id: str):
        """The task's status: the same object in every state; 404 for an unknown or expired id.
        With `?wait=<seconds>`, answers when the state or progress changes (long-poll)."""
        query = jobs.validate_input(StatusQuery, request.args.to_dict(), from_query=True)
        return jsonify(jobs.wait_for_change(task_id, query.wait).model_dump(mode="json"))

    @bp.post("/status/<task_id>/cancel")
    @spec.validate(
        resp=Response(HTTP_202=TaskStatus, HTTP_401=ErrorBody, HTTP_404=ErrorBody, HTTP_409=ErrorBody, HTTP_503=ErrorBody),
        tags=("status",),
        skip_validation=True,
    )
    def cancel_task(task_id: str):
        """Cancel: a queued task never runs; a running long task stops at its next step (REVOKED); 409 once ended."""
        return jsonify(jobs.cancel(task_id).model_dump(mode="json")), 202

    # Not spec.validate: spectree documents JSON responses only; see events.openapi_operation.
    @bp.get("/status/<task_id>/events")
    def task_events(task_id: str):
        """Live status over Server-Sent Events until the task ends (backend/events.py)."""
        return events.stream_response(task_id)

    @bp.get("/healthz")
    @spec.validate(resp=Response(HTTP_200=Health), tags=("health",), security={}, skip_validation=True)
    def healthz():
        """Liveness: the API process answers."""
        return jsonify(status="ok")

    @bp.get("/readyz")
    @spec.validate(
        resp=Response(HTTP_200=Readiness, HTTP_503=Readiness), tags=("health",), security={}, skip_validation=True
    )
    def readyz():
        """Readiness: Redis answers and at least one worker answers a ping; 503 with details otherwise.

        Also reports celery beat's last heartbeat, which does not decide readiness.
        """
        ready, checks = readiness()
        if not may_see_details():
            checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
        return jsonify(status="ready" if ready else "unavailable", **checks), 200 if ready else 503

    return bp
