"""A pickle payload pushed straight into the queue is refused by the worker and never executed."""

from __future__ import annotations

import os
import pickle
import uuid

from kombu import Connection

from backend.jobs.states import FINAL_STATES
from tests.helpers import wait_until
from tests.reliability import figures


class RunsCodeWhenUnpickled:
    """What an attacker with access to Redis would push: unpickling it runs a command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_task_message_is_refused_and_never_executed(jobs, start_workers, private_redis, tmp_path):
    worker = start_workers("guard")
    marker = tmp_path / "pwned"
    task_id = str(uuid.uuid4())
    with Connection(private_redis.url) as connection:
        connection.Producer().publish(
            pickle.dumps(((), {"x": 1, "y": 2}, RunsCodeWhenUnpickled(marker))),
            routing_key="celery",
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"lang": "py", "task": "add", "id": task_id, "root_id": task_id},
        )

    # The worker takes the message off the queue, says why it refuses it, and drops it.
    wait_until(lambda: "ContentDisallowed" in worker.log_path.read_text(), timeout=20, what="the refusal in the log")
    # A JSON task right after runs: the worker survived and the poison message is gone.
    follow_up = jobs.submit("add", x=2, y=3)
    assert jobs.wait_for(follow_up, FINAL_STATES, timeout=20)["result"] == 5

    executed = int(marker.exists()) + jobs.executions(task_id)
    figures.record(
        "hostile input", "pickle message pushed into the queue: executed", executed, "times", "0", executed == 0
    )
    assert not marker.exists()
    assert jobs.executions(task_id) == 0
    # (The follow-up is acknowledged just after its result is stored.)
    wait_until(lambda: jobs.redis.zcard("unacked_index") == 0, timeout=5, what="the follow-up's ack")
    assert jobs.queue_length() == 0
    assert "pickle" in worker.log_path.read_text()
