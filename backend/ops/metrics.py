"""Prometheus metrics at GET /metrics (prometheus-flask-exporter, and a collector of ours).

- `flask_http_request_duration_seconds{method,route,status}`: a latency histogram;
  its `_count` is the number of requests by route and status. `route` is the URL
  rule (`/status/<task_id>`), never the raw path, so task ids do not multiply series.
- `flask_http_request_total{method,status}`: requests by status.
- `jobs_submitted_total{task}`: jobs the API published, by task; not failed
  submits, not idempotent replays.
- `jobs_unavailable_responses_total{route}`: 503s (Redis, or for /readyz the
  workers, unavailable), for alerting without parsing status labels.
- `jobs{state,task}`: the jobs the job index holds, by state and task name, read
  from Redis when Prometheus scrapes (JobIndexCollector).
- `jobs_index_up`: 1 when this scrape read the job index, 0 when Redis did not answer.
- `queue_ready_jobs{queue}`, `queue_scheduled_jobs{queue}`, `queue_running_jobs{queue}`,
  `queue_oldest_ready_age_seconds{queue}` (queue latency: what to autoscale workers on,
  docs/autoscaling.md), and `queues_up`: read from the broker at each scrape
  (QueueCollector, backend/jobs/queues.py).

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (prepared by gunicorn.conf.py, see
backend/ops/prometheus_dir.py) makes every worker process write its samples there and
/metrics sum them all. Without it (tests, run.py) each app has a registry of its own.
Either way each scrape builds the registry it exposes (scrape_registry), with the job
index's gauges read once, by the process that answers. /metrics asks for an admin's
bearer token (403 for another client's), and is not rate-limited.

Cost: about 0.06 ms per request, single-process or multiprocess (GET /healthz in a
loop over the Flask test client, 2 shared cores: 0.31 ms with the exporter, 0.25 ms
without), mostly the histogram's and counter's label lookups.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from itertools import product
from typing import cast

import redis
from flask import Flask, Request, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import PrometheusMetrics

from backend.jobs import extensions, states
from backend.jobs.registry import public_tasks
from backend.ops import prometheus_dir

log = logging.getLogger(__name__)

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


class JobIndexCollector:
    """`jobs{state,task}` and `jobs_index_up`, read from the job index at each scrape.

    A collector, not a Gauge kept up to date: under gunicorn a Gauge is a file per
    worker process, and no process sees every state change (workers make most of
    them). JobIndex.sizes() costs one ZCARD per index set, a few dozen however many
    jobs there are. When Redis does not answer within its timeouts (REDIS_SOCKET_TIMEOUT),
    the scrape still answers: without `jobs`, with `jobs_index_up` 0.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        # The names, so that a scrape restricted to other names (`name[]=`) skips Redis.
        return [_jobs_family(), _up_family()]

    def collect(self) -> Iterator[Metric]:
        up = _up_family()
        try:
            sizes = extensions.services(self.app).index.sizes()
        except redis.RedisError as exc:
            log.warning("/metrics could not read the job index: %r", exc)
            up.add_metric([], 0)
            yield up
            return
        jobs = _jobs_family()
        # Every public task's series exists, at 0 when no job is in that state: alerts see the first one.
        counts = dict.fromkeys(product(states.ALL_STATES, public_tasks()), 0) | sizes
        for (state, task), count in sorted(counts.items()):
            jobs.add_metric([state, task], count)
        up.add_metric([], 1)
        yield jobs
        yield up


