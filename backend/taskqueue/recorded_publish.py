"""A job's record written by the script that pushes (or schedules) its message: one round
trip per submit.

A job's record and index entries must exist before any worker can see its message.
Written first and published after, a submit costs two round trips to Redis, and the
record's script. Where the broker's queues and the job records share one Redis
database (the default: BROKER_URL and RESULT_BACKEND are the same URL), the transport
runs one script instead, which writes the record and then pushes the message
(records.py's _CREATE_AND_PUSH), or, for a job due later, writes it and puts the message
in the server-side schedule (_CREATE_AND_SCHEDULE). RecordedTask.apply_async hands the
record to the transport here, for the one publish it makes; elsewhere it writes the record
first, and the transport schedules a due message alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from backend.jobs.records import JobRecords, NewRecord
from backend.jobs.schedule import Schedule


@dataclass
class PendingRecord:
    """What the transport writes with one job's message: its new record (None: the job has
    one, e.g. a retry's next attempt), when it is due (None: now; else the message waits in
    the server-side schedule, backend/jobs/schedule.py), and whether it did."""

    job_id: str
    records: JobRecords
    record: NewRecord | None = None
    due_ms: int | None = None
    schedule: Schedule | None = None
    written: bool = False

    def push(self, queue_key: bytes | str, payload: bytes | str, client: Any) -> None:
        """Write the record, then push `payload` on `queue_key` or schedule it, with one
        script run by `client` (a connection to the records' database, or a pipeline of one)."""
        if self.record is not None and self.due_ms is None:
            self.records.create_and_push(self.record, queue_key, payload, client)
        elif self.record is not None:
            self.records.create_and_schedule(self.record, queue_key, payload, client)
        elif self.schedule is not None and self.due_ms is not None:
            self.schedule.add(self.job_id, self.due_ms, queue_key, payload, client)
        else:
            raise ValueError(f"nothing to write with the message of job {self.job_id}")
        self.written = True


_pending: ContextVar[PendingRecord | None] = ContextVar("pending_record", default=None)


@contextmanager
def publishing(pending: PendingRecord | None) -> Iterator[None]:
    """While the block publishes, the transport writes `pending` with its message."""
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)


def pending_for(message: Mapping[str, Any]) -> PendingRecord | None:
    """The record to write with `message` (kombu's message as the transport gets it): the
    pending record of the job whose message this is, unless it is written already."""
    pending = _pending.get()
    if pending is None or pending.written:
        return None
    headers = message.get("headers") or {}
    return pending if headers.get("id") == pending.job_id else None
