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
# flaky's retry policy: 4 attempts, after waits of up to 1, 2 and 4 s (full jitter).
FLAKY_MAX_ATTEMPTS = 4
FLAKY_BACKOFF_SECONDS = 1


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


class FlakyInput(BaseModel):
    """A call to a service that fails now and then: its first `failures` attempts fail."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(
        1, ge=0, le=10,
        description=f"Attempts that fail with TransientError before one succeeds; from {FLAKY_MAX_ATTEMPTS} on, "
        f"every attempt the policy allows fails and the job ends FAILURE.",
    )


class TransientError(Exception):
    """A failure worth trying again (flaky's retry policy retries it)."""


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


@public_task(
    FlakyInput,
    bind=True,
    # The retry policy, declared with the task in Celery's own options: the next attempt
    # waits in the server-side schedule, and /status shows RETRY with attempt,
    # max_attempts and next_attempt_at meanwhile.
    autoretry_for=(TransientError,),
    max_retries=FLAKY_MAX_ATTEMPTS - 1,
    retry_backoff=FLAKY_BACKOFF_SECONDS,
    retry_backoff_max=60,
    retry_jitter=True,
    # Its own time limits: TimeLimitExceeded (FAILURE) past 30 s, a chance to clean up at 20 s.
    soft_time_limit=20,
    time_limit=30,
)
def flaky(self: RecordedTask, failures: int = 1) -> dict[str, Any]:
    """Fail the first `failures` attempts with TransientError, then succeed: a retry policy at work."""
    attempt = self.request.retries + 1
    if attempt <= failures:
        raise TransientError(f"attempt {attempt} failed, as asked (failures={failures})")
    return {"attempts": attempt, "message": f"succeeded at attempt {attempt}"}


@public_task(AddInput)
def add(x: float, y: float) -> float:
    """Add two numbers."""
    return x + y
