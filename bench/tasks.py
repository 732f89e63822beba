"""The benchmark's task: it does nothing, so every figure measures the service around it.

A public task like the product's (submitted at POST /tasks/noop, run with the JobTask
base), loaded only by the benchmark: its API (bench/app.py) imports this module, and
its workers start with `--include bench.tasks`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from backend.jobs.registry import public_task


class NoopInput(BaseModel):
    """No input at all."""

    model_config = ConfigDict(extra="forbid")


@public_task(NoopInput)
def noop() -> None:
    """Do nothing (the benchmark's task)."""
