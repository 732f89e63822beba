"""The public tasks. To add one: a pydantic model for its input and a function
decorated with @public_task(Model); it is then listed at GET /tasks, submitted
at POST /tasks/<name> and documented in /openapi.json.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.jobs.registry import public_task

if TYPE_CHECKING:
    from backend.taskqueue.task import RecordedTask

# A long task must finish well inside its hard time limit (config.LONG_TASK_TIME_LIMIT).
LONG_TASK_MAX_SECONDS = 3000


class LongTaskInput(BaseModel):
    """A simulated long job: `steps` steps of `step_seconds` each."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(10, ge=1, le=10_000, description="Number of steps.")
    step_seconds: float = Field(
        1.0, ge=0, le=60, allow_inf_nan=False, description="Seconds each step takes."
    )
    fail_at_step: int | None = Field(
        None, ge=1, description="Fail with StepFailed at this step: to try the job history's retry."
    )

    @model_validator(mode="after")
    def fits_in_time_limit(self) -> LongTaskInput:
        if self.steps * self.step_seconds > LONG_TASK_MAX_SECONDS:
            raise ValueError(
                f"steps × step_seconds must be at most {LONG_TASK_MAX_SECONDS} seconds "
                "(the task's time limit)"
            )
        return self


class StepFailed(Exception):
    """The failure long_task was asked for (`fail_at_step`)."""


class AddInput(BaseModel):
    """Two numbers to add."""

    model_config = ConfigDict(extra="forbid")

    x: float = Field(allow_inf_nan=False, ge=-1e15, le=1e15)
    y: float = Field(allow_inf_nan=False, ge=-1e15, le=1e15)


@public_task(LongTaskInput, bind=True)
def long_task(
    self: RecordedTask, steps: int = 10, step_seconds: float = 1.0, fail_at_step: int | None = None
) -> dict[str, Any]:
    """Run `steps` steps, reporting PROGRESS after each; stops at the next step when cancelled."""
    for step in range(1, steps + 1):
        self.raise_if_cancelled()
        time.sleep(step_seconds)
        if step == fail_at_step:
            raise StepFailed(f"failed at step {step} of {steps}, as asked (fail_at_step={fail_at_step})")
        self.report_progress(step, steps, f"step {step} of {steps}")
    return {"steps": steps, "message": f"completed {steps} steps"}


@public_task(AddInput)
def add(x: float, y: float) -> float:
    """Add two numbers."""
    return x + y
