"""The service layer: submit, look up and cancel tasks. Routes and tests use it."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from celery import Celery
from celery.utils import uuid
from flask import current_app
from pydantic import BaseModel, ValidationError

from backend.auth import current_client
from backend.errors import APIError
from backend.idempotency import IdempotencyKeys, fingerprint, validate_key
from backend.metrics import count_submit
from backend.records import TaskRecords
from backend.registry import PublicTask, public_tasks
from backend.schemas import FINAL_STATES, Progress, TaskError, TaskStatus

# Celery ids are UUIDs; callers may choose their own, so allow any short token.
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
KNOWN_STATES = frozenset({"STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"})


def _celery() -> Celery:
    return current_app.extensions["celery"]


def _records() -> TaskRecords:
    return current_app.extensions["task_records"]


@dataclass(frozen=True)
class Submission:
    task_id: str
    # True when an Idempotency-Key matched an earlier submit: nothing new was enqueued.
    replayed: bool = False


def find_task(name: str) -> PublicTask:
    task = public_tasks().get(name)
    if task is None:
        raise APIError(404, "unknown_task", f"no public task named {name!r}; see GET /tasks")
    return task


def validate_input(model: type[BaseModel], data: Any, *, from_query: bool = False) -> BaseModel:
    """Validate client input; a 422 naming each bad field otherwise.

    JSON bodies are validated strictly ("5" is not a number); query strings
    are text by nature, so they are converted.
    """
    if not isinstance(data, Mapping):
        raise APIError(422, "validation_error", "the request body must be a JSON object")
    try:
        return model.model_validate(dict(data), strict=not from_query)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(str(part) for part in error["loc"]) or None,
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details)
        raise APIError(422, "validation_error", summary, details) from None


def submit(name: str, data: Any, *, from_query: bool = False, idempotency_key: str | None = None) -> Submission:
    """Validate the input for the named task and enqueue it.

    Nothing is enqueued unless the input is valid. With an idempotency key, a
    repeat of an earlier submit returns that submit's task instead.
    """
    if idempotency_key is not None:
        validate_key(idempotency_key)
    task = find_task(name)
    # mode="json": URLs, dates, enums become plain JSON for the JSON-only serializer.
    params = validate_input(task.input_model, data, from_query=from_query).model_dump(mode="json")
    # This Flask app's Celery, not the process-wide default app that @shared_task points to.
    celery_task = _celery().tasks[task.name]
    if idempotency_key is None:
        task_id = celery_task.apply_async(kwargs=params).id
        count_submit(task.name)
        return Submission(task_id)

    keys: IdempotencyKeys = current_app.extensions["idempotency_keys"]
    claim = keys.claim(current_client(), idempotency_key, fingerprint(task.name, params), task.name, uuid())
    if claim.replayed:
        return Submission(claim.task_id, replayed=True)
    celery_task.apply_async(kwargs=params, task_id=claim.task_id, record_written=True)
    count_submit(task.name)
    return Submission(claim.task_id)


def task_status(task_id: str) -> TaskStatus:
    # A malformed id was never submitted: answer 404 without asking Redis.
    if not TASK_ID.fullmatch(task_id):
        raise _not_found(task_id)
    backend = _celery().backend
    # Record and result in one round trip (both live in the result backend's Redis),
    # decoded as backend.get_task_meta() would: 301 -> 164 µs CPU per read, measured in-process.
    record, raw_meta = _records().get_with(task_id, backend.get_key_for_task(task_id))
    if record is None:
        raise _not_found(task_id)
    meta = backend.decode_result(raw_meta) if raw_meta else {"status": "PENDING", "result": None}
    return build_status(task_id, record, meta)


def _not_found(task_id: str) -> APIError:
    return APIError(404, "task_not_found", f"no task with id {task_id!r} (never submitted, or expired)")


def wait_for_change(task_id: str, seconds: float) -> TaskStatus:
    """The task's status once its state or progress changes, or after `seconds`.

    Fed by the result backend's pub/sub: every state Celery stores is also
    published on the task's key, so this waits on a message, not a sleep loop.
    A task that has already ended is answered at once.
    """
    seconds = min(seconds, current_app.config["STATUS_MAX_WAIT"])
    if seconds <= 0 or not TASK_ID.fullmatch(task_id):
        return task_status(task_id)
    deadline = time.monotonic() + seconds
    # Subscribed before the first read, so Redis' confirmation arrives while the status
    # is read: one round trip less per long-poll than subscribing after it.
    with _records().subscribed(_celery().backend.get_key_for_task(task_id)) as subscription:
        status = task_status(task_id)
        if status.state in FINAL_STATES:
            return status
        # A long-poll holds a gunicorn thread while it waits: 503 when the process has none to spare.
        with current_app.extensions["waiting_slots"].take():
            subscription.confirm()
            # Read again once the subscription is in effect: a change between the first
            # read and the subscription would otherwise be missed until the deadline.
            current = task_status(task_id)
            while current == status and (remaining := deadline - time.monotonic()) > 0:
                if subscription.wait(remaining):
                    current = task_status(task_id)
            return current


def build_status(task_id: str, record: Mapping[str, str], meta: Mapping[str, Any]) -> TaskStatus:
    state = meta.get("status", "PENDING")
    payload = meta.get("result")
    cancelled_before_start = "cancel_requested_at" in record and "started_at" not in record
    if cancelled_before_start:
        state = "REVOKED"
    elif state == "PENDING":
        state = "STARTED" if "started_at" in record else "QUEUED"
    elif state not in KNOWN_STATES:
        state = "STARTED"  # a custom state of a user's task: it is running

    finished_at = None
    if state in FINAL_STATES:
        finished_at = _iso(meta.get("date_done")) or record.get("cancel_requested_at")
    return TaskStatus(
        task_id=task_id,
        name=record.get("name") or meta.get("name") or "",
        state=state,
        progress=_progress(payload) if state == "PROGRESS" else None,
        result=payload if state == "SUCCESS" else None,
        error=_error(payload, state) if state in {"FAILURE", "RETRY", "REVOKED"} else None,
        submitted_at=record.get("submitted_at"),
        started_at=record.get("started_at"),
        finished_at=finished_at,
    )


def cancel(task_id: str) -> TaskStatus:
    """Cancel a task: a queued one never runs; a running long task stops at its next step."""
    status = task_status(task_id)
    if status.state in FINAL_STATES:
        raise APIError(409, "task_finished", f"task {task_id} already ended in state {status.state}")
    if _records().request_cancel(task_id):
        # The record's flag is what stops the task: the worker that takes the message
        # checks it atomically before running anything. No control.revoke broadcast:
        # kombu retries broadcasts without limit, so a cancel would hang while the
        # broker is down, and workers would keep every revoked id in memory.
        _celery().backend.mark_as_revoked(task_id, "cancelled before it started")
    return task_status(task_id)


def _progress(payload: Any) -> Progress | None:
    if not isinstance(payload, Mapping):
        return None
    try:
        current, total = int(payload.get("current", 0)), int(payload.get("total", 0))
    except (TypeError, ValueError):
        return None
    percent = round(100.0 * current / total, 1) if total > 0 else 0.0
    return Progress(current=current, total=total, percent=percent, message=str(payload.get("message", "")))


def _error(payload: Any, state: str) -> TaskError:
    if isinstance(payload, BaseException):
        return TaskError(type=type(payload).__name__, message=str(payload))
    if isinstance(payload, Mapping) and "exc_type" in payload:
        return TaskError(type=str(payload["exc_type"]), message=str(payload.get("exc_message", "")))
    return TaskError(type=state.title(), message=str(payload or ""))


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