class QueueCollector:
    """Each queue's figures (backend/jobs/queues.py), read at each scrape: a few O(1) and
    O(log n) commands per queue. When Redis does not answer, `queues_up` is 0."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return [*_queue_families().values(), _queues_up_family()]

    def collect(self) -> Iterator[Metric]:
        up = _queues_up_family()
        try:
            figures = extensions.services(self.app).queues.figures()
        except redis.RedisError as exc:
            log.warning("/metrics could not read the queues: %r", exc)
            up.add_metric([], 0)
            yield up
            return
        families = _queue_families()
        for queue in figures:
            families["ready"].add_metric([queue.name], queue.ready)
            families["scheduled"].add_metric([queue.name], queue.scheduled)
            families["running"].add_metric([queue.name], queue.running)
            # An empty queue has waited 0 s: a scaler reads a number, never a gap.
            families["age"].add_metric([queue.name], queue.oldest_ready_age_seconds or 0.0)
        up.add_metric([], 1)
        yield from families.values()
        yield up


def _queue_families() -> dict[str, GaugeMetricFamily]:
    return {
        "ready": GaugeMetricFamily("queue_ready_jobs", "Jobs waiting in the queue for a worker", labels=["queue"]),
        "scheduled": GaugeMetricFamily(
            "queue_scheduled_jobs", "Jobs of the queue waiting in the schedule for their time", labels=["queue"]
        ),
        "running": GaugeMetricFamily(
            "queue_running_jobs", "Jobs of the queue a worker holds: reserved or running, not acknowledged",
            labels=["queue"],
        ),
        "age": GaugeMetricFamily(
            "queue_oldest_ready_age_seconds",
            "How long the oldest job waiting in the queue has waited (queue latency); 0 when none waits",
            labels=["queue"],
        ),
    }


def _queues_up_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("queues_up", "1 if this scrape read the queues from Redis, 0 if it could not")


def _jobs_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "jobs",
        "Jobs the job index holds (submitted within RESULT_EXPIRES), by state and task name",
        labels=["state", "task"],
    )


def _up_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "jobs_index_up", "1 if this scrape read the job index from Redis, 0 if it could not (Redis down or slow)"
    )


def scrape_registry(
    app_registry: CollectorRegistry, job_index: JobIndexCollector, queues: QueueCollector
) -> CollectorRegistry:
    """What one scrape exposes: the counters and histograms, and the gauges of the job index
    and the queues."""
    registry = CollectorRegistry()
    if os.environ.get(prometheus_dir.ENV):
        # Every gunicorn worker's samples, summed from their files; this process's are there too.
        MultiProcessCollector(registry)
    else:
        registry.register(app_registry)
    # Registered here, on the registry of this scrape only: read once per scrape, not
    # once per gunicorn worker, and never written to the multiprocess files.
    registry.register(job_index)
    registry.register(queues)
    return registry


def job_metrics() -> JobMetrics:
    """This app's counters (init_app made them)."""
    return cast(JobMetrics, current_app.extensions[EXTENSION])


def count_submit(task_name: str) -> None:
    job_metrics().submitted.labels(task=task_name).inc()


def init_app(app: Flask, authenticate: Callable[[], None]) -> None:
    """/metrics for `app`, behind `authenticate` (the API's check of an admin's bearer token)."""
    # A registry per app: the tests build many apps in one process, and the default
    # registry refuses a second metric of the same name (the exporter would then
    # silently skip every app after the first).
    registry = CollectorRegistry()
    # path=None: /metrics is ours (below), for the exporter builds a registry of its own
    # per scrape under gunicorn, where no collector of ours could be added.
    exporter = PrometheusMetrics(app, path=None, registry=registry, group_by=route)
    metrics = app.extensions[EXTENSION] = JobMetrics(registry)
    # Every public task's series exists from the start (at 0): rate() and alerts see the first submit.
    for name in public_tasks():
        metrics.submitted.labels(task=name)
    job_index, queues = JobIndexCollector(app), QueueCollector(app)

    def scrape() -> Response:
        exposed = scrape_registry(registry, job_index, queues)
        names = request.args.getlist("name[]")
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(exposed.restricted_registry(names) if names else exposed), content_type=content_type)

    # Not counted in the HTTP metrics (a 401 still is: authenticate runs first).
    untracked_scrape = cast(Callable[[], Response], exporter.do_not_track()(scrape))

    def prometheus_metrics() -> Response:
        authenticate()  # raises the API's 401 for a wrong token, 403 for a client that is not admin
        return untracked_scrape()

    app.add_url_rule("/metrics", view_func=prometheus_metrics)

    @app.after_request
    def count_unavailable(response: Response) -> Response:
        if response.status_code == 503:
            metrics.unavailable.labels(route=route(request)).inc()
        return response
