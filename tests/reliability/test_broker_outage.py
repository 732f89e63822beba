"""A broker outage fails fast, and the service recovers by itself (issue 3, point 1).

Proven against a real gunicorn (submit rate limit on, as in production) and one real
Celery worker, on a Redis of the test's own:

- Redis stopped (connections refused): submits (POST /add, GET /longtask) and status
  lookups (GET /status/<id>) answer a JSON 503 with Retry-After, p95 ≤ 1 s over 20 tries each.
- Redis hung (SIGSTOP: the kernel accepts connections, nothing answers): the same 503
  within 3 s (p95 over 20 tries each); every request returns, so no gunicorn thread stays
  stuck, and /healthz keeps answering fast while those requests are in flight.
- Redis back (restarted on the same port, or resumed): within 5 s a submit over HTTP is
  accepted (202) and every request after it succeeds, and a worker has run a task
  submitted after the return to SUCCESS.
- With the broker on a Redis of its own, only the broker out: submits fail as fast, status
  lookups keep answering, and submits are accepted again as soon as the broker is back.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import redis
import requests

from devtools.redis_server import RedisServer, free_port
from tests.helpers import wait_until
from tests.reliability import figures

AREA = "broker outage"
TRIES = 20
STOPPED_LIMIT_MS = 1000
HUNG_LIMIT_MS = 3000
HEALTHZ_LIMIT_MS = 250
RECOVERY_LIMIT_S = 5.0
# Redis stays down this long before its restart: kombu's own reconnect intervals
# (2, 4, 6 ... s) would then leave the worker idle for ~7 s after Redis is back;
# backend/consumer.py caps them at 1 s. A shorter outage would not tell them apart.
STOPPED_OUTAGE_S = 13
# Requests to Redis routes in flight at once while Redis hangs: a short run, yet no
# more than one gunicorn worker's threads or broker connections (broker_pool_limit,
# 10), so each request measures Redis timeouts, never a wait for a thread or a connection.
HUNG_CONCURRENCY = 10
GUNICORN_THREADS = 16
# A client-side bound far above every target: a stuck request fails the test, not the run.
CLIENT_TIMEOUT_S = 15


@dataclass
class Service:
    """The API's base URL, and one task id it knew before the outage."""

    url: str
    known_task_id: str = ""

    def request(self, method: str, path: str, timeout: float = CLIENT_TIMEOUT_S, **kwargs) -> requests.Response:
        # A new connection per request, as separate clients make: each may reach either gunicorn worker.
        return requests.request(method, self.url + path, timeout=timeout, **kwargs)

    def submits(self) -> dict[str, Callable[[], requests.Response]]:
        return {
            "submit POST /add": lambda: self.request("POST", "/add", json={"x": 1, "y": 2}),
            "submit GET /longtask": lambda: self.request("GET", "/longtask", params={"steps": 1}),
        }

    def status_lookup(self) -> requests.Response:
        return self.request("GET", f"/status/{self.known_task_id}")

    def routes_needing_redis(self) -> dict[str, Callable[[], requests.Response]]:
        return {**self.submits(), "status GET /status/<id>": self.status_lookup}


@pytest.fixture
def start_api(start_gunicorn) -> Callable[..., str]:
    """start_api(redis_url, **env) -> its URL: gunicorn as production runs it, stopped at the
    end of the test. More threads than the default, so hung-Redis requests measure Redis
    timeouts, never a wait for a free thread."""

    def start(redis_url: str, **env: str) -> str:
        _, url = start_gunicorn(
            redis_url,
            GUNICORN_WORKERS="2",
            GUNICORN_THREADS=str(GUNICORN_THREADS),
            # On, as in production (its counter is a submit's first Redis call); too high to answer 429.
            SUBMIT_RATE_LIMIT="10000/second",
            **env,
        )
        return url

    return start


@pytest.fixture
def service(private_redis, start_api, start_worker) -> Service:
    """The API plus one worker on one Redis, proven to work end to end before the outage."""
    url = start_api(private_redis.url)
    # No soft shutdown: this file does not test it, and it would add 8 s to each teardown.
    start_worker(private_redis.url, "outage@localhost", concurrency=1, WORKER_SOFT_SHUTDOWN_TIMEOUT="0")
    service = Service(url)
    warm_up(service)
    service.known_task_id = submit_and_wait_for_success(service)
    return service


