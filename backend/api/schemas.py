"""Shapes only HTTP has (query strings, the 202 of a submit, errors, the task list,
health), as pydantic models: with the job status (backend/jobs/status.py) they
generate /openapi.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class StatusQuery(BaseModel):
    wait: float = Field(
        default=0,
        ge=0,
        le=60,
        description="Long-poll: answer as soon as the job's state or progress changes, "
        "or after this many seconds (at most STATUS_MAX_WAIT, 30 by default). 0 answers at once.",
    )


class Submitted(BaseModel):
    task_id: str
    state: Literal["QUEUED", "SCHEDULED"] = Field(
        description="SCHEDULED when `delay_seconds` or `run_at` put it in the schedule, else QUEUED."
    )
    status_url: str
    run_at: str | None = Field(None, description="When a SCHEDULED job is due (ISO 8601, UTC); absent otherwise.")


class Retried(Submitted):
    retry_of: str = Field(description="The job retried; its `retried_by` is now this job.")


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str
    type: str | None = None


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable, machine-readable: validation_error, not_found, …")
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorInfo


class QueueFigures(BaseModel):
    name: str = Field(description="The queue, as workers consume it (CELERY_QUEUES).")
    ready: int = Field(description="Jobs waiting for a worker.")
    scheduled: int = Field(description="Jobs waiting in the schedule for their time.")
    running: int = Field(description="Jobs a worker holds: reserved or running, not acknowledged.")
    oldest_ready_age_seconds: float | None = Field(
        description="How long the oldest ready job has waited (queue latency); null when none waits."
    )


class QueueList(BaseModel):
    queues: list[QueueFigures]


class Me(BaseModel):
    """Who the token sent names: what the dashboard shows, and which of its buttons it offers."""

    client: str = Field(description="The client's name: the owner of the jobs it submits. "
                        "`anonymous` when the API needs no token.")
    role: Literal["read", "submit", "admin"] = Field(
        description="What it may do (docs/clients.md); `admin` when the API needs no token."
    )
    max_running: int | None = Field(
        description="How many of its jobs run at once across all workers (its own limit, else "
        "CLIENT_MAX_RUNNING); null: no limit. The others wait, in order, without holding a worker."
    )


class RetryPolicyDescription(BaseModel):
    """A task's own retry policy: its jobs try again by themselves, waiting in the schedule."""

    on: list[str] = Field(description="The exceptions that make a job try again, by class name.")
    max_attempts: int | None = Field(description="Attempts at most, the first included; null: no limit. "
                                     "After the last, the job is FAILURE (and can be retried by hand).")
    backoff_seconds: int | None = Field(description="The delay before the second attempt, doubled before each "
                                        "next one; null: a fixed `delay_seconds`.")
    backoff_max_seconds: int = Field(description="The longest the backoff grows to.")
    jitter: bool = Field(description="Each delay is drawn at random between 0 and the backoff (full jitter), so "
                         "jobs that failed together do not all try again together.")
    delay_seconds: float = Field(description="The delay between attempts when there is no backoff.")


class TaskDescription(BaseModel):
    name: str
    summary: str
    submit_url: str
    input_schema: dict[str, Any]
    soft_time_limit_seconds: float | None = Field(
        description="A job running longer gets SoftTimeLimitExceeded raised in it, to clean up; null: none."
    )
    time_limit_seconds: float | None = Field(
        description="A job running longer is stopped (its process is killed) and ends FAILURE, "
        "TimeLimitExceeded; null: none."
    )
    retry_policy: RetryPolicyDescription | None = Field(
        description="How its jobs try again by themselves; null: they do not (a failure is final, retryable by hand)."
    )


class TaskList(BaseModel):
    tasks: list[TaskDescription]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    redis: dict[str, Any]
    workers: dict[str, Any]
    # Reported, not required for "ready" (backend/ops/health.py).
    heartbeat: dict[str, Any]
