"""Prometheus metrics at GET /metrics (prometheus-flask-exporter).

- `flask_http_request_duration_seconds{method,route,status}`: a latency histogram;
  its `_count` is the number of requests by route and status. `route` is the URL
  rule (`/status/<task_id>`), never the raw path, so task ids do not multiply series.
- `flask_http_request_total{method,status}`: requests by status.
- `jobs_submitted_total{task}`: jobs the API published, by task; not failed
  submits, not idempotent replays.
- `jobs_unavailable_responses_total{route}`: 503s (Redis, or for /readyz the
  workers, unavailable), for alerting without parsing status labels.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (prepared by gunicorn.conf.py, see
backend/ops/prometheus_dir.py) makes every worker process write its samples there and
/metrics sum them all. Without it (tests, run.py) each app has a registry of its own.
/metrics asks for the bearer token like every API route, and is not rate-limited.

Cost: about 0.06 ms per request, single-process or multiprocess (GET /healthz in a
loop over the Flask test client, 2 shared cores: 0.31 ms with the exporter, 0.25 ms
without), mostly the histogram's and counter's label lookups.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import cast

from flask import Flask, Request, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter
from prometheus_flask_exporter import PrometheusMetrics

from backend.jobs.registry import public_tasks

UNMATCHED_ROUTE = "<unmatched>"
# Where init_app keeps this app's JobMetrics.
EXTENSION = "job_metrics"


def route(req: Request) -> str:
    """The request's URL rule (its name is the label's name); one value for every unknown path."""
    rule = req.url_rule
    return rule.rule if rule is not None else UNMATCHED_ROUTE


class JobMetrics:
    """The service's own counters, beside the exporter's HTTP metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.submitted = Counter(
            "jobs_submitted_total", "Jobs published by the API, by task name", ["task"], registry=registry
        )
        self.unavailable = Counter(
            "jobs_unavailable_responses_total",
            "503 responses (Redis or workers unavailable), by route",
            ["route"],
            registry=registry,
        )


def job_metrics() -> JobMetrics:
    """This app's counters (init_app made them)."""
    return cast(JobMetrics, current_app.extensions[EXTENSION])


def count_submit(task_name: str) -> None:
    job_metrics().submitted.labels(task=task_name).inc()


def init_app(app: Flask, authenticate: Callable[[], None]) -> None:
    """/metrics for `app`, behind `authenticate` (the API's bearer token check)."""

    def authenticated(view: Callable[[], Response]) -> Callable[[], Response]:
        @functools.wraps(view)
        def metrics_view() -> Response:
            authenticate()  # raises the API's 401 when API_TOKENS is set and the token is wrong
            return view()

        return metrics_view

    # A registry per app: the tests build many apps in one process, and the default
    # registry refuses a second metric of the same name (the exporter would then
    # silently skip every app after the first).
    registry = CollectorRegistry()
    PrometheusMetrics(app, registry=registry, group_by=route, metrics_decorator=authenticated)
    metrics = app.extensions[EXTENSION] = JobMetrics(registry)
    # Every public task's series exists from the start (at 0): rate() and alerts see the first submit.
    for name in public_tasks():
        metrics.submitted.labels(task=name)

    @app.after_request
    def count_unavailable(response: Response) -> Response:
        if response.status_code == 503:
            metrics.unavailable.labels(route=route(request)).inc()
        return response
