"""The registry of public tasks: a Celery task and the pydantic model of its input.

Clients may submit jobs of registered tasks only, by name, with input that validates
against the task's model. Registering is one decorator on the task function; the
registry fills as the task modules are imported (create_app imports TASK_MODULES).

How a task runs is declared in the same decorator, with Celery's own task options:
time limits (`soft_time_limit`, `time_limit`) and a retry policy (`autoretry_for`,
`max_retries`, `retry_backoff`, `retry_backoff_max`, `retry_jitter`). A policy's next
attempt waits in the server-side schedule, not in a worker (RecordedTask.apply_async).
GET /tasks describes each task's policy (`policy_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from celery import Task, shared_task
from pydantic import BaseModel

_REGISTRY: dict[str, PublicTask] = {}


@dataclass(frozen=True)
class PublicTask:
    name: str
    input_model: type[BaseModel]
    task: Task
    summary: str


def public_task(input_model: type[BaseModel], **celery_options: Any) -> Callable[[Callable[..., Any]], Task]:
    """Make a function a Celery task (via @shared_task) that clients may submit.

    The function receives the validated input as keyword arguments, so its
    signature and the model's fields must match.
    """

    def register(function: Callable[..., Any]) -> Task:
        task = shared_task(name=function.__name__, **celery_options)(function)
        summary = (function.__doc__ or function.__name__).strip().splitlines()[0]
        _REGISTRY[function.__name__] = PublicTask(function.__name__, input_model, task, summary)
        return task

    return register


@dataclass(frozen=True)
class RetryPolicy:
    """When a job of the task is tried again by itself, and how often."""

    on: tuple[str, ...]  # the exception classes that retry, by name
    max_attempts: int | None  # None: no limit
    backoff_seconds: int | None  # the first delay, doubled at each attempt; None: a fixed delay
    backoff_max_seconds: int
    jitter: bool  # each delay drawn at random between 0 and the backoff (full jitter)
    delay_seconds: float  # the fixed delay, without a backoff


@dataclass(frozen=True)
class ExecutionPolicy:
    """How long a job of the task may run, and its retry policy (None: it does not retry by itself)."""

    soft_time_limit_seconds: float | None
    time_limit_seconds: float | None
    retry: RetryPolicy | None


def attempts_allowed(max_retries: int | None) -> int | None:
    """Attempts a job may make, the first included, under Celery's `max_retries` (None: no limit)."""
    return None if max_retries is None else max_retries + 1


def policy_of(task: Task) -> ExecutionPolicy:
    """The policy `task` declared, Celery's settings (task_soft_time_limit, task_time_limit)
    where it declared none. Read from the task as Celery will apply it, so what GET /tasks
    says is what a worker does."""
    conf = task.app.conf
    retry = None
    # The retry options are attributes only of tasks that declare them; Celery reads them
    # with these same defaults (celery/app/autoretry.py), retry_backoff as seconds, True as 1.
    autoretry_for = tuple(getattr(task, "autoretry_for", ()))
    if autoretry_for:
        backoff_option = getattr(task, "retry_backoff", False)
        backoff = int(max(1.0, float(backoff_option))) if backoff_option else None
        retry = RetryPolicy(
            on=tuple(kind.__name__ for kind in autoretry_for),
            max_attempts=attempts_allowed(task.max_retries),
            backoff_seconds=backoff,
            backoff_max_seconds=int(getattr(task, "retry_backoff_max", 600)),
            jitter=bool(getattr(task, "retry_jitter", True)) and backoff is not None,
            delay_seconds=float(task.default_retry_delay),
        )
    return ExecutionPolicy(
        soft_time_limit_seconds=task.soft_time_limit or conf.task_soft_time_limit,
        time_limit_seconds=task.time_limit or conf.task_time_limit,
        retry=retry,
    )


def public_tasks() -> Mapping[str, PublicTask]:
    """Registered tasks by name (a read-only view of the registry)."""
    return MappingProxyType(_REGISTRY)
