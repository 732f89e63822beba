"""Job records: what Celery's result backend cannot tell us.

Celery reports PENDING both for a queued job and for an id nobody ever
submitted. A small Redis hash per job (`job:<id>`), written before the
message is published, tells them apart, and holds the timestamps, the owner,
the input (kept for a retry), the links between a job and its retry, and the
cancellation flag. It lives beside the results and expires with them.

Every script that changes a record's state also moves the job in the index
(index.py), in the same atomic step.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from backend.jobs import states
from backend.jobs.index import LUA_FUNCTIONS, RECORD_PREFIX, score_of
from backend.jobs.schedule import SCHEDULE_FUNCTIONS
from backend.jobs.timestamps import epoch_iso, now_iso

KEY_PREFIX = RECORD_PREFIX
# What the start script answers for a job whose deadline passed before it started.
NOT_STARTED_BY_DEADLINE = -1
# ... and for a job that has ended already: a copy of its message, from a hand-back whose
# ack had reached Redis, or a failover that lost that ack, is not run again.
ALREADY_ENDED = -2
# The owner of a job sent by code outside the API: .delay(), apply_async, celery call, beat.
CODE_OWNER = "code"

# A new job's record and index entry (ARGV[7:] are the record's fields), with two
# checks first, both in this one atomic step:
# - an idempotency key (ARGV[5], fingerprint ARGV[6]) bound to a job whose record
#   exists answers that job. A key bound to a job without a record is free again:
#   the submit that bound it failed to publish (its record was deleted).
# - a retry (ARGV[4], the id of the job retried) happens once: the retried job must
#   be FAILURE or REVOKED and not retried yet, and then links to the new job.
_CREATE = LUA_FUNCTIONS + """
local job_id, ttl, score, retry_of, idempotency_key, fingerprint = unpack(ARGV, 1, 6)
if idempotency_key ~= '' then
  local bound = redis.call('GET', idempotency_key)
  if bound then
    local sep = string.find(bound, ':', 1, true)
    local bound_id = string.sub(bound, sep + 1)
    if redis.call('EXISTS', RECORD_PREFIX .. bound_id) == 1 then
      return {'replayed', bound_id, string.sub(bound, 1, sep - 1)}
    end
  end
end
if retry_of ~= '' then
  local retried = RECORD_PREFIX .. retry_of
  local f = redis.call('HMGET', retried, 'state', 'retried_by')
  if not f[1] then
    return {'gone'}
  end
  if f[2] then
    return {'already_retried', f[2]}
  end
  if f[1] ~= 'FAILURE' and f[1] ~= 'REVOKED' then
    return {'not_retryable', f[1]}
  end
  redis.call('HSET', retried, 'retried_by', job_id)
end
if idempotency_key ~= '' then
  redis.call('SET', idempotency_key, fingerprint .. ':' .. job_id, 'EX', ttl)
end
create_record(job_id, ttl, score, {unpack(ARGV, 7)})
return {'created'}
"""

# A new job's record and index entries (ARGV[5:] are the record's fields), then its
# message (ARGV[4]) pushed on its queue's list (KEYS[1]): one round trip for a submit, where the
# queues and the records share a Redis database. The record comes first, as it must.
_CREATE_AND_PUSH = LUA_FUNCTIONS + """
create_record(ARGV[1], ARGV[2], ARGV[3], {unpack(ARGV, 5)})
redis.call('LPUSH', KEYS[1], ARGV[4])
"""

# The same for a job due later: its message waits in the schedule (schedule.py) until
# ARGV[4] (ms), then goes on the list KEYS[1].
_CREATE_AND_SCHEDULE = LUA_FUNCTIONS + SCHEDULE_FUNCTIONS + """
create_record(ARGV[1], ARGV[2], ARGV[3], {unpack(ARGV, 6)})
schedule_message(ARGV[1], ARGV[4], KEYS[1], ARGV[5])
"""

# A job whose message a worker received without a record (sent by code that does not
# use our task class: `celery call`, send_task): its record from now on, unless one exists.
_CREATE_IF_MISSING = LUA_FUNCTIONS + """
if redis.call('EXISTS', RECORD_PREFIX .. ARGV[1]) == 1 then
  return 0
