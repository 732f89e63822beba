"""GET /jobs against a retained history: jobs seeded into a Redis of its own
(bench/seed.py), first pages and deep pages timed with every filter.

Server time is the time the API's WSGI application takes for one request (Flask, the
query's validation, the index's page script in Redis, each job's status, the JSON): it
is measured around `app.wsgi_app` while the Flask test client sends the request, in this
process, so neither HTTP, gunicorn nor the client counts. The app is the product's
factory with the bench's settings, on a private redis-server started for this phase
without an append-only file: a listing writes nothing, and the file of a million jobs
would only cost disk and a rewrite's fork while seeding. How long the page script runs
inside Redis is read from Redis' own command statistics, in a pass of its own.

Every case is asked in turn, round after round, so each sees the same machine.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis

from backend.api.auth import ANONYMOUS
from backend.jobs import states
from backend.jobs.index import (
    INDEX_SETS,
    TASK_INDEX_PREFIX,
    TASK_INDEX_SETS,
    index_key,
    parse_index_key,
    parse_task_index_key,
)
from backend.jobs.records import KEY_PREFIX
from bench.measure import CpuMeter
from bench.seed import OWNERS, RESULT_PREFIX, JobSeeder
from bench.stack import server_name
from devtools.redis_server import RedisServer, free_port

# The page a UI reaches by following `next_cursor`: page 50 of 50 jobs is 2,450 jobs in.
DEEP_PAGE = 50
# Targets of issue 12: the first page's p99 with the most jobs seeded.
SINGLE_FILTER_P99_MS = 10.0
COMBINED_FILTERS_P99_MS = 50.0
# Requests per case in the pass that reads the page script's time from Redis' statistics.
REDIS_TIME_REQUESTS = 20


@dataclass(frozen=True)
class Case:
    """One listing: its filters, as GET /jobs takes them (None: any)."""

    label: str
    state: str | None = None
    name: str | None = None
    owner: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def combination(self) -> bool:
        return sum(value is not None for value in (self.state, self.name, self.owner, self.since or self.until)) > 1

    def query(self, cursor: str | None = None) -> str:
        params = {key: value for key, value in (("state", self.state), ("name", self.name), ("owner", self.owner))
                  if value is not None}
        for key, moment in (("since", self.since), ("until", self.until)):
            if moment is not None:
                params[key] = datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if cursor:
            params["cursor"] = cursor
        return "/jobs" + ("?" + urlencode(params) if params else "")

    def selects(self, key: str) -> bool:
        """Whether the index set `key` is one the page script reads for this listing: a set by
        owner when the listing names one, else a set by task (backend/jobs/index.py)."""
        if key.startswith(TASK_INDEX_PREFIX):
            if self.owner is not None:
                return False
            (state, name), owner = parse_task_index_key(key), None
        else:
            if self.owner is None:
                return False
            state, name, owner = parse_index_key(key)
        return ((self.state is None or state == self.state) and (self.name is None or name == self.name)
                and (self.owner is None or owner == self.owner))


def cases(now: float, window: float) -> list[Case]:
    """No filter, each single filter, and two combinations (one set; several sets in a time range)."""
    client = next(owner for owner in OWNERS if owner.startswith("token-"))
    hour = 3600.0 * window / 86400.0  # an hour of a day-long window (the retention window)
    return [
        Case("no filter"),
        Case("state=FAILURE", state=states.FAILURE),
        Case("name=long_task", name="long_task"),
        Case("owner=<an API client>", owner=client),
        Case("since (the last 3 h)", since=now - 3 * hour),
        Case("until (older than 12 h)", until=now - 12 * hour),
        Case("state+name+owner", state=states.SUCCESS, name="add", owner="anonymous"),
        Case("state+name+since+until (18 h to 6 h ago)", state=states.SUCCESS, name="send_email",
             since=now - 18 * hour, until=now - 6 * hour),
    ]


class ServerTimer:
    """Wraps an app's WSGI callable: `last` is the server time of the last request (s)."""

    def __init__(self, app: Any) -> None:
        self.inner = app.wsgi_app
        app.wsgi_app = self
        self.last = math.nan

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        began = time.perf_counter()
        iterable = self.inner(environ, start_response)
        try:
            body = b"".join(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        self.last = time.perf_counter() - began
        return [body]


@dataclass(frozen=True)
class Settings:
    scales: tuple[int, ...]  # jobs retained, in increasing order (each seed adds to the last)
    repetitions: int  # timed requests per case and page
    warmup: int  # untimed rounds first
    ttl_seconds: int  # the retention window (RESULT_EXPIRES)


class Listing:
    """One case's first page and deep page, against the app."""

    def __init__(self, client: Any, timer: ServerTimer, case: Case) -> None:
        self.client, self.timer, self.case = client, timer, case
        first = self._get(case.query())
        self.matched = sum(first["counts"].values())
        # Follow next_cursor to page DEEP_PAGE (or the last page, if there are fewer).
        self.depth, cursor, deep_cursor = 1, first["next_cursor"], None
        while cursor and self.depth < DEEP_PAGE:
            deep_cursor, cursor = cursor, self._get(case.query(cursor))["next_cursor"]
            self.depth += 1
        self.deep_query = case.query(deep_cursor)
        self.first_samples: list[float] = []
        self.deep_samples: list[float] = []

    def _get(self, path: str) -> dict:
        response = self.client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.get_data(as_text=True)[:500]}")
        return response.get_json()

    def time(self, path: str) -> float:
        response = self.client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
        return self.timer.last


