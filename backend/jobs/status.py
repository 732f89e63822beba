"""The status object of a job: the same shape in every state, built from the job
record and the result Celery stored. GET /status/<id>, the event stream, the CLI
and the tests all see this one object."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from backend.jobs import states
from backend.jobs.states import JobState
from backend.jobs.timestamps import epoch_iso, normalized_iso


class Progress(BaseModel):
    current: int
    total: int
    percent: float = Field(description="current / total × 100, rounded to 0.1.")
    message: str


class JobError(BaseModel):
    type: str = Field(description="The exception's class name.")
    message: str


class JobStatus(BaseModel):
    """The same object in every state; fields that do not apply are null."""

    # `task_id` is Celery's name for a job's id, kept by the HTTP API.
    task_id: str
    name: str = Field(description="The task this job runs.")
    state: JobState
    progress: Progress | None
    result: Any = Field(description="The job's return value once SUCCESS, else null.")
    error: JobError | None
    submitted_at: str | None = Field(description="ISO 8601, UTC.")
    run_at: str | None = Field(description="When a job submitted for later (delay_seconds, run_at, a countdown) "
                               "was due to run; null for a job queued at once.")
    deadline_at: str | None = Field(description="When the job must have started (deadline_seconds, expires_at, "
                                    "Celery's expires); past it, it never runs and ends REVOKED, DeadlineExceeded.")
    started_at: str | None
    finished_at: str | None
    attempt: int | None = Field(description="The attempt that runs or ran last, 1 for the first; null before it "
                                "starts. While RETRY, the attempt that failed.")
    max_attempts: int | None = Field(description="How many attempts its retry policy allows, the first included; "
                                     "null until it first retries, and for a policy without a limit.")
    next_attempt_at: str | None = Field(description="While RETRY: when the next attempt is due (it waits in the "
                                        "schedule, not in a worker); else null.")
    owner: str | None = Field(
        description="Who submitted it: the client's name, a `token-…` id (API_TOKENS), `anonymous` "
        "(authentication off), `cli`, or `code` for jobs sent outside the API (.delay(), celery call, beat)."
    )
    input: Any = Field(description="The job's input as keyword arguments, kept for a retry; null if not kept.")
    input_note: str | None = Field(description="Why the input was not kept (over JOB_INPUT_MAX_BYTES), else null.")
    retry_of: str | None = Field(description="The id of the job this one retries.")
    retried_by: str | None = Field(description="The id of the job that retries this one.")


def build_status(job_id: str, record: Mapping[str, str], meta: Mapping[str, Any]) -> JobStatus:
    """The status from the job record and Celery's stored meta (`status`, `result`, `date_done`)."""
    state = meta.get("status", states.CELERY_PENDING)
    payload = meta.get("result")
    cancelled_before_start = "cancel_requested_at" in record and "started_at" not in record
    if cancelled_before_start:
        state = states.REVOKED
    elif state == states.CELERY_PENDING:
        if "started_at" in record:
            state = states.STARTED
        else:
            state = states.SCHEDULED if record.get("state") == states.SCHEDULED else states.QUEUED
    elif state not in states.STORED_STATES:
        state = states.STARTED  # a custom state of a user's task: it is running

    finished_at = None
    if state in states.FINAL_STATES:
        finished_at = normalized_iso(meta.get("date_done")) or record.get("cancel_requested_at")
    return JobStatus(
        task_id=job_id,
        name=record.get("name") or meta.get("name") or "",
        state=state,
        progress=_progress(payload) if state == states.PROGRESS else None,
        result=payload if state == states.SUCCESS else None,
        error=_error(payload, state) if state in states.ERROR_STATES else None,
        submitted_at=record.get("submitted_at"),
        run_at=record.get("run_at"),
        deadline_at=epoch_iso(int(record["deadline_ms"]) / 1000) if "deadline_ms" in record else None,
        started_at=record.get("started_at"),
        finished_at=finished_at,
        attempt=int(record["attempt"]) + 1 if "attempt" in record else None,
        max_attempts=int(record["max_attempts"]) if "max_attempts" in record else None,
        next_attempt_at=_next_attempt_at(record) if state == states.RETRY else None,
        owner=record.get("owner"),
        input=json.loads(record["input"]) if "input" in record else None,
        input_note=_input_note(record),
        retry_of=record.get("retry_of"),
        retried_by=record.get("retried_by"),
    )


def _next_attempt_at(record: Mapping[str, str]) -> str | None:
    return epoch_iso(int(record["next_attempt_ms"]) / 1000) if "next_attempt_ms" in record else None


def _input_note(record: Mapping[str, str]) -> str | None:
    if "input_bytes" not in record:
        return None
    return (
        f"the input ({int(record['input_bytes']):,} bytes of JSON) was over JOB_INPUT_MAX_BYTES "
        "and was not kept, so this job cannot be retried"
    )


def _progress(payload: Any) -> Progress | None:
    if not isinstance(payload, Mapping):
        return None
    try:
        current, total = int(payload.get("current", 0)), int(payload.get("total", 0))
    except (TypeError, ValueError):
        return None
    percent = round(100.0 * current / total, 1) if total > 0 else 0.0
    return Progress(current=current, total=total, percent=percent, message=str(payload.get("message", "")))


def _error(payload: Any, state: str) -> JobError:
    if isinstance(payload, BaseException):
        return JobError(type=type(payload).__name__, message=str(payload))
    if isinstance(payload, Mapping) and "exc_type" in payload:
        return JobError(type=str(payload["exc_type"]), message=str(payload.get("exc_message", "")))
    return JobError(type=state.title(), message=str(payload or ""))
