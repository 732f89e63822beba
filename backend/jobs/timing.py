"""When a submitted job may run: now, or later in the server-side schedule.

Every submit route takes `delay_seconds` (≥ 0) or `run_at` (ISO 8601 with a zone) in its
query string, beside its input: the input is the body (or, on GET /longtask, the rest of
the query string), and is validated by the task's own model. A job due later than
SCHEDULE_MAX_SECONDS from now is refused (422), as is one given both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from backend.jobs.errors import ServiceError
from backend.jobs.inputs import validate_input

# The query parameters that say when, never part of a task's input.
TIMING_PARAMETERS = ("delay_seconds", "run_at")


class Timing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                        description="Run the job this many seconds from now.")
    run_at: AwareDatetime | None = Field(default=None, description="Run the job at this time (ISO 8601 with a zone).")

    @model_validator(mode="after")
    def _one_of(self) -> Timing:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give delay_seconds or run_at, not both")
        return self


def due_time(query: Mapping[str, Any], max_seconds: int, now: datetime | None = None) -> datetime | None:
    """When the job is due, from `query`'s timing parameters; None for now (none given, or
    a time that has passed). A 422 naming the parameter when it is not a valid time, or is
    more than `max_seconds` ahead."""
    given = {name: query[name] for name in TIMING_PARAMETERS if name in query}
    if not given:
        return None
    timing = validate_input(Timing, given, from_query=True)
    now = now or datetime.now(UTC)
    due = timing.run_at if timing.run_at is not None else now + timedelta(seconds=timing.delay_seconds or 0)
    if due - now > timedelta(seconds=max_seconds):
        name = next(iter(given))
        raise ServiceError(
            422, "validation_error",
            f"{name}: at most SCHEDULE_MAX_SECONDS ({max_seconds:,} s) ahead",
            [{"field": name, "message": f"at most {max_seconds} seconds ahead", "type": "too_far_ahead"}],
        )
    return due if due > now else None


def without_timing(query: Mapping[str, Any]) -> dict[str, Any]:
    """A query string's other parameters: a task's input on the routes that take it there."""
    return {name: value for name, value in query.items() if name not in TIMING_PARAMETERS}