def redis_script_ms(client: redis.Redis, request: Callable[[], object], count: int) -> float:
    """Mean time (ms) Redis spent in scripts per request, over `count` requests."""
    client.config_resetstat()
    for _ in range(count):
        request()
    stats = client.info("commandstats")
    scripts = [value for key, value in stats.items() if key in ("cmdstat_evalsha", "cmdstat_eval")]
    return sum(value["usec"] for value in scripts) / 1000.0 / count


def measure_scale(app: Any, client: redis.Redis, now: float, settings: Settings,
                  summary: Callable[[list[float]], dict], log: Callable[[str], None]) -> dict:
    """Every case against the jobs seeded so far."""
    timer = ServerTimer(app)
    index_keys = sorted(key.decode() for key in client.smembers(INDEX_SETS) | client.smembers(TASK_INDEX_SETS))
    with app.test_client() as http:
        listings = [Listing(http, timer, case) for case in cases(now, settings.ttl_seconds)]
        meter = CpuMeter({})
        meter.start(probe=False)
        for round_number in range(settings.warmup + settings.repetitions):
            keep = round_number >= settings.warmup
            for listing in listings:
                first, deep = listing.time(listing.case.query()), listing.time(listing.deep_query)
                if keep:
                    listing.first_samples.append(first)
                    listing.deep_samples.append(deep)
        load = meter.stop(probe=False)
        log(f"  the page script's time in Redis, {REDIS_TIME_REQUESTS} requests per page")
        results = {}
        for listing in listings:
            first_redis = redis_script_ms(client, lambda listing=listing: http.get(listing.case.query()),
                                          REDIS_TIME_REQUESTS)
            deep_redis = redis_script_ms(client, lambda listing=listing: http.get(listing.deep_query),
                                         REDIS_TIME_REQUESTS)
            results[listing.case.label] = {
                "query": listing.case.query(),
                "combination": listing.case.combination,
                "matched": listing.matched,
                "index_sets": sum(1 for key in index_keys if listing.case.selects(key)),
                "first_ms": summary(listing.first_samples) | {"redis_ms": first_redis},
                "deep_page": listing.depth,
                "deep_ms": summary(listing.deep_samples) | {"redis_ms": deep_redis},
            }
    app.wsgi_app = timer.inner
    # Other processes' CPU while the pages were timed: a shared machine's p99 is theirs as much as ours.
    return {"index_sets": len(index_keys), "cases": results,
            "other_load_cores": load["other_cores"], "steal_cores": load["steal_cores"]}


def run(make_app: Callable[[str], Any], celery_of: Callable[[Any], Any], workdir: Path, settings: Settings,
        summary: Callable[[list[float]], dict], log: Callable[[str], None]) -> dict:
    """Seed each scale in turn into a private Redis and time every case against it.

    `make_app(redis_url)` builds the API on that Redis; `celery_of(app)` is its Celery app.
    """
    server = RedisServer(free_port(), workdir / "redis-history", appendonly=False)
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0"
    client = redis.Redis.from_url(url)
    try:
        app = make_app(url)
        now = time.time()
        seeder = JobSeeder(url, celery_of(app), settings.ttl_seconds, now=now)
        memory_before = client.info("memory")["used_memory"]
        scales = []
        for jobs in settings.scales:
            log(f"GET /jobs: seeding {jobs - seeder.seeded.jobs:,} jobs (to {jobs:,}) into a Redis of its own")
            seeded = seeder.seed(jobs - seeder.seeded.jobs)
            seeder.check()
            log(f"  seeded {seeded.jobs:,} jobs in {seeded.seconds:.1f} s; timing {len(cases(now, 1))} listings × "
                f"first page and page {DEEP_PAGE}, {settings.repetitions} requests each")
            used = client.info("memory")["used_memory"]
            scale = {"jobs": seeded.jobs, "seed_seconds": seeded.seconds, "by_state": dict(seeded.by_state),
                     "seeded_bytes_per_job": (used - memory_before) / seeded.jobs}
            scales.append(scale | measure_scale(app, client, now, settings, summary, log))
        example = seeded_example(client)
        info = client.info("server") | client.info("memory")
    finally:
        client.close()
        server.stop()
    return {
        "scales": scales,
        "repetitions": settings.repetitions,
        "retention_window_s": settings.ttl_seconds,
        "redis": f"{server_name(info)} ({info.get('mem_allocator', '?')}), no append-only file",
        "example": example,
        "method": "server time: the API's WSGI app per request, in-process through the Flask test client "
                  "(no HTTP, no gunicorn); redis_ms: the page script's time inside Redis (INFO commandstats)",
    }


def seeded_example(client: redis.Redis) -> dict:
    """The field names of a seeded finished add job's record and result, in their order: the
    smoke test holds them against a real job's (bench/retention.py)."""
    key = index_key(states.SUCCESS, "add", ANONYMOUS)
    job_id = client.zrange(key, 0, 0)[0].decode()
    record = client.hgetall(KEY_PREFIX + job_id)
    meta = json.loads(client.get(RESULT_PREFIX + job_id) or b"{}")
    return {"record_fields": [field.decode() for field in record], "meta_keys": list(meta)}


def targets(history: dict) -> list[dict]:
    """First page p99 at the largest scale: ≤ 10 ms with no or one filter, ≤ 50 ms combined."""
    largest = history["scales"][-1]
    rows = []
    for label, case in largest["cases"].items():
        goal = COMBINED_FILTERS_P99_MS if case["combination"] else SINGLE_FILTER_P99_MS
        rows.append({"name": f"GET /jobs first page p99 ms, {largest['jobs']:,} jobs, {label}",
                     "measured": case["first_ms"]["p99"], "target": goal, "op": "<="})
    return rows
