"""Redis at its memory limit (issue 14, point 1): a clean 503 and a pause, never a crash.

The broker runs `maxmemory-policy noeviction`, as a broker must: at maxmemory Redis
refuses every write that may add data. Proven with a real gunicorn (rate limit on, as in
production) and two real workers, on a Redis of the test's own:

- maxmemory set just above the memory in use, then submits over HTTP until Redis is full
  and for a while after, longer than a visibility timeout, while the workers run jobs:
  no answer but 202 or a JSON 503 `redis_full` with Retry-After (no other 5xx), reads
  (GET /status, GET /jobs) answer 200, /readyz says Redis is full, every worker stays up;
- maxmemory raised: within 5 s the API accepts a submit and the paused workers store
  what they waited to store; every job that got a 202 ends SUCCESS, none lost, none
  started twice (the record's delivery count).
- a job whose result cannot be stored: it waits in its worker, held and leased, longer
  than the visibility timeout, then ends SUCCESS once, when memory frees; if that worker
  dies meanwhile, the job runs again on another one (at least once, as any job whose
  worker dies mid-run).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import redis
import requests

from backend.jobs.errors import REDIS_FULL_MESSAGE
from backend.jobs.states import FINAL_STATES
from tests.helpers import Process, wait_until
from tests.reliability import figures
from tests.reliability.jobs import kill_worker

AREA = "redis full"
# Short, so Redis stays full for longer than a lease: one that lapsed meanwhile would
# hand a job its worker still holds to another worker once memory frees.
VISIBILITY_TIMEOUT_S = 10
WORKER_ENV = {"BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT_S), "WORKER_SOFT_SHUTDOWN_TIMEOUT": "0"}
# Bytes of room left above the memory in use when the limit is set: a few hundred jobs.
ROOM_BYTES = 1024 * 1024
# Seconds Redis stays full while clients keep submitting: longer than a lease.
FULL_FOR_S = VISIBILITY_TIMEOUT_S + 5
SUBMITTERS = 4
RECOVERY_LIMIT_S = 5.0
DRAIN_LIMIT_S = 60.0
CLIENT_TIMEOUT_S = 15


@dataclass
class Submissions:
    """What the submitting clients got: status codes, error codes, accepted job ids."""

    statuses: Counter[int] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)
    bad_503s: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, response: requests.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                self.accepted.append(response.json()["task_id"])
            elif response.status_code >= 400:
                self.error_codes[response.json()["error"]["code"]] += 1
            if response.status_code == 503 and not response.headers.get("Retry-After", "").isdigit():
                self.bad_503s.append(response.text)

    def other_5xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500 and status != 503)


class Submitter:
    """Clients submitting jobs over HTTP in the background, a short job and a long one in turn."""

    def __init__(self, url: str, submissions: Submissions, threads: int = SUBMITTERS, pause: float = 0.0):
        self.url = url
        self.submissions = submissions
        self.pause = pause
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, n: int) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1
            if count % 2:
                call = ("POST", "/add", {"x": n, "y": count})
            else:  # reports PROGRESS after each step: a write in the middle of the job
                call = ("POST", "/longtask", {"steps": 2, "step_seconds": 0.05})
            method, path, body = call
            try:
                response = requests.request(method, self.url + path, json=body, timeout=CLIENT_TIMEOUT_S)
            except requests.RequestException as exc:
                with self.submissions.lock:
                    self.submissions.transport_errors[type(exc).__name__] += 1
                continue
            self.submissions.add(response)
            self._stop.wait(self.pause)

    def __enter__(self) -> Submitter:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_S + 5)


class Targets:
    """Records each figure and remembers the missed targets, so one miss does not hide the others."""

    def __init__(self):
        self.missed: list[str] = []

    def record(self, name: str, value: float, unit: str, target: str, met: bool) -> None:
        figures.record(AREA, name, value, unit, target, met)
        if not met:
            self.missed.append(f"{name}: {value:g} {unit} (target {target})")

    def exactly(self, name: str, value: float, expected: float) -> None:
        self.record(name, value, "", f"{expected:g}", value == expected)

    def at_most(self, name: str, value: float, unit: str, limit: float) -> None:
        self.record(name, value, unit, f"≤ {limit:g} {unit}", value <= limit)


@pytest.fixture
def api_url(private_redis, start_gunicorn) -> str:
    _, url = start_gunicorn(
        private_redis.url,
        GUNICORN_WORKERS="2",
        # On, as in production (its count is a submit's first Redis write); too high to answer 429.
        SUBMIT_RATE_LIMIT="10000/second",
    )
    return url


@pytest.fixture
def redis_client(private_redis) -> redis.Redis:
    return redis.Redis.from_url(private_redis.url, socket_timeout=5, decode_responses=True)


def fill_to_maxmemory(redis_client: redis.Redis) -> None:
    used = int(redis_client.info("memory")["used_memory"])
    redis_client.config_set("maxmemory", used + ROOM_BYTES)


def free_memory(redis_client: redis.Redis) -> float:
    """No memory limit any more; returns the moment (time.monotonic())."""
    redis_client.config_set("maxmemory", 0)
    return time.monotonic()


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=CLIENT_TIMEOUT_S)


def state_of(url: str, job_id: str) -> str:
    return str(get(f"{url}/status/{job_id}").json()["state"])


def succeeded(url: str) -> int:
    return int(get(f"{url}/jobs/stats").json()["counts"]["SUCCESS"])


def deliveries(redis_client: redis.Redis, job_id: str) -> int:
    """How many times a worker started the job (its record's count, kept by the start script)."""
    return int(redis_client.hget(f"job:{job_id}", "deliveries") or 0)


def assert_reads_answer_and_not_ready(url: str, job_id: str) -> bool:
    """Reads answer 200 and /readyz 503; True when it says Redis is full. Redis hovers at its
    limit (each acknowledgement frees a little, and the next write takes it), so a moment
    below it shows as the workers' ping refused instead."""
    assert get(f"{url}/status/{job_id}").status_code == 200
    assert get(f"{url}/jobs").status_code == 200
    readyz = get(f"{url}/readyz")
    assert readyz.status_code == 503
    return bool(readyz.json()["redis"].get("error") == REDIS_FULL_MESSAGE)


def first_accepted_submit(url: str) -> str:
    def accepted() -> str | None:
        response = requests.post(f"{url}/add", json={"x": 40, "y": 2}, timeout=CLIENT_TIMEOUT_S)
        return response.json()["task_id"] if response.status_code == 202 else None

    return str(wait_until(accepted, timeout=30, what="a submit to be accepted (202)"))


def test_a_full_redis_is_a_503_and_a_pause_and_every_accepted_job_ends_once(
    api_url, start_workers, redis_client
):
    targets = Targets()
    workers: list[Process] = [start_workers(f"full-{n}", concurrency=2, **WORKER_ENV) for n in range(2)]
    # Every client connected first (each connection's buffers count as used memory).
    with Submitter(api_url, warm_up := Submissions()):
        wait_until(lambda: len(warm_up.accepted) >= 4 * SUBMITTERS, timeout=30, what="warm-up submits")
    submissions = Submissions()
    fill_to_maxmemory(redis_client)

    with Submitter(api_url, submissions):
        wait_until(lambda: submissions.error_codes["redis_full"], timeout=60, what="Redis to be full")
        full_at = time.monotonic()
        said_full = 0
        while time.monotonic() - full_at < FULL_FOR_S:
            said_full += assert_reads_answer_and_not_ready(api_url, submissions.accepted[-1])
            assert all(worker.alive() for worker in workers)
            time.sleep(1)
    assert said_full, "/readyz never said Redis is full"
    done_before_free = succeeded(api_url)
    freed_at = free_memory(redis_client)

    first_accepted_submit(api_url)
    targets.at_most("API accepts a submit after memory freed", time.monotonic() - freed_at, "s", RECOVERY_LIMIT_S)
    wait_until(lambda: succeeded(api_url) > done_before_free, timeout=30, what="a paused job to end")
    targets.at_most("paused workers store a result after memory freed", time.monotonic() - freed_at, "s",
                    RECOVERY_LIMIT_S)
    accepted = list(submissions.accepted)
    ended = {}
    deadline = time.monotonic() + DRAIN_LIMIT_S
    for job_id in accepted:
        wait_until(lambda job=job_id: state_of(api_url, job) in FINAL_STATES, max(0.1, deadline - time.monotonic()),
                   interval=0.2, what=f"{job_id} to end")
        ended[job_id] = state_of(api_url, job_id)
    drained_s = time.monotonic() - freed_at
    started_twice = sum(deliveries(redis_client, job_id) > 1 for job_id in accepted)
    alive = sum(worker.alive() for worker in workers)

    targets.record("submits answered while filling and full", submissions.statuses.total(), "", "—", True)
    targets.record("submits accepted (202)", len(accepted), "", "—", True)
    targets.record("submits refused: 503 redis_full", submissions.error_codes["redis_full"], "", "> 0",
                   submissions.error_codes["redis_full"] > 0)
    targets.exactly("5xx other than 503", submissions.other_5xx(), 0)
    targets.exactly("503 without Retry-After", len(submissions.bad_503s), 0)
    targets.exactly("transport errors", submissions.transport_errors.total(), 0)
    targets.record("Redis full for", FULL_FOR_S, "s", f"> visibility timeout {VISIBILITY_TIMEOUT_S} s", True)
    targets.exactly("workers alive (of 2)", alive, 2)
    targets.exactly("accepted jobs lost (not SUCCESS)", sum(state != "SUCCESS" for state in ended.values()), 0)
    targets.exactly("accepted jobs started twice", started_twice, 0)
    targets.at_most("every accepted job ended after memory freed", drained_s, "s", DRAIN_LIMIT_S)
    assert not targets.missed, targets.missed
    assert set(submissions.statuses) <= {202, 503}, submissions.statuses
    assert set(submissions.error_codes) <= {"redis_full"}, submissions.error_codes


def test_a_job_whose_result_cannot_be_stored_waits_in_its_worker_then_ends_once(
    jobs, start_workers, redis_client
):
    worker = start_workers("store", **WORKER_ENV)
    job_id = jobs.submit("tests.sleep", seconds=1)
    jobs.running_pid(job_id)
    redis_client.config_set("maxmemory", 1)  # full: it ends meanwhile, its SUCCESS is refused

    # Longer than a lease: the message stays with its worker, renewed, never requeued.
    time.sleep(1 + VISIBILITY_TIMEOUT_S + 2)
    assert jobs.status(job_id)["state"] == "STARTED"
    assert worker.alive()
    assert jobs.queue_length() == 0
    [(tag, leased_at)] = jobs.redis.zrange("unacked_index", 0, -1, withscores=True)
    assert time.time() - leased_at < VISIBILITY_TIMEOUT_S
    freed_at = free_memory(redis_client)

    jobs.wait_for(job_id, {"SUCCESS"}, timeout=RECOVERY_LIMIT_S)
    stored_after = time.monotonic() - freed_at
    assert jobs.executions(job_id) == 1 and deliveries(redis_client, job_id) == 1
    wait_until(lambda: jobs.redis.zcard("unacked_index") == 0, timeout=5, what="the message to be acknowledged")
    figures.record(AREA, "result refused for 13 s: stored after memory freed", stored_after, "s",
                   f"≤ {RECOVERY_LIMIT_S:g} s", stored_after <= RECOVERY_LIMIT_S)
    figures.record(AREA, "result refused for 13 s: runs of the job", jobs.executions(job_id), "", "exactly 1",
                   jobs.executions(job_id) == 1)


def test_a_job_whose_worker_dies_while_it_waits_to_store_its_result_runs_again(
    jobs, start_workers, redis_client
):
    first = start_workers("dies-waiting", **WORKER_ENV)
    job_id = jobs.submit("tests.sleep", seconds=1)
    jobs.running_pid(job_id)
    redis_client.config_set("maxmemory", 1)
    time.sleep(2)  # it ended; its SUCCESS waits in the worker
    kill_worker(first)
    free_memory(redis_client)
    start_workers("takes-over", **WORKER_ENV)

    # Its message was never acknowledged: back on the queue one visibility timeout later.
    jobs.wait_for(job_id, {"SUCCESS"}, timeout=VISIBILITY_TIMEOUT_S + 20)
    assert jobs.executions(job_id) == 2
    assert jobs.ran_on(job_id) == ["dies-waiting@localhost", "takes-over@localhost"]
    figures.record(AREA, "worker killed while its result waited: runs", jobs.executions(job_id), "",
                   "2 (at least once)", True)
