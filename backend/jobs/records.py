"""Job records: what Celery's result backend cannot tell us.

Celery reports PENDING both for a queued job and for an id nobody ever
submitted. A small Redis hash per job (`job:<id>`), written before the
message is published, tells them apart, and holds the timestamps and the
cancellation flag. It lives beside the results and expires with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from backend.jobs.timestamps import now_iso

KEY_PREFIX = "job:"

# Atomic with the API's cancel: a job either starts or is cancelled first,
# never both. A record missing (a job sent by other code) is created so
# its status can be looked up while it runs. With a result key (KEYS[2]), Celery's
# STARTED state (ARGV[5]) is stored there and published, as task_track_started
# would, in this same round trip; a retry or redelivery then no longer shows the
# earlier attempt's RETRY or progress while it runs. Returns 0 if cancelled, else how
# many times this attempt (ARGV[4], Celery's retry count) has been delivered:
# above 1, earlier deliveries died with their worker before they could finish.
_START_UNLESS_CANCELLED = """
if redis.call('HEXISTS', KEYS[1], 'cancel_requested_at') == 1 then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'name', ARGV[3])
end
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1])
local deliveries = 1
if redis.call('HGET', KEYS[1], 'attempt') == ARGV[4] then
  deliveries = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
else
  redis.call('HSET', KEYS[1], 'attempt', ARGV[4], 'deliveries', 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if #KEYS > 1 then
  redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[2])
  redis.call('PUBLISH', KEYS[2], ARGV[5])
end
return deliveries
"""

# A delivery that a stopping worker hands back (SIGTERM, soft shutdown) did not
# die: take it off the count, for this attempt only and never below zero.
_UNCOUNT_DELIVERY = """
if redis.call('HGET', KEYS[1], 'attempt') == ARGV[1]
   and tonumber(redis.call('HGET', KEYS[1], 'deliveries') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'deliveries', -1)
end
"""

# A job whose message a worker received without a record (sent by code that does not
# use our task class: `celery call`, send_task): its record from now on, unless one exists.
_CREATE_IF_MISSING = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Returns 1 when the job had not started yet (so it never will), 0 otherwise.
_REQUEST_CANCEL = """
redis.call('HSETNX', KEYS[1], 'cancel_requested_at', ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'started_at') == 1 then
  return 0
end
return 1
"""


class JobRecords:
    """Reads and writes `job:<id>` hashes with one Redis client."""

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self._start = client.register_script(_START_UNLESS_CANCELLED)
        self._cancel = client.register_script(_REQUEST_CANCEL)
        self._uncount = client.register_script(_UNCOUNT_DELIVERY)
        self._create_if_missing = client.register_script(_CREATE_IF_MISSING)

    @staticmethod
    def key(job_id: str) -> str:
        return KEY_PREFIX + job_id

    @staticmethod
    def new_record(task_name: str) -> dict[str, str]:
        """The fields of a record when its job is submitted (the worker adds the rest)."""
        return {"name": task_name, "submitted_at": now_iso()}

    def create(self, job_id: str, task_name: str) -> None:
        pipe = self.client.pipeline()
        pipe.hset(self.key(job_id), mapping=self.new_record(task_name))  # type: ignore[arg-type]  # dict is invariant
        pipe.expire(self.key(job_id), self.ttl)
        pipe.execute()

    def create_if_missing(self, job_id: str, task_name: str) -> bool:
        """Write the job's record unless it has one; True if it was written."""
        fields = [part for field in self.new_record(task_name).items() for part in field]
        return bool(self._create_if_missing(keys=[self.key(job_id)], args=[self.ttl, *fields]))

    def delete(self, job_id: str) -> None:
        self.client.delete(self.key(job_id))

    def get(self, job_id: str) -> dict[str, str] | None:
        return self._decode(self.client.hgetall(self.key(job_id)))

    def get_with(self, job_id: str, other_key: str) -> tuple[dict[str, str] | None, bytes | None]:
        """The record and the raw value of `other_key` (the job's result, which lives
        in the same Redis) in one round trip: half the cost of a status read."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.key(job_id))
        pipe.get(other_key)
        raw_record, value = pipe.execute()
        return self._decode(raw_record), value

    @staticmethod
    def _decode(raw: Mapping[Any, Any]) -> dict[str, str] | None:
        # The client answers bytes (no decode_responses): Celery's backend shares its Redis.
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    def start_unless_cancelled(
        self, job_id: str, task_name: str, attempt: int = 0, started: tuple[bytes | str, str] | None = None
    ) -> int:
        """Mark the job started and store `started` (result key, STARTED meta as JSON):
        0 if it was cancelled before it started, else the number of times this attempt
        has now been delivered (1 normally)."""
        keys: list[bytes | str] = [self.key(job_id)]
        meta = ""
        if started is not None:
            result_key, meta = started
            keys.append(result_key)
        return int(self._start(keys=keys, args=[now_iso(), self.ttl, task_name, attempt, meta]))

    def uncount_delivery(self, job_id: str, attempt: int = 0) -> None:
        """The worker handed this delivery back on purpose: do not count it as a death."""
        self._uncount(keys=[self.key(job_id)], args=[attempt])

    def request_cancel(self, job_id: str) -> bool:
        """Flag the job cancelled; True if it had not started (it never will)."""
        return bool(self._cancel(keys=[self.key(job_id)], args=[now_iso()]))

    def is_cancel_requested(self, job_id: str) -> bool:
        return bool(self.client.hexists(self.key(job_id), "cancel_requested_at"))
