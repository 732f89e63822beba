"""The objects the factory shares with every request, job and command of an app,
kept in `app.extensions` and reached through these typed accessors (inside an app
context), never through string keys spread over the modules.

Celery sits under "celery", where Flask's own Celery guide puts it; the job
service's objects sit together under "jobs". Operations keep theirs in their own
modules, each with its own accessor (backend.ops.health, backend.ops.metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from flask import Flask, current_app

if TYPE_CHECKING:
    from celery import Celery

    from backend.jobs.index import JobIndex
    from backend.jobs.queues import QueueStats
    from backend.jobs.records import JobRecords
    from backend.jobs.waiting import WaitingSlots
    from backend.jobs.watch import Subscriptions

CELERY = "celery"
JOBS = "jobs"


@dataclass(frozen=True)
class Services:
    """What create_app builds once per app for the job service."""

    records: JobRecords
    index: JobIndex
    subscriptions: Subscriptions
    waiting_slots: WaitingSlots
    queues: QueueStats


def init_app(app: Flask, services: Services) -> None:
    app.extensions[JOBS] = services


def services(app: Flask | None = None) -> Services:
    return cast("Services", (app or current_app).extensions[JOBS])


def celery_app(app: Flask | None = None) -> Celery:
    return cast("Celery", (app or current_app).extensions[CELERY])


def job_records() -> JobRecords:
    return services().records


def subscriptions() -> Subscriptions:
    return services().subscriptions


def job_index() -> JobIndex:
    return services().index


def waiting_slots() -> WaitingSlots:
    return services().waiting_slots


def queue_stats() -> QueueStats:
    return services().queues
