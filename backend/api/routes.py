"""The API's routes. Each view stays thin: parse, call the job service, shape the response.

The views are plain functions; create_blueprint binds them for one app, wrapped in
that app's OpenAPI spec (documentation only: the service validates) and submit
rate limit. A submit route exists for every public task in the registry.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import BaseModel, create_model
from spectree import Response as Responses
from spectree import SpecTree

from backend.api import events
from backend.api.auth import authenticate, current_caller, may_see_details
from backend.api.requests import json_body
from backend.api.responses import model_response
from backend.api.schemas import (
    ErrorBody,
    Health,
    Me,
    QueueList,
    Readiness,
    Retried,
    StatusQuery,
    Submitted,
    TaskList,
)
from backend.jobs import extensions, history, service, states, timing
from backend.jobs.callers import Role
from backend.jobs.errors import ServiceError
from backend.jobs.history import BulkOutcome, CancelFilters, JobCounts, JobFilters, JobList, JobListQuery, RetryFilters
from backend.jobs.idempotency import HEADER as IDEMPOTENCY_HEADER
from backend.jobs.inputs import validate_input
from backend.jobs.registry import PublicTask, policy_of, public_tasks
from backend.jobs.status import JobStatus
from backend.jobs.timestamps import epoch_iso
from backend.jobs.timing import Timing
from backend.ops import metrics
from backend.ops.health import readiness

View = Callable[..., Any]

# 401 only when API_TOKENS or API_CLIENTS_FILE is set; 403 for a role below the route's;
# 429 only when SUBMIT_RATE_LIMIT is on.
SUBMIT_RESPONSES = {
    f"HTTP_{code}": ErrorBody for code in (400, 401, 403, 404, 413, 415, 422, 429, 503)
} | {"HTTP_202": Submitted}
STATUS_RESPONSES = {f"HTTP_{code}": ErrorBody for code in (401, 404, 422, 503)} | {"HTTP_200": JobStatus}
CANCEL_RESPONSES = {f"HTTP_{code}": ErrorBody for code in (401, 403, 404, 409, 503)} | {"HTTP_202": JobStatus}
RETRY_RESPONSES = {
    f"HTTP_{code}": ErrorBody for code in (400, 401, 403, 404, 409, 422, 429, 503)
} | {"HTTP_202": Retried}
LIST_RESPONSES = {f"HTTP_{code}": ErrorBody for code in (401, 422, 503)} | {"HTTP_200": JobList}
STATS_RESPONSES = {f"HTTP_{code}": ErrorBody for code in (401, 422, 503)} | {"HTTP_200": JobCounts}
BULK_RESPONSES = {
    f"HTTP_{code}": ErrorBody for code in (400, 401, 403, 413, 415, 422, 429, 503)
} | {"HTTP_200": BulkOutcome}


# --- views --------------------------------------------------------------------------------


def submitted(task_name: str, data: Any, *, from_query: bool = False) -> Response:
    """Submit through the service layer, now or at the time the query string says
    (`delay_seconds`, `run_at`), and with the deadline it says (`deadline_seconds`, `expires_at`:
    backend/jobs/timing.py); 202 with the job's id and status URL."""
    timed = timing.when(request.args, current_app.config["SCHEDULE_MAX_SECONDS"])
    submission = service.submit(
        task_name,
        timing.without_timing(data) if from_query else data,
        caller=current_caller(),
        from_query=from_query,
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        run_at=timed.run_at,
        deadline=timed.deadline,
    )
    status_url = url_for("api.job_status", task_id=submission.job_id)
    body = {"task_id": submission.job_id, "state": submission.state, "status_url": status_url}
    if submission.run_at is not None:
        body["run_at"] = epoch_iso(submission.run_at.timestamp())
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = status_url
    if submission.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        metrics.count_submit(submission.task_name)
    return response


def submit_view(task: PublicTask, *, from_query: bool = False) -> View:
    """The view that submits jobs of `task`, its input the JSON body (or the query string)."""

    def submit_task() -> Response:
        if from_query:
            return submitted(task.name, request.args.to_dict(), from_query=True)
        return submitted(task.name, json_body())

    submit_task.__name__ = f"submit_{task.name}" + ("_from_query" if from_query else "")
    where = " with its input in the query string" if from_query else ""
    submit_task.__doc__ = f"Submit `{task.name}`{where}: {task.summary}"
    return submit_task


def submit_by_name(name: str) -> Response:
    return submitted(name, json_body())


def list_tasks() -> Response:
    """List the public tasks: the JSON Schema of their input, their time limits and retry policy."""
    return jsonify(tasks=[_description(task) for task in public_tasks().values()])


def _description(task: PublicTask) -> dict[str, Any]:
    policy = policy_of(task.task)
    return {
        "name": task.name,
        "summary": task.summary,
        "submit_url": url_for(f"api.submit_{task.name}"),
        "input_schema": task.input_model.model_json_schema(),
        "soft_time_limit_seconds": policy.soft_time_limit_seconds,
        "time_limit_seconds": policy.time_limit_seconds,
        "retry_policy": dataclasses.asdict(policy.retry) if policy.retry else None,
    }


