"""The schedule's own guarantees (backend/jobs/schedule.py), on a Redis of its own: movers
racing, a mover killed mid-move and a Redis restart never queue a job twice or lose one."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
import redis

from backend.jobs.schedule import SCHEDULE_SETS, SCHEDULED_ENTRIES, SCHEDULED_MESSAGES, Schedule
from devtools.redis_server import RedisServer, free_port

QUEUE = "celery"


@pytest.fixture
def server(tmp_path):
    with RedisServer(free_port(), tmp_path / "redis", appendonly=True) as started:
        yield started


def schedule_jobs(client: redis.Redis, count: int, due_ms: int) -> list[str]:
    schedule = Schedule(client)
    job_ids = [f"job-{n:05d}" for n in range(count)]
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        schedule.add(job_id, due_ms, QUEUE, f'{{"id": "{job_id}"}}', client=pipe)
    pipe.execute()
    return job_ids


def queued(client: redis.Redis) -> list[str]:
    return [message.decode().split('"')[3] for message in client.lrange(QUEUE, 0, -1)]


def assert_schedule_empty(client: redis.Redis) -> None:
    assert client.scard(SCHEDULE_SETS) == 0
    assert client.hlen(SCHEDULED_MESSAGES) == 0 and client.hlen(SCHEDULED_ENTRIES) == 0


def move_all(url: str) -> None:
    schedule = Schedule(redis.Redis.from_url(url))
    while schedule.move_due(int(time.time() * 1000), move_records=False, batch=100):
        pass


def test_a_job_is_queued_when_due_and_not_before(server):
    client = redis.Redis.from_url(server.url)
    schedule = Schedule(client)
    now = int(time.time() * 1000)
    schedule_jobs(client, 3, now + 60_000)
    assert schedule.move_due(now, move_records=False) == 0
    assert [(entry.list_key, entry.scheduled, entry.next_due_ms) for entry in schedule.queues()] == [
        (QUEUE, 3, now + 60_000)
    ]
    assert schedule.move_due(now + 60_000, move_records=False) == 3
    assert sorted(queued(client)) == ["job-00000", "job-00001", "job-00002"]
    assert_schedule_empty(client)


def test_jobs_move_oldest_first_in_batches(server):
    client = redis.Redis.from_url(server.url)
    schedule = Schedule(client)
    for job_id, due_ms in {"late": 3000, "early": 1000, "middle": 2000}.items():
        schedule.add(job_id, due_ms, QUEUE, f'{{"id": "{job_id}"}}')
    assert schedule.move_due(5000, move_records=False, batch=2) == 2
    assert schedule.move_due(5000, move_records=False, batch=2) == 1
    # LPUSH, as a publish: a worker's BRPOP takes the oldest first.
    assert list(reversed(queued(client))) == ["early", "middle", "late"]


def test_a_removed_job_never_moves(server):
    client = redis.Redis.from_url(server.url)
    schedule = Schedule(client)
    schedule_jobs(client, 2, 1000)
    assert schedule.remove("job-00000") is True
    assert schedule.remove("job-00000") is False
    assert schedule.move_due(2000, move_records=False) == 1
    assert queued(client) == ["job-00001"]


def test_four_movers_racing_queue_each_of_10000_jobs_exactly_once(server):
    client = redis.Redis.from_url(server.url)
    job_ids = schedule_jobs(client, 10_000, int(time.time() * 1000))
    movers = [threading.Thread(target=move_all, args=(server.url,)) for _ in range(4)]
    for mover in movers:
        mover.start()
    for mover in movers:
        mover.join(30)
    assert sorted(queued(client)) == job_ids
    assert_schedule_empty(client)


def test_a_mover_killed_mid_move_loses_no_job_and_queues_none_twice(server):
    client = redis.Redis.from_url(server.url)
    job_ids = schedule_jobs(client, 10_000, int(time.time() * 1000))
    doomed = multiprocessing.get_context("spawn").Process(target=move_all, args=(server.url,))
    doomed.start()
    while client.llen(QUEUE) == 0:
        time.sleep(0.001)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(5)
    moved_before_the_kill = client.llen(QUEUE)
    move_all(server.url)
    assert 0 < moved_before_the_kill <= len(job_ids)
    assert sorted(queued(client)) == job_ids
    assert_schedule_empty(client)


def test_scheduled_jobs_survive_a_redis_restart(server):
    client = redis.Redis.from_url(server.url)
    job_ids = schedule_jobs(client, 1000, int(time.time() * 1000) + 500)
    server.restart()
    client = redis.Redis.from_url(server.url)
    assert Schedule(client).queues()[0].scheduled == 1000
    time.sleep(0.5)
    move_all(server.url)
    assert sorted(queued(client)) == job_ids
    assert_schedule_empty(client)
