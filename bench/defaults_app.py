"""Celery with its defaults, for the worker-throughput comparison: the same `noop`
task on an app whose configuration is only the broker, the result backend and JSON.

No late acks, prefetch multiplier 4, no events, no STARTED state, no JobTask base
(no task record, no start script), no lease renewal, Celery's own consumer. The
benchmark runs its worker on a Redis database of its own:

    REDIS_URL=redis://127.0.0.1:6379/2 celery -A bench.defaults_app worker --concurrency 2
"""

from __future__ import annotations

import os

from celery import Celery

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/2"


def make_app(redis_url: str) -> Celery:
    app = Celery("bench_defaults", set_as_current=False)
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        # Celery's defaults already, spelled out: the one setting both sides must share.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
    )

    # shared=False: the task belongs to this app only, never to our app in the same process.
    @app.task(name="noop", shared=False)
    def noop() -> None:
        """Do nothing."""

    return app


# The `celery -A bench.defaults_app` entry point; building it opens no connection.
app = make_app(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
