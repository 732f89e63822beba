"""What each queue holds, read with a few O(1) and O(log n) Redis commands per queue:
what operators scale workers on (GET /queues, /metrics, docs/autoscaling.md).

For each queue:
- `ready`: messages waiting for a worker: LLEN of its list and of its priority lists (kombu
  keeps one list per priority step: `celery`, `celery\\x06\\x163`, ...);
- `scheduled`: jobs waiting in the server-side schedule for their time (schedule.py), ZCARD;
- `running`: messages a worker holds, reserved or running and not acknowledged. Workers keep
  them in a sorted set per queue scored by their lease (backend/taskqueue/transport.py),
  renewed while held, so a dead worker's drop out of the count one visibility timeout later;
- `oldest_ready_age_seconds` (queue latency): how long the oldest ready message has waited,
  from the record of its job (when its job was submitted, or moved from the schedule):
  LINDEX of the list's oldest end and one HMGET. Null when the queue is empty or the job
  has no record there.

The queues listed are the default queue, those kombu has bindings for on the default
exchange (every queue a worker consumes or a job was sent to), and those with scheduled jobs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from backend.jobs.index import RECORD_PREFIX
from backend.jobs.schedule import SCHEDULE_PREFIX, SCHEDULE_SETS
from backend.jobs.timestamps import iso_epoch

# kombu's Redis transport: the priority steps it keeps a list for, and the separator in their names.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEPARATOR = "\x06\x16"
# kombu's bindings of an exchange: members "routing key<sep>pattern<sep>queue".
BINDINGS_PREFIX = "_kombu.binding."
# Per queue: the delivery tags workers hold, scored by the time of their lease (transport.py).
UNACKED_PREFIX = "queue:unacked:"


def priority_lists(queue: str) -> list[str]:
    """The lists of a queue, one per priority step (step 0 is the queue's own name)."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def queue_of_list(list_key: str) -> str:
    return list_key.split(PRIORITY_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class QueueFigures:
    name: str
    ready: int
    scheduled: int
    running: int
    oldest_ready_age_seconds: float | None


class QueueStats:
    """Reads the figures of every queue from the broker's Redis database."""

    def __init__(self, client: redis.Redis, default_queue: str, default_exchange: str, lease_seconds: float) -> None:
        self.client = client
        self.default_queue = default_queue
        self.default_exchange = default_exchange
        self.lease_seconds = lease_seconds

    def queue_names(self) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(BINDINGS_PREFIX + self.default_exchange)
        pipe.smembers(SCHEDULE_SETS)
        bindings, scheduled = pipe.execute()
        names = {self.default_queue}
        names |= {_text(binding).rsplit(PRIORITY_SEPARATOR, 1)[-1] for binding in bindings}
        names |= {queue_of_list(_text(key).removeprefix(SCHEDULE_PREFIX)) for key in scheduled}
        return sorted(name for name in names if name)

    def figures(self, now: float | None = None) -> list[QueueFigures]:
        now = time.time() if now is None else now
        names = self.queue_names()
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            for list_key in priority_lists(name):
                pipe.llen(list_key)
                pipe.zcard(SCHEDULE_PREFIX + list_key)
                pipe.lindex(list_key, -1)  # BRPOP takes from the right: the oldest is there
            pipe.zcount(UNACKED_PREFIX + name, now - self.lease_seconds, "+inf")
        replies = iter(pipe.execute())
        rows = []
        for name in names:
            ready = scheduled = 0
            oldest: list[bytes] = []
            for _ in PRIORITY_STEPS:
                length, waiting, last = next(replies), next(replies), next(replies)
                ready, scheduled = ready + int(length), scheduled + int(waiting)
                if last is not None:
                    oldest.append(last)
            running = int(next(replies))
            rows.append(QueueFigures(name, ready, scheduled, running, self._oldest_age(oldest, now)))
        return rows

    def _oldest_age(self, messages: list[bytes], now: float) -> float | None:
        """How long the oldest of these messages (each the oldest of its priority list) has
        been ready: since its job was moved from the schedule, else since it was submitted."""
        ids = [job_id for job_id in map(_job_id, messages) if job_id]
        if not ids:
            return None
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(RECORD_PREFIX + job_id, "queued_ms", "submitted_at")
        since = []
        for queued_ms, submitted_at in pipe.execute():
            if queued_ms is not None:
                since.append(int(queued_ms) / 1000)
            elif submitted_at is not None:
                since.append(iso_epoch(_text(submitted_at)))
        return round(max(0.0, now - min(since)), 3) if since else None


def _job_id(message: bytes) -> str | None:
    try:
        job_id = json.loads(message)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return job_id if isinstance(job_id, str) else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