end
create_record(ARGV[1], ARGV[2], ARGV[3], {unpack(ARGV, 4)})
return 1
"""

_DELETE = LUA_FUNCTIONS + """
delete_record(ARGV[1])
"""

# The states a job ends in, as a Lua set.
_FINAL_STATE_ENTRIES = ", ".join(f"{state} = true" for state in sorted(states.FINAL_STATES))
_LUA_FINAL_STATES = f"local FINAL_STATES = {{{_FINAL_STATE_ENTRIES}}}\n"

# Atomic with the API's cancel: a job either starts or is cancelled first,
# never both. A job whose record has a `deadline_ms` that passed before it first started
# never starts either: -1 (the worker ends it REVOKED, DeadlineExceeded). Nor does a job
# that has ended (-2: the worker drops that copy of its message). A record
# missing (a job sent by other code, its record not written when received) is created
# so its status can be looked up while it runs. With a
# result key (KEYS[2]), Celery's STARTED state (ARGV[5]) is stored there and
# published, as task_track_started would, in this same round trip; a retry or
# redelivery then no longer shows the earlier attempt's RETRY or progress while it
# runs. Returns 0 if cancelled, else how many times this attempt (ARGV[4], Celery's
# retry count) has been delivered: above 1, earlier deliveries died with their
# worker before they could finish.
_START_UNLESS_CANCELLED = LUA_FUNCTIONS + _LUA_FINAL_STATES + """
local job_id = ARGV[6]
if redis.call('HEXISTS', KEYS[1], 'cancel_requested_at') == 1 then
  return 0
end
local deadline = redis.call('HGET', KEYS[1], 'deadline_ms')
if deadline and redis.call('HEXISTS', KEYS[1], 'started_at') == 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(deadline) then
    return -1
  end
end
if FINAL_STATES[redis.call('HGET', KEYS[1], 'state')] then
  return -2
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  create_record(job_id, ARGV[2], ARGV[7], {unpack(ARGV, 8)})
end
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1])
local deliveries = 1
if redis.call('HGET', KEYS[1], 'attempt') == ARGV[4] then
  deliveries = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
else
  redis.call('HSET', KEYS[1], 'attempt', ARGV[4], 'deliveries', 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
index_move(job_id, 'STARTED')
if #KEYS > 1 then
  redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[2])
  redis.call('PUBLISH', KEYS[2], ARGV[5])
end
return deliveries
"""

# A job that will try again (its task's retry policy, or self.retry()): when its next attempt
# is due (ARGV[1], ms) and how many attempts it may make (ARGV[2], '' for no limit). The
# record lives at least until that attempt has had RESULT_EXPIRES (ARGV[3] seconds) to run.
# Nothing for a record that is gone (expired): no stub without an expiry.
_NOTE_RETRY = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'next_attempt_ms', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'max_attempts', ARGV[2])
else
  redis.call('HDEL', KEYS[1], 'max_attempts')
end
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

# A delivery that a stopping worker hands back (SIGTERM, soft shutdown) did not
# die: take it off the count, for this attempt only and never below zero.
_UNCOUNT_DELIVERY = """
if redis.call('HGET', KEYS[1], 'attempt') == ARGV[1]
   and tonumber(redis.call('HGET', KEYS[1], 'deliveries') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'deliveries', -1)
end
"""

# Returns 1 when the job had not started yet (so it never will: REVOKED now), 0 otherwise.
_REQUEST_CANCEL = LUA_FUNCTIONS + """
redis.call('HSETNX', KEYS[1], 'cancel_requested_at', ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'started_at') == 1 then
  return 0
end
index_move(ARGV[2], 'REVOKED')
return 1
"""

# The result backend's write of a state (KEYS[1] the result key, ARGV[1] Celery's
# meta): stored and published as Celery does, the record's expiry renewed with it, and
# the job moved in the index to ARGV[3] ('' for a state that moves nothing). Celery's own
# guard is kept: a SUCCESS is never overwritten (a lost worker's late update). Celery
# reads the stored state for it in a round trip of its own; here it costs none.
_STORE_STATE = LUA_FUNCTIONS + """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
    return 0
  end