@pytest.fixture
def own_broker(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path / "broker", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def service_with_own_broker(private_redis, own_broker, start_api) -> Service:
    """The API with results and records on one Redis and the broker on another (no worker:
    these tests only publish)."""
    service = Service(start_api(private_redis.url, BROKER_URL=own_broker.url))
    warm_up(service)
    response = service.request("POST", "/add", json={"x": 2, "y": 3})
    assert response.status_code == 202, response.text
    service.known_task_id = response.json()["task_id"]
    return service


def warm_up(service: Service) -> None:
    """Concurrent submits, as traffic makes: each gunicorn worker then holds several
    established broker and Redis connections, which an outage leaves stale."""
    with ThreadPoolExecutor(HUNG_CONCURRENCY) as pool:
        responses = list(pool.map(lambda _: service.submits()["submit POST /add"](), range(3 * HUNG_CONCURRENCY)))
    assert {response.status_code for response in responses} == {202}


def submit_and_wait_for_success(service: Service) -> str:
    response = service.request("POST", "/add", json={"x": 2, "y": 3})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    wait_for_success(service, task_id)
    return task_id


def queued_task_ids(broker: RedisServer, kwargs: dict) -> list[str]:
    """Ids of the messages in the broker's queue for `add` with these kwargs."""
    ids = []
    for raw in redis.Redis.from_url(broker.url, socket_timeout=5).lrange("celery", 0, -1):
        message = json.loads(raw)
        _, message_kwargs, _ = json.loads(base64.b64decode(message["body"]))
        if message_kwargs == kwargs:
            ids.append(message["headers"]["id"])
    return ids


def state_of(service: Service, task_id: str) -> str | None:
    response = service.request("GET", f"/status/{task_id}")
    return response.json()["state"] if response.status_code == 200 else None


def timed(call: Callable[[], requests.Response]) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = call()
    return (time.monotonic() - started) * 1000, response


def assert_unavailable(response: requests.Response) -> None:
    """The one answer a client gets while Redis is out: a JSON 503 telling it when to retry."""
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"].isdigit()


def p95_of_unavailable_answers(call: Callable[[], requests.Response], concurrency: int = 1) -> float:
    """p95 latency (ms) of TRIES calls, each of which must be a 503 with Retry-After."""

    def one_try(_) -> float:
        milliseconds, response = timed(call)
        assert_unavailable(response)
        return milliseconds

    with ThreadPoolExecutor(concurrency) as pool:
        return figures.percentile(list(pool.map(one_try, range(TRIES))), 0.95)


class HealthzProbe:
    """Asks /healthz over and over in the background; its latencies (ms) while it ran."""

    def __init__(self, service: Service):
        self.service = service
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                milliseconds, response = timed(lambda: self.service.request("GET", "/healthz"))
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
                continue
            self.latencies.append(milliseconds)
            if response.status_code != 200:
                self.failures.append(f"{response.status_code} {response.text}")
            self._stop.wait(0.05)

    def __enter__(self) -> HealthzProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(CLIENT_TIMEOUT_S)


def first_accepted_submit(service: Service) -> str:
    """Submit over and over until the API accepts one (202); that task's id."""

    def accepted() -> str | None:
        try:
            response = service.request("POST", "/add", json={"x": 40, "y": 2}, timeout=2)
        except requests.RequestException:
            return None
        return response.json()["task_id"] if response.status_code == 202 else None

    return wait_until(accepted, timeout=30, what="a submit to be accepted (202)")


def wait_for_success(service: Service, task_id: str) -> None:
    wait_until(lambda: state_of(service, task_id) == "SUCCESS", timeout=30, what=f"{task_id} to succeed")


def assert_every_request_succeeds(service: Service, rounds: int = 10) -> None:
    """Recovered means recovered for good: no gunicorn worker kept a broken connection."""
    for _ in range(rounds):
        assert service.request("POST", "/add", json={"x": 1, "y": 1}).status_code == 202
        assert service.status_lookup().status_code == 200


class Targets:
    """Records each figure and remembers the missed targets, so one miss does not hide the others."""

    def __init__(self):
        self.missed: list[str] = []

    def at_most(self, name: str, value: float, unit: str, limit: float) -> None:
        met = value <= limit
        figures.record(AREA, name, value, unit, f"≤ {limit:g} {unit}", met)
        if not met:
            self.missed.append(f"{name}: {value:.2f} {unit} > {limit:g} {unit}")


def assert_recovers(service: Service, targets: Targets, back_at: float, after: str) -> None:
    """Within RECOVERY_LIMIT_S of Redis being back, the API accepts a submit and a worker
    runs it; then every request succeeds. Figures for both, then every target checked."""
    task_id = first_accepted_submit(service)
    targets.at_most(f"API accepts a submit after {after}", time.monotonic() - back_at, "s", RECOVERY_LIMIT_S)
    wait_for_success(service, task_id)
    targets.at_most(f"worker ran a task submitted after {after}", time.monotonic() - back_at, "s", RECOVERY_LIMIT_S)
    assert_every_request_succeeds(service)
    assert not targets.missed


def test_with_redis_stopped_requests_fail_fast_and_everything_recovers_after_a_restart(service, private_redis):
    targets = Targets()
    private_redis.stop()
    stopped_at = time.monotonic()

    for name, call in service.routes_needing_redis().items():
        targets.at_most(f"p95 {name}, Redis stopped", p95_of_unavailable_answers(call), "ms", STOPPED_LIMIT_MS)

    time.sleep(max(0.0, stopped_at + STOPPED_OUTAGE_S - time.monotonic()))
    private_redis.start()  # same port and data directory; returns once Redis answers PING
    assert_recovers(service, targets, back_at=time.monotonic(), after="restart")


def test_with_redis_hung_requests_fail_fast_healthz_answers_and_everything_recovers_on_resume(
    service, private_redis
):
    targets = Targets()
    private_redis.pause()
    try:
        with HealthzProbe(service) as healthz:
            for name, call in service.routes_needing_redis().items():
                p95 = p95_of_unavailable_answers(call, concurrency=HUNG_CONCURRENCY)
                targets.at_most(f"p95 {name}, Redis hung", p95, "ms", HUNG_LIMIT_MS)
    finally:
        private_redis.resume()
    back_at = time.monotonic()

    assert healthz.failures == []
    assert len(healthz.latencies) >= 10, "the probe ran throughout the hang"
    targets.at_most("p95 GET /healthz while Redis hung", figures.percentile(healthz.latencies, 0.95), "ms",
                    HEALTHZ_LIMIT_MS)
    assert_recovers(service, targets, back_at, after="resume")


# How each kind of outage begins and ends, and its latency target and concurrency.
BROKER_OUTAGES = {
    "stopped": (RedisServer.stop, RedisServer.start, STOPPED_LIMIT_MS, 1),
    "hung": (RedisServer.pause, RedisServer.resume, HUNG_LIMIT_MS, HUNG_CONCURRENCY),
}


@pytest.mark.parametrize("outage", BROKER_OUTAGES)
def test_with_only_the_broker_out_submits_fail_fast_and_status_lookups_still_answer(
    service_with_own_broker, own_broker, outage
):
    service, targets = service_with_own_broker, Targets()
    begin_outage, end_outage, limit_ms, concurrency = BROKER_OUTAGES[outage]
    retry_key = {"Idempotency-Key": f"outage-{outage}"}
    retried_input = {"x": 7, "y": 7}  # submitted by nothing else in this test
    begin_outage(own_broker)
    try:
        for name, call in service.submits().items():
            p95 = p95_of_unavailable_answers(call, concurrency)
            targets.at_most(f"p95 {name}, only the broker {outage}", p95, "ms", limit_ms)
        assert service.status_lookup().status_code == 200
        # The record's flag is the cancel: no broadcast that would wait for the broker.
        cancel_ms, cancelled = timed(lambda: service.request("POST", f"/status/{service.known_task_id}/cancel"))
        assert cancelled.status_code == 202 and cancelled.json()["state"] == "REVOKED"
        targets.at_most(f"cancel, only the broker {outage}", cancel_ms, "ms", limit_ms)
        assert_unavailable(service.request("POST", "/add", json=retried_input, headers=retry_key))
    finally:
        end_outage(own_broker)
    back_at = time.monotonic()

    # The client retries its failed submit with the same key: the key was not used up.
    retried = service.request("POST", "/add", json=retried_input, headers=retry_key)
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    queued = queued_task_ids(own_broker, retried_input)
    assert retried.json()["task_id"] in queued
    if outage == "stopped":
        assert len(queued) == 1  # a refused publish sent nothing
    # A hung broker may receive the failed attempt's message when it resumes (README: Reliability).

    first_accepted_submit(service)
    targets.at_most(f"API accepts a submit after the broker {outage}", time.monotonic() - back_at, "s",
                    RECOVERY_LIMIT_S)
    assert_every_request_succeeds(service)
    assert not targets.missed
