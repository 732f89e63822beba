"""Several workers with distinct names share one queue; killing one mid-run loses nothing,
and only the killed worker's own tasks run a second time."""

from __future__ import annotations

import time

from backend.jobs.states import FINAL_STATES
from tests.helpers import wait_until
from tests.reliability import figures
from tests.reliability.jobs import kill_worker

NAMES = ("alpha", "bravo", "charlie")
TASKS = 60
VISIBILITY_TIMEOUT = 10  # short, so the test does not wait the shipped 60 s
# The soft-shutdown grace must stay below 2/3 of it (config.py).
SHORT_VISIBILITY = {"BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT), "WORKER_SOFT_SHUTDOWN_TIMEOUT": "1"}


def test_three_workers_share_a_queue_and_losing_one_loses_nothing(jobs, start_workers):
    workers = {
        name: start_workers(name, concurrency=2, **SHORT_VISIBILITY) for name in NAMES
    }
    answering = {name for reply in jobs.celery.control.ping(timeout=1) for name in reply}
    assert answering == {f"{name}@localhost" for name in NAMES}

    task_ids = [jobs.submit("tests.sleep", seconds=0.5) for _ in range(TASKS)]
    wait_until(lambda: any(jobs.ran_on(t) == ["bravo@localhost"] for t in task_ids), timeout=20, what="bravo to work")
    killed_at = kill_worker(workers["bravo"])

    states = {t: jobs.wait_for(t, FINAL_STATES, timeout=VISIBILITY_TIMEOUT + 60)["state"] for t in task_ids}
    recovered_after = time.monotonic() - killed_at

    executions = jobs.all_executions()
    first_runs = {t: jobs.ran_on(t)[0] for t in task_ids}
    rerun = [t for t in task_ids if executions[t] > 1]
    lost = sum(state != "SUCCESS" for state in states.values())
    duplicates_of_healthy = [t for t in rerun if first_runs[t] != "bravo@localhost"]
    assert lost == 0
    assert duplicates_of_healthy == []
    assert {first_runs[t].split("@")[0] for t in task_ids} == set(NAMES)  # all three took work
    assert all(len(jobs.ran_on(t)) == executions[t] for t in task_ids)
    figures.record("several workers", f"{TASKS} tasks on 3 workers, one killed: lost", lost, "", "0", True)
    figures.record(
        "several workers", "duplicates of tasks on healthy workers", len(duplicates_of_healthy), "", "0", True
    )
    figures.record(
        "several workers", "killed worker's tasks re-run elsewhere", len(rerun), "",
        "its running tasks (≤ 2)", len(rerun) <= 2,
    )
    figures.record(
        "several workers", f"all done after the kill (visibility {VISIBILITY_TIMEOUT} s)", recovered_after, "s",
        f"≤ {VISIBILITY_TIMEOUT + 15} s", recovered_after <= VISIBILITY_TIMEOUT + 15,
    )
    assert len(rerun) <= 2
    assert recovered_after <= VISIBILITY_TIMEOUT + 15