end
local expires = tonumber(ARGV[2])
if expires > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', expires)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
if expires > 0 then
  redis.call('EXPIRE', RECORD_PREFIX .. ARGV[4], expires)
end
if ARGV[3] ~= '' then
  index_move(ARGV[4], ARGV[3])
end
return 1
"""


@dataclass(frozen=True)
class NewRecord:
    """A job's record before it is written: the id, the index score (its submit time in
    milliseconds), the fields as a flat list (name, state and owner first), the job it
    retries, if any, when it is due (ms) if it waits in the schedule, and the deadline (ms)
    by which it must have started, if any."""

    job_id: str
    score: int
    fields: list[str]
    retry_of: str | None = None
    due_ms: int | None = None
    deadline_ms: int | None = None


@dataclass(frozen=True)
class Created:
    """What create() did: `outcome` is `created`, or why not (see _CREATE): `replayed`
    (then job_id and fingerprint are the bound job's), `gone`, `already_retried`
    (job_id: the retry), `not_retryable` (state: the retried job's)."""

    outcome: str
    job_id: str | None = None
    fingerprint: str | None = None
    state: str | None = None


class JobRecords:
    """Reads and writes `job:<id>` hashes with one Redis client."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, input_max_bytes: int = 65536) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self.input_max_bytes = input_max_bytes
        self._create = client.register_script(_CREATE)
        self._create_and_push = client.register_script(_CREATE_AND_PUSH)
        self._create_and_schedule = client.register_script(_CREATE_AND_SCHEDULE)
        self._create_if_missing = client.register_script(_CREATE_IF_MISSING)
        self._delete = client.register_script(_DELETE)
        self._start = client.register_script(_START_UNLESS_CANCELLED)
        self._cancel = client.register_script(_REQUEST_CANCEL)
        self._uncount = client.register_script(_UNCOUNT_DELIVERY)
        self._note_retry = client.register_script(_NOTE_RETRY)
        self._store_state = client.register_script(_STORE_STATE)

    @staticmethod
    def key(job_id: str) -> str:
        return KEY_PREFIX + job_id

    def new_record(
        self, job_id: str, task_name: str, owner: str, job_input: Any, retry_of: str | None = None,
        *, now: float | None = None, due_ms: int | None = None, deadline_ms: int | None = None,
    ) -> NewRecord:
        """A new job's record, not written yet; the worker adds the rest of its fields.

        The input is kept for a retry, unless its JSON is over input_max_bytes: then only
        its size is, and the job cannot be retried (its status says so).
        """
        score = score_of(time.time() if now is None else now)
        # The scripts find name, state and owner by their place (index.py's create_record).
        # The time shown and the score are the same millisecond.
        state = states.QUEUED if due_ms is None else states.SCHEDULED
        fields = {"name": task_name, "state": state, "owner": owner, "submitted_at": epoch_iso(score / 1000)}
        if due_ms is not None:
            fields["run_at"] = epoch_iso(due_ms / 1000)
        if deadline_ms is not None:
            fields["deadline_ms"] = str(deadline_ms)
        encoded = json.dumps(job_input, separators=(",", ":"), default=str)
        size = len(encoded.encode())
        if size <= self.input_max_bytes:
            fields["input"] = encoded
        else:
            fields["input_bytes"] = str(size)
        if retry_of:
            fields["retry_of"] = retry_of
        return NewRecord(
            job_id, score, [part for field in fields.items() for part in field], retry_of, due_ms, deadline_ms
        )

    def ttl_of(self, record: NewRecord) -> int:
        """Seconds the record lives: RESULT_EXPIRES, plus its wait in the schedule."""
        if record.due_ms is None:
            return self.ttl
        return self.ttl + max(0, math.ceil((record.due_ms - record.score) / 1000))

    def create(self, record: NewRecord, idempotency: tuple[str, str] | None = None) -> Created:
        """Write a new job's record and index entries (before its message is published).

        `idempotency` is (Redis key, request fingerprint): see _CREATE.
        """
        job_id = record.job_id
        idempotency_key, fingerprint = idempotency or ("", "")
        reply = self._create(
            args=[job_id, self.ttl_of(record), record.score, record.retry_of or "", idempotency_key, fingerprint,
                  *record.fields]
        )
        outcome, *rest = (part.decode() for part in reply)
        if outcome == "replayed":
            return Created(outcome, job_id=rest[0], fingerprint=rest[1])
        if outcome == "already_retried":
            return Created(outcome, job_id=rest[0])
        if outcome == "not_retryable":
            return Created(outcome, state=rest[0])
        return Created(outcome, job_id=job_id if outcome == "created" else None)

    def create_and_push(self, record: NewRecord, queue_key: bytes | str, message: bytes | str, client: Any) -> None:
        """Write `record` and its index entries, then push `message` on the list `queue_key`,
        in one script that `client` (a broker connection to this same Redis database, or
        a pipeline of one) runs: see _CREATE_AND_PUSH."""
        self._create_and_push(
            keys=[queue_key], args=[record.job_id, self.ttl, record.score, message, *record.fields], client=client
        )

    def create_and_schedule(self, record: NewRecord, queue_key: bytes | str, message: bytes | str, client: Any) -> None:
        """As create_and_push, for a job due later (record.due_ms): its message waits in the
        schedule (schedule.py) instead of going on its queue now."""
        self._create_and_schedule(
            keys=[queue_key],
            args=[record.job_id, self.ttl_of(record), record.score, record.due_ms or 0, message, *record.fields],
            client=client,
        )

    def create_if_missing(self, record: NewRecord) -> bool:
        """Write `record` unless the job has one (a job sent by other code, recorded when a
        worker receives it); True if written."""
        return bool(self._create_if_missing(args=[record.job_id, self.ttl_of(record), record.score, *record.fields]))

    def delete(self, job_id: str) -> None:
        """Remove a job whose message could not be published: record, index entry, retry link."""
        self._delete(args=[job_id])

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
        self,
        job_id: str,
        task_name: str,
        attempt: int = 0,
        started: tuple[bytes | str, str] | None = None,
        job_input: Any = None,
    ) -> int:
        """Mark the job started and store `started` (result key, STARTED meta as JSON):
        0 if it was cancelled before it started, NOT_STARTED_BY_DEADLINE if its deadline passed
        first, ALREADY_ENDED if it has ended, else the number of times this attempt has now
        been delivered (1 normally)."""
        keys: list[bytes | str] = [self.key(job_id)]
        meta = ""
        if started is not None:
            result_key, meta = started
            keys.append(result_key)
        # Fields for a record the job may not have (sent by other code, not recorded when received).
        record = self.new_record(job_id, task_name, CODE_OWNER, job_input)
        args: list[str | int] = [now_iso(), self.ttl, task_name, attempt, meta, job_id, record.score, *record.fields]
        return int(self._start(keys=keys, args=args))

    def note_retry(self, job_id: str, next_attempt_ms: int, max_attempts: int | None) -> None:
        """The job tries again at `next_attempt_ms`, of `max_attempts` at most (None: no limit)."""
        wait_seconds = max(0, math.ceil(next_attempt_ms / 1000 - time.time()))
        self._note_retry(
            keys=[self.key(job_id)],
            args=[next_attempt_ms, "" if max_attempts is None else max_attempts, self.ttl + wait_seconds],
        )

    def uncount_delivery(self, job_id: str, attempt: int = 0) -> None:
        """The worker handed this delivery back on purpose: do not count it as a death."""
        self._uncount(keys=[self.key(job_id)], args=[attempt])

    def request_cancel(self, job_id: str) -> bool:
        """Flag the job cancelled; True if it had not started (it never will)."""
        return bool(self._cancel(keys=[self.key(job_id)], args=[now_iso(), job_id]))

    def is_cancel_requested(self, job_id: str) -> bool:
        return bool(self.client.hexists(self.key(job_id), "cancel_requested_at"))

    def store_state(
        self, job_id: str, result_key: bytes | str, meta: bytes | str, expires: int, index_state: str | None
    ) -> bool:
        """Store and publish Celery's meta, renew the record's expiry and move the job in
        the index (see _STORE_STATE); False if a SUCCESS was there already."""
        return bool(
            self._store_state(keys=[result_key], args=[meta, expires, index_state or "", job_id])
        )
