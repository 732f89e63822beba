"""Running limits across the cluster (backend/taskqueue/running_limits.py), on real workers:

- one client's backlog does not hold up another client: with CLIENT_MAX_RUNNING=1 on two
  workers, a client that submits 1,000 jobs runs them one at a time, and a second
  client's 10 jobs, submitted after them, end while the first's backlog barely moves;
  every job runs exactly once;
- a task's own `max_running` holds for jobs sent by code, whoever sends them;
- a client's own `max_running` in the clients file overrides CLIENT_MAX_RUNNING;
- the slot of a worker killed mid-job frees within the visibility timeout, and the job
  parked behind it then runs.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from backend.jobs.callers import Role
from backend.ops.clients import ClientsFile
from backend.taskqueue.running_limits import PARKED, PROMOTE_SECONDS, WAITING_LINES
from tests.helpers import wait_until
from tests.reliability import figures
from tests.reliability.jobs import Jobs, kill_worker

AREA = "running limits"
VISIBILITY_TIMEOUT = 4  # short, so the test does not wait the shipped 60 s
SHORT_VISIBILITY = {"BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT), "WORKER_SOFT_SHUTDOWN_TIMEOUT": "1"}
# "A few": how many of the first client's jobs may end while the second client's 10 run.
MOST_MOVED = 10


@pytest.fixture
def clients_file(tmp_path):
    return ClientsFile(tmp_path / "clients.json")


def _token(clients: ClientsFile, name: str, max_running: int | None = None) -> dict[str, str]:
    _, token = clients.add(name, Role.SUBMIT, max_running=max_running)
    return {"Authorization": f"Bearer {token}"}


def _submit(jobs: Jobs, headers: dict[str, str], count: int, step_seconds: float) -> list[str]:
    body = {"steps": 1, "step_seconds": step_seconds}
    return [jobs.client.post("/longtask", json=body, headers=headers).get_json()["task_id"] for _ in range(count)]


def _ended(jobs: Jobs, headers: dict[str, str]) -> int:
    counts = jobs.client.get("/jobs/stats", headers=headers).get_json()["counts"]
    return sum(counts.get(state, 0) for state in ("SUCCESS", "FAILURE", "REVOKED"))


def _intervals(jobs: Jobs, headers: dict[str, str], job_ids: list[str]) -> list[tuple[datetime, datetime]]:
    spans = []
    for job_id in job_ids:
        status = jobs.client.get(f"/status/{job_id}", headers=headers).get_json()
        assert status["state"] == "SUCCESS", status
        spans.append((datetime.fromisoformat(status["started_at"]), datetime.fromisoformat(status["finished_at"])))
    return sorted(spans)


def _overlapping(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    return [later for earlier, later in zip(spans, spans[1:], strict=False) if later[0] < earlier[1]]


def test_a_client_backlog_runs_one_at_a_time_and_does_not_hold_up_another_client(
    private_redis, clients_file, start_workers
):
    alpha, beta = _token(clients_file, "alpha"), _token(clients_file, "beta")
    jobs = Jobs(private_redis.url, API_CLIENTS_FILE=str(clients_file.path), CLIENT_MAX_RUNNING="1")
    for name in ("limits-1", "limits-2"):
        start_workers(name, concurrency=2)

    backlog = _submit(jobs, alpha, 1000, step_seconds=0.01)
    alpha_ended_before = _ended(jobs, alpha)
    started = time.monotonic()
    second = _submit(jobs, beta, 10, step_seconds=0)
    wait_until(lambda: _ended(jobs, beta) == 10, 30, what="the second client's 10 jobs to end")
    second_client_seconds = time.monotonic() - started
    moved = _ended(jobs, alpha) - alpha_ended_before
    figures.record(AREA, "second client's 10 jobs, submitted behind 1,000 of a client limited to 1",
                   second_client_seconds, "s", "≤ 30 s", second_client_seconds <= 30)
    figures.record(AREA, "first client's jobs that ended meanwhile", moved, "", f"≤ {MOST_MOVED}", moved <= MOST_MOVED)
    assert moved <= MOST_MOVED, f"the first client's backlog moved by {moved} jobs while the second client's 10 ran"

    wait_until(lambda: _ended(jobs, alpha) == 1000, 240, interval=0.5, what="the backlog of 1,000 jobs to end")
    assert _overlapping(_intervals(jobs, alpha, backlog)) == []
    executions = jobs.all_executions()
    assert {executions.get(job_id) for job_id in backlog + second} == {1}
    assert jobs.redis.hlen(PARKED) == 0 and jobs.redis.scard(WAITING_LINES) == 0


def test_a_task_max_running_holds_for_jobs_sent_by_code(private_redis, jobs, start_workers):
    start_workers("task-limit", concurrency=3)
    job_ids = [jobs.submit("tests.one_at_a_time", seconds=0.2) for _ in range(6)]
    for job_id in job_ids:
        jobs.wait_for(job_id, {"SUCCESS"}, timeout=30)
    spans = sorted(
        (datetime.fromisoformat(status["started_at"]), datetime.fromisoformat(status["finished_at"]))
        for status in map(jobs.status, job_ids)
    )
    assert _overlapping(spans) == []
    assert {jobs.executions(job_id) for job_id in job_ids} == {1}


def test_a_client_max_running_in_the_clients_file_overrides_the_default(private_redis, clients_file, start_workers):
    wide = _token(clients_file, "wide", max_running=3)
    jobs = Jobs(private_redis.url, API_CLIENTS_FILE=str(clients_file.path), CLIENT_MAX_RUNNING="1")
    start_workers("override", concurrency=4)
    job_ids = _submit(jobs, wide, 6, step_seconds=1)
    running = 0
    deadline = time.monotonic() + 20
    while _ended(jobs, wide) < 6 and time.monotonic() < deadline:
        counts = jobs.client.get("/jobs/stats", headers=wide).get_json()["counts"]
        running = max(running, counts.get("STARTED", 0) + counts.get("PROGRESS", 0))
        time.sleep(0.05)
    assert running == 3, f"at most {running} of the client's jobs ran at once, not its own limit of 3"
    assert {jobs.executions(job_id) for job_id in job_ids} == {1}


def test_the_slot_of_a_killed_worker_frees_within_the_visibility_timeout(private_redis, clients_file, start_workers):
    alpha = _token(clients_file, "alpha")
    jobs = Jobs(private_redis.url, API_CLIENTS_FILE=str(clients_file.path), CLIENT_MAX_RUNNING="1", **SHORT_VISIBILITY)
    doomed_worker = start_workers("doomed", concurrency=1, **SHORT_VISIBILITY)
    first = _submit(jobs, alpha, 1, step_seconds=60)[0]
    jobs.wait_for(first, {"STARTED", "PROGRESS"}, timeout=20, headers=alpha)
    start_workers("survivor", concurrency=2, **SHORT_VISIBILITY)
    parked = _submit(jobs, alpha, 1, step_seconds=0)[0]
    wait_until(lambda: jobs.redis.hlen(PARKED) == 1, 10, what="the second job to be parked behind the first")

    killed_at = kill_worker(doomed_worker)
    # Cancelled, so its redelivery ends at once instead of running a minute in the one slot.
    assert jobs.client.post(f"/status/{first}/cancel", headers=alpha).status_code == 202  # stops at its next step
    jobs.wait_for(parked, {"SUCCESS"}, timeout=VISIBILITY_TIMEOUT + 20, headers=alpha)
    waited = time.monotonic() - killed_at
    # The sweep that puts a dead worker's messages back runs every few seconds, then a promotion.
    limit = VISIBILITY_TIMEOUT + PROMOTE_SECONDS + 8
    figures.record(AREA, f"a parked job's wait once its client's running job died (visibility {VISIBILITY_TIMEOUT} s)",
                   waited, "s", f"≤ {limit:g} s", waited <= limit)
    assert waited <= limit
    assert jobs.executions(parked) == 1
    assert jobs.wait_for(first, {"REVOKED"}, timeout=20, headers=alpha)["state"] == "REVOKED"
