"""The registry of public tasks: a Celery task and the pydantic model of its input.

Clients may submit jobs of registered tasks only, by name, with input that validates
against the task's model. Registering is one decorator on the task function; the
registry fills as the task modules are imported (create_app imports TASK_MODULES).
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


def public_tasks() -> Mapping[str, PublicTask]:
    """Registered tasks by name (a read-only view of the registry)."""
    return MappingProxyType(_REGISTRY)
