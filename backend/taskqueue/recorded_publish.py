"""A job's record written by the script that pushes its message: one round trip per submit.

A job's record and index entries must exist before any worker can see its message.
Written first and published after, a submit costs two round trips to Redis, and the
record's script. Where the broker's queues and the job records share one Redis
database (the default: BROKER_URL and RESULT_BACKEND are the same URL), the transport
runs one script instead, which writes the record and then pushes the message
(records.py's _CREATE_AND_PUSH). RecordedTask.apply_async hands the record to the
transport here, for the one publish it makes; elsewhere it writes the record first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from backend.jobs.records import JobRecords, NewRecord


@dataclass
class PendingRecord:
    """A record to write with its job's message, and whether the transport did."""

    records: JobRecords
    record: NewRecord
    written: bool = False

    def push(self, queue_key: bytes | str, payload: bytes | str, client: Any) -> None:
        """Write the record, then push `payload` on `queue_key`, with one script run by
        `client` (a connection to the records' database, or a pipeline of one)."""
        self.records.create_and_push(self.record, queue_key, payload, client)
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
    return pending if headers.get("id") == pending.record.job_id else None