def me() -> Response:
    """Who the token names: the client's name and role (`anonymous`, `admin` when the API needs no token)."""
    caller = current_caller()
    return jsonify(client=caller.name, role=caller.role.label, max_running=service.running_limit(caller) or None)


def job_status(task_id: str) -> Response:
    """The job's status: the same object in every state; 404 for an unknown or expired id.
    With `?wait=<seconds>`, answers when the state or progress changes (long-poll)."""
    query = validate_input(StatusQuery, request.args.to_dict(), from_query=True)
    return model_response(service.wait_for_change(task_id, query.wait, caller=current_caller()))


def cancel_job(task_id: str) -> Response:
    """Cancel: a queued job never runs; a running long task stops at its next step (REVOKED); 409 once ended."""
    return model_response(service.cancel(task_id, caller=current_caller()), 202)


def retry_job(task_id: str) -> tuple[Response, int]:
    """Retry a FAILURE or REVOKED job: its task again, with its input, as a new job linked to it
    both ways (`retried_by`, `retry_of`). 409 if it has not failed or was retried already."""
    submission = history.retry(
        task_id, caller=current_caller(), idempotency_key=request.headers.get(IDEMPOTENCY_HEADER)
    )
    status_url = url_for("api.job_status", task_id=submission.job_id)
    response = jsonify(task_id=submission.job_id, state=states.QUEUED, status_url=status_url, retry_of=task_id)
    response.headers["Location"] = status_url
    if submission.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        metrics.count_submit(submission.task_name)
    return response, 202


def list_jobs() -> Response:
    """Every job the caller may see, newest first, filtered, a page at a time, with counts per state.

    An admin sees every job: submitted over the API, from code (.delay(), apply_async), with
    celery call or by beat. Another client sees its own. Follow `next_cursor` for the next
    page: no job appears twice or is skipped."""
    query = validate_input(JobListQuery, _filter_arguments(), from_query=True)
    return model_response(history.list_jobs(query, caller=current_caller()))


def job_stats() -> Response:
    """Jobs per state for the filters (the same as GET /jobs takes, without paging)."""
    filters = validate_input(JobFilters, _filter_arguments(), from_query=True)
    return model_response(history.count_jobs(filters, caller=current_caller()))


def list_queues() -> Response:
    """Each queue: jobs ready, scheduled and running, and how long the oldest ready one has
    waited (what to scale workers on: docs/autoscaling.md)."""
    queues = [dataclasses.asdict(queue) for queue in extensions.queue_stats().figures()]
    return model_response(QueueList.model_validate({"queues": queues}))


def retry_jobs() -> Response:
    """Retry the FAILURE and REVOKED jobs matching the filters in the JSON body (none: all),
    not retried yet, newest first: at most BULK_ACTION_MAX_JOBS (1,000) per call."""
    outcome = history.retry_matching(validate_input(RetryFilters, json_body()), caller=current_caller())
    for job in outcome.jobs:
        metrics.count_submit(job["name"])
    return model_response(outcome)


def cancel_jobs() -> Response:
    """Cancel the jobs matching the filters in the JSON body (none: every job not ended),
    newest first: at most BULK_ACTION_MAX_JOBS (1,000) per call."""
    filters = validate_input(CancelFilters, json_body())
    return model_response(history.cancel_matching(filters, caller=current_caller()))


def _filter_arguments() -> dict[str, Any]:
    """The query string as the filter models take it: a repeated `state` joined with commas;
    any other parameter given twice is a 422 naming it (which one would count?)."""
    arguments: dict[str, Any] = {}
    for name, values in request.args.lists():
        if name != "state" and len(values) > 1:
            message = "given more than once"
            raise ServiceError(422, "validation_error", f"{name}: {message}",
                               [{"field": name, "message": message, "type": "repeated"}])
        arguments[name] = ",".join(values)
    return arguments


def job_events(task_id: str) -> Response:
    """Live status over Server-Sent Events until the job ends (backend/api/events.py)."""
    return events.stream_response(task_id, current_caller())


def healthz() -> Response:
    """Liveness: the API process answers."""
    return jsonify(status="ok")


def readyz() -> tuple[Response, int]:
    """Readiness: Redis answers and at least one worker answers a ping; 503 with details otherwise.

    Also reports celery beat's last heartbeat, which does not decide readiness.
    """
    ready, checks = readiness()
    if not may_see_details():
        checks = {name: {"ok": check["ok"]} for name, check in checks.items()}
    return jsonify(status="ready" if ready else "unavailable", **checks), 200 if ready else 503


# --- binding ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    rule: str
    endpoint: str
    view: View
    method: str = "GET"
    tags: tuple[str, ...] = ()
    responses: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    json: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    submits: bool = False  # rate-limited as a submit
    # The least role a caller needs (backend/api/auth.py checks it before the view runs).
    role: Role = Role.READ
    open: bool = False  # no token asked, even when authentication is on: the health checks
    # Not in the OpenAPI document through spectree (events.openapi_operation documents it).
    documented: bool = True


