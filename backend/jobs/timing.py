"""When a submitted job may run: now, or later in the server-side schedule; and until when.

Every submit route takes, in its query string beside its input (the body, or on GET
/longtask the rest of the query string, validated by the task's own model):
- `delay_seconds` (≥ 0) or `run_at` (ISO 8601 with a zone): the job waits, SCHEDULED,
  until then; more than SCHEDULE_MAX_SECONDS ahead is refused (422);
- `deadline_seconds` (> 0, from now) or `expires_at` (ISO 8601 with a zone): a job not
  started by then never runs, and ends REVOKED with DeadlineExceeded. A deadline that
  does not come after the job is due, or is more than twice SCHEDULE_MAX_SECONDS ahead, is
  refused (422).
Giving both forms of either is a 422.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.jobs.errors import ServiceError
from backend.jobs.inputs import iso_with_zone, validate_input

# The query parameters that say when, never part of a task's input.
TIMING_PARAMETERS = ("delay_seconds", "run_at", "deadline_seconds", "expires_at")


class Timing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                        description="Run the job this many seconds from now.")
    run_at: AwareDatetime | None = Field(default=None, description="Run the job at this time (ISO 8601 with a zone).")
    deadline_seconds: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Never run the job if it has not started this many seconds from now (it ends REVOKED, "
        "DeadlineExceeded).",
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="Never run the job if it has not started by this time (ISO 8601 with a zone)."
    )

    _iso_moments = field_validator("run_at", "expires_at", mode="before")(iso_with_zone)

    @model_validator(mode="after")
    def _one_of_each(self) -> Timing:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give delay_seconds or run_at, not both")
        if self.deadline_seconds is not None and self.expires_at is not None:
            raise ValueError("give deadline_seconds or expires_at, not both")
        return self


@dataclass(frozen=True)
class When:
    """When a job is due (None: now) and by when it must have started (None: no deadline)."""

    run_at: datetime | None = None
    deadline: datetime | None = None


def when(query: Mapping[str, Any], max_seconds: int, now: datetime | None = None) -> When:
    """The timing `query` asks for. A 422 naming the parameter for a time that is not valid,
    one more than `max_seconds` ahead, or a deadline that does not come after the run."""
    given = {name: query[name] for name in TIMING_PARAMETERS if name in query}
    if not given:
        return When()
    timing = validate_input(Timing, given, from_query=True)
    now = now or datetime.now(UTC)
    horizon = timedelta(seconds=max_seconds)
    # Seconds compared before they become a time: 1e16 s is past any datetime (OverflowError).
    if (timing.delay_seconds or 0) > max_seconds or (timing.run_at is not None and timing.run_at - now > horizon):
        _refuse(next(name for name in ("delay_seconds", "run_at") if name in given),
                f"at most SCHEDULE_MAX_SECONDS ({max_seconds:,} s) ahead", "too_far_ahead")
    due = timing.run_at if timing.run_at is not None else now + timedelta(seconds=timing.delay_seconds or 0)
    deadline_name = "deadline_seconds" if "deadline_seconds" in given else "expires_at"
    if (timing.deadline_seconds or 0) > 2 * max_seconds or (
        timing.expires_at is not None and timing.expires_at - now > 2 * horizon
    ):
        _refuse(deadline_name, f"at most twice SCHEDULE_MAX_SECONDS ({2 * max_seconds:,} s) ahead", "too_far_ahead")
    deadline = timing.expires_at
    if timing.deadline_seconds is not None:
        deadline = now + timedelta(seconds=timing.deadline_seconds)
    if deadline is not None and deadline <= max(due, now):
        _refuse(deadline_name, "the deadline must come after the job is due", "deadline_too_early")
    return When(due if due > now else None, deadline)


def _refuse(name: str, message: str, kind: str) -> None:
    detail = {"field": name, "message": message, "type": kind}
    raise ServiceError(422, "validation_error", f"{name}: {message}", [detail])


def without_timing(query: Mapping[str, Any]) -> dict[str, Any]:
    """A query string's other parameters: a task's input on the routes that take it there."""
    return {name: value for name, value in query.items() if name not in TIMING_PARAMETERS}
