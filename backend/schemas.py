"""Response shapes of the API, as pydantic models: they generate /openapi.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

TaskState = Literal["QUEUED", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


class Progress(BaseModel):
    current: int
    total: int
    percent: float = Field(description="current / total × 100, rounded to 0.1.")
    message: str


class TaskError(BaseModel):
    type: str = Field(description="The exception's class name.")
    message: str


class TaskStatus(BaseModel):
    """The same object in every state; fields that do not apply are null."""

    task_id: str
    name: str
    state: TaskState
    progress: Progress | None
    result: Any = Field(description="The task's return value once SUCCESS, else null.")
    error: TaskError | None
    submitted_at: str | None = Field(description="ISO 8601, UTC.")
    started_at: str | None
    finished_at: str | None


class StatusQuery(BaseModel):
    wait: float = Field(
        default=0,
        ge=0,
        le=60,
        description="Long-poll: answer as soon as the task's state or progress changes, "
        "or after this many seconds (at most STATUS_MAX_WAIT, 30 by default). 0 answers at once.",
    )


class Submitted(BaseModel):
    task_id: str
    state: Literal["QUEUED"]
    status_url: str


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


class TaskDescription(BaseModel):
    name: str
    summary: str
    submit_url: str
    input_schema: dict[str, Any]


class TaskList(BaseModel):
    tasks: list[TaskDescription]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    redis: dict[str, Any]
    workers: dict[str, Any]
    # Reported, not required for "ready" (backend/health.py).
    heartbeat: dict[str, Any]
