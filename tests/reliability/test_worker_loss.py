"""No task is lost when a worker dies, none runs twice while its worker is healthy,
and a task that kills its worker every time stops after a bounded number of tries."""

from __future__ import annotations

import os
import signal
import time

from backend.jobs.states import FINAL_STATES
from config import BROKER_VISIBILITY_TIMEOUT, UNACKED_RESTORE_INTERVAL
from tests.helpers import wait_until
from tests.reliability import figures
from tests.reliability.jobs import kill_worker

AREA = "worker loss"


def test_a_task_whose_pool_process_is_killed_is_redelivered_and_succeeds(jobs, start_workers):
    start_workers("solo")
    task_id = jobs.submit("tests.sleep", seconds=2)
    os.kill(jobs.running_pid(task_id), signal.SIGKILL)
    killed_at = time.monotonic()

    body = jobs.wait_for(task_id, FINAL_STATES, timeout=30)
    seconds = time.monotonic() - killed_at

    assert body["state"] == "SUCCESS"
    assert jobs.executions(task_id) == 2
    figures.record(AREA, "pool process SIGKILLed: task done after", seconds, "s", "succeeds", True)


def test_a_killed_workers_task_is_finished_by_another_worker_within_the_documented_bound(jobs, start_workers):
    # The shipped visibility timeout, not a test value: this is the bound the README states.
    bound = BROKER_VISIBILITY_TIMEOUT + 2 * UNACKED_RESTORE_INTERVAL + 5
    doomed = start_workers("doomed")
    # Long enough on the doomed worker to be killed there, short on the survivor.
    task_id = jobs.submit("tests.sleep", seconds=0.5, slow_seconds=60, slow_runs=1)
    jobs.running_pid(task_id)
    start_workers("survivor")

    killed_at = kill_worker(doomed)
    body = jobs.wait_for(task_id, FINAL_STATES, timeout=bound + 30)
    seconds = time.monotonic() - killed_at

    assert body["state"] == "SUCCESS"
    assert jobs.ran_on(task_id) == ["doomed@localhost", "survivor@localhost"]
    assert seconds <= bound
    figures.record(AREA, "whole worker SIGKILLed: done by another after", seconds, "s", f"≤ {bound} s", True)


def test_a_healthy_task_running_far_longer_than_the_visibility_timeout_runs_once(jobs, start_workers):
    # A 2 s timeout and a 10 s task: without renewed leases the idle worker
    # would take the message over after ~2 s and run it a second time.
    short = {"BROKER_VISIBILITY_TIMEOUT": "2", "WORKER_SOFT_SHUTDOWN_TIMEOUT": "1"}
    start_workers("busy", **short)
    task_id = jobs.submit("tests.sleep", seconds=10)
    jobs.running_pid(task_id)
    start_workers("idle", **short)

    body = jobs.wait_for(task_id, FINAL_STATES, timeout=40)

    runs = jobs.executions(task_id)
    figures.record(AREA, "task running 5× the visibility timeout: runs", runs, "", "exactly 1", runs == 1)
    assert body["state"] == "SUCCESS"
    assert runs == 1
    assert jobs.ran_on(task_id) == ["busy@localhost"]


def test_a_running_tasks_lease_is_renewed_while_it_runs(jobs, start_workers):
    start_workers("renewer", BROKER_VISIBILITY_TIMEOUT="3", WORKER_SOFT_SHUTDOWN_TIMEOUT="1")
    task_id = jobs.submit("tests.sleep", seconds=4)
    jobs.running_pid(task_id)
    [(tag, first_score)] = wait_until(
        lambda: jobs.redis.zrange("unacked_index", 0, -1, withscores=True), timeout=5, what="the message's lease"
    )

    renewed = wait_until(
        lambda: (jobs.redis.zscore("unacked_index", tag) or 0) > first_score, timeout=5, what="a renewed lease"
    )

    assert renewed
    jobs.wait_for(task_id, {"SUCCESS"}, timeout=20)
    # Acked once the pool's result reaches the worker's main process, just after SUCCESS is
    # stored: the lease is gone then, not renewed forever.
    wait_until(lambda: jobs.redis.zcard("unacked_index") == 0, timeout=5, what="the ack to end the lease")


def test_a_task_that_kills_its_worker_every_time_ends_failure_after_bounded_tries(jobs, start_workers):
    start_workers("victim")
    task_id = jobs.submit("tests.kill_own_process")

    body = jobs.wait_for(task_id, FINAL_STATES, timeout=60)

    assert body["state"] == "FAILURE"
    assert body["error"]["type"] == "DeliveryLimitExceeded"
    assert "never finished" in body["error"]["message"]
    runs = int(jobs.redis.get(f"test:kills:{task_id}"))
    max_deliveries = jobs.app.config["TASK_MAX_DELIVERIES"]
    assert runs == max_deliveries
    # Nothing is left to come back: not queued, not held unacknowledged anywhere.
    # (Acknowledged just after FAILURE is stored, by the worker's main process.)
    wait_until(lambda: jobs.redis.zcard("unacked_index") == 0 and jobs.redis.hlen("unacked") == 0, timeout=5,
               what="the last delivery to be acknowledged")
    assert jobs.queue_length() == 0
    figures.record(AREA, "task that kills its worker: runs before FAILURE", runs, "", f"≤ {max_deliveries}", True)


def test_sigterm_requeues_the_running_task_within_the_grace_period_however_many_deploys(jobs, start_workers):
    # More stops than TASK_MAX_DELIVERIES: handing a task back is not a death.
    grace = 2.0
    stops = jobs.app.config["TASK_MAX_DELIVERIES"] + 1
    task_id = jobs.submit("tests.sleep", seconds=0.5, slow_seconds=60, slow_runs=stops)
    requeue_times = []
    for deploy in range(stops):
        stopping = start_workers(f"deploy{deploy}", WORKER_SOFT_SHUTDOWN_TIMEOUT=str(grace))
        runs = deploy + 1
        wait_until(lambda runs=runs: jobs.executions(task_id) == runs, timeout=20, what="the task to run")

        stopping.popen.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        wait_until(lambda: jobs.queue_length() == 1, timeout=grace + 10, what="the task back on its queue")
        requeue_times.append(time.monotonic() - signalled_at)
        stopping.popen.wait(10)
        assert jobs.status(task_id)["state"] != "FAILURE"

    start_workers("successor")
    body = jobs.wait_for(task_id, FINAL_STATES, timeout=20)

    assert body["state"] == "SUCCESS"
    assert jobs.ran_on(task_id) == [f"deploy{n}@localhost" for n in range(stops)] + ["successor@localhost"]
    slowest = max(requeue_times)
    figures.record(
        AREA, f"SIGTERM ×{stops}: task requeued after (grace {grace:.0f} s)", slowest, "s", f"≤ {grace:.0f} s + 5",
        slowest <= grace + 5,
    )
    assert slowest <= grace + 5
