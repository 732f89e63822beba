"""Redis restarts (AOF on, as `make run` runs it) lose nothing: queued tasks run
afterwards, and QUEUED records and finished results are still there."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import redis
from kombu.utils.json import dumps

from backend.jobs.queues import UNACKED_PREFIX
from backend.jobs.states import FINAL_STATES
from devtools.redis_server import RedisServer, free_port
from tests.helpers import QUEUE
from tests.reliability import figures


def restart_gracefully(server) -> None:
    server.restart()  # SIGTERM: Redis fsyncs the AOF before it exits


def crash_and_start(server) -> None:
    # appendfsync everysec: whatever was written more than a second ago is on disk.
    time.sleep(1.5)
    os.kill(server.pid, signal.SIGKILL)
    server.stop()
    server.start()


@pytest.mark.parametrize(
    ("how", "restart"), [("restart", restart_gracefully), ("kill -9", crash_and_start)], ids=["restart", "kill -9"]
)
def test_queued_tasks_records_and_results_survive_a_redis_restart(jobs, start_workers, private_redis, how, restart):
    worker = start_workers("before")
    finished = {jobs.submit("add", x=n, y=1): n + 1 for n in range(5)}
    for task_id in finished:
        jobs.wait_for(task_id, {"SUCCESS"}, timeout=20)
    worker.stop()
    queued = {jobs.submit("add", x=n, y=n): 2 * n for n in range(50)}

    restart(private_redis)

    assert {jobs.status(task_id)["state"] for task_id in queued} == {"QUEUED"}
    results_lost = sum(jobs.status(task_id)["result"] != result for task_id, result in finished.items())
    start_workers("after")
    results = {task_id: jobs.wait_for(task_id, FINAL_STATES, timeout=30)["result"] for task_id in queued}
    tasks_lost = sum(results[task_id] != result for task_id, result in queued.items())
    figures.record("redis restart", f"Redis {how}: queued tasks lost (of 50)", tasks_lost, "", "0", tasks_lost == 0)
    figures.record(
        "redis restart", f"Redis {how}: finished results lost (of 5)", results_lost, "", "0", results_lost == 0
    )
    assert tasks_lost == results_lost == 0
    assert all(jobs.executions(task_id) == 1 for task_id in queued)


def test_a_job_running_when_redis_restarts_runs_again_once_redis_is_back_not_a_visibility_timeout_later(
    jobs, start_workers, private_redis
):
    # Celery cancels what a worker runs when its broker connection drops
    # (worker_cancel_long_running_tasks_on_connection_loss); the message waits in Redis'
    # unacked hash, and the worker hands it back as soon as Redis answers again.
    visibility_s = 60
    start_workers("through-restart", BROKER_VISIBILITY_TIMEOUT=str(visibility_s))
    task_id = jobs.submit("tests.sleep", seconds=3)
    jobs.running_pid(task_id)

    private_redis.restart()
    back_at = time.monotonic()
    final = jobs.wait_for(task_id, FINAL_STATES, timeout=visibility_s)
    rerun_s = time.monotonic() - back_at
    figures.record("redis restart", f"job running at a Redis restart: done after it (visibility {visibility_s} s)",
                   rerun_s, "s", "≤ 15 s", rerun_s <= 15)
    assert final["state"] == "SUCCESS"
    assert rerun_s <= 15
    assert jobs.executions(task_id) == 2


@pytest.mark.parametrize("taken_off_its_queue", [True, False], ids=["message-nowhere", "message-still-queued"])
def test_a_job_whose_hold_redis_lost_runs_again_once(jobs, start_workers, private_redis, taken_off_its_queue):
    # Through Sentinel, a master can die after its replica saw the worker take a message off
    # its queue but before it saw the hold: the new master has the message nowhere, and the
    # worker hands it back from memory. If the replica did not see it taken either, the
    # message is still on its queue, and the worker adds no second copy.
    # Here the data is edited while the worker cannot reach it, as the replica would have it.
    worker = start_workers("hold-lost", BROKER_VISIBILITY_TIMEOUT="60")
    task_id = jobs.submit("tests.sleep", seconds=3)
    jobs.running_pid(task_id)

    private_redis.stop()
    with RedisServer(free_port(), private_redis.data_dir, appendonly=True) as replica:
        data = redis.Redis(port=replica.port, socket_timeout=5)
        [tag] = data.hkeys("unacked")
        message = json.loads(data.hget("unacked", tag))[0]
        data.hdel("unacked", tag)
        data.zrem("unacked_index", tag)
        data.zrem(UNACKED_PREFIX + QUEUE, tag)
        if not taken_off_its_queue:
            data.lpush(QUEUE, dumps(message))
    private_redis.start()
    back_at = time.monotonic()

    final = jobs.wait_for(task_id, FINAL_STATES, timeout=30)
    rerun_s = time.monotonic() - back_at
    if taken_off_its_queue:
        figures.record("redis restart", "job whose hold a failover lost: done after it", rerun_s, "s",
                       "≤ 15 s", rerun_s <= 15)
    assert final["state"] == "SUCCESS"
    assert jobs.executions(task_id) == 2
    handed_back = "handed back 1 messages held when the connection to Redis was lost" in worker.log_tail(500)
    assert handed_back == taken_off_its_queue