@functools.cache
def with_timing(model: type[BaseModel]) -> type[BaseModel]:
    """The query string of a submit that takes its input there: the input and the timing.
    One class per model (the OpenAPI document names each model once)."""
    combined: type[BaseModel] = create_model(f"{model.__name__}AndTiming", __base__=(model, Timing))
    return combined


def submit_route(rule: str, endpoint: str, task: PublicTask, tags: tuple[str, ...], method: str = "POST") -> Route:
    """A documented, rate-limited route that submits jobs of `task`: its input is the JSON
    body of a POST, or the query string of a GET (the seed's GET /longtask)."""
    view = submit_view(task, from_query=method == "GET")
    model = task.input_model
    # The query string says when (delay_seconds, run_at), beside the input where a GET takes it.
    query = Timing if method == "POST" else with_timing(model)
    return Route(rule, endpoint, view, method, tags, SUBMIT_RESPONSES, submits=True, role=Role.SUBMIT,
                 json=model if method == "POST" else None, query=query)


def routes() -> list[Route]:
    """Every route of the API, the submit routes of the registered tasks first."""
    registry = public_tasks()
    long_task, add = registry["long_task"], registry["add"]
    return [
        *(submit_route(f"/tasks/{name}", f"submit_{name}", task, ("tasks",)) for name, task in registry.items()),
        # The seed's routes: thin aliases over the same submit path.
        submit_route("/longtask", "longtask_post", long_task, ("aliases",)),
        submit_route("/add", "add_post", add, ("aliases",)),
        submit_route("/longtask", "longtask_get", long_task, ("aliases",), method="GET"),
        # Registered names match their own route first; this one answers the rest with a 404.
        Route("/tasks/<name>", "submit_by_name", submit_by_name, "POST", submits=True, role=Role.SUBMIT,
              documented=False),
        Route("/tasks", "list_tasks", list_tasks, tags=("tasks",),
              responses={"HTTP_200": TaskList, "HTTP_401": ErrorBody}),
        Route("/me", "me", me, tags=("clients",), responses={"HTTP_200": Me, "HTTP_401": ErrorBody}),
        Route("/status/<task_id>", "job_status", job_status, tags=("status",), responses=STATUS_RESPONSES,
              query=StatusQuery),
        Route("/status/<task_id>/cancel", "cancel_job", cancel_job, "POST", tags=("status",),
              responses=CANCEL_RESPONSES, role=Role.SUBMIT),
        Route("/status/<task_id>/retry", "retry_job", retry_job, "POST", tags=("history",),
              responses=RETRY_RESPONSES, submits=True, role=Role.SUBMIT),
        Route("/status/<task_id>/events", "job_events", job_events, documented=False),
        Route("/jobs", "list_jobs", list_jobs, tags=("history",), responses=LIST_RESPONSES, query=JobListQuery),
        Route("/jobs/stats", "job_stats", job_stats, tags=("history",), responses=STATS_RESPONSES, query=JobFilters),
        Route("/queues", "list_queues", list_queues, tags=("queues",),
              responses={"HTTP_200": QueueList, "HTTP_401": ErrorBody, "HTTP_403": ErrorBody, "HTTP_503": ErrorBody},
              role=Role.ADMIN),
        Route("/jobs/retry", "retry_jobs", retry_jobs, "POST", tags=("history",), responses=BULK_RESPONSES,
              json=RetryFilters, submits=True, role=Role.ADMIN),
        Route("/jobs/cancel", "cancel_jobs", cancel_jobs, "POST", tags=("history",), responses=BULK_RESPONSES,
              json=CancelFilters, role=Role.ADMIN),
        Route("/healthz", "healthz", healthz, tags=("health",), responses={"HTTP_200": Health}, open=True),
        Route("/readyz", "readyz", readyz, tags=("health",),
              responses={"HTTP_200": Readiness, "HTTP_503": Readiness}, open=True),
    ]


def create_blueprint(spec: SpecTree, limit_submits: Callable[[View], View]) -> Blueprint:
    """The API blueprint for one app: its spec documents the routes, `limit_submits`
    (the submit rate limit) wraps every submit view."""
    bp = Blueprint("api", __name__)
    table = routes()
    open_endpoints = frozenset(f"{bp.name}.{route.endpoint}" for route in table if route.open)
    roles = {f"{bp.name}.{route.endpoint}": route.role for route in table}
    bp.before_request(lambda: authenticate(open_endpoints, roles))
    for route in table:
        view = limit_submits(route.view) if route.submits else route.view
        if route.documented:
            view = spec.validate(
                json=route.json,
                query=route.query,
                resp=Responses(**route.responses),
                tags=route.tags,
                skip_validation=True,
                security={} if route.open else None,
            )(view)
        bp.add_url_rule(route.rule, endpoint=route.endpoint, view_func=view, methods=[route.method])
    return bp
