"""The server-side schedule: jobs that wait in Redis, not in a worker, until they are due.

Celery on Redis delays a job (`countdown`, `eta`) by handing its message to a worker,
which holds it in memory until it is due: a delay longer than the visibility timeout
ran the job several times (celery#2599, #4400, #7009), a worker with 100,000 delayed
messages held them all, and no API could see or cancel one. Here a delayed job's message
waits in Redis, as Sidekiq, BullMQ and Oban keep theirs:

- `schedule:<list>`: a sorted set per queue list (kombu's list key, priority included),
  job ids scored by due time in milliseconds; `schedule:lists` names those that hold jobs.
- `schedule:messages`: the message of each scheduled job, as it will be pushed.
- `schedule:entries`: the sorted set each scheduled job is in (for a cancel).

A job is scheduled by the script that writes its record (records.py), or, for a job that
has its record (a retry's next attempt, a broker apart from the records), by SCHEDULE
alone. Every worker's main process moves the jobs that are due to their queue
(backend/taskqueue/schedule_mover.py): one script per batch takes each due job off the
schedule and pushes its message, so several movers at once, or one killed mid-batch,
never move a job twice nor lose one. Where the records share the database (the default),
the same script moves the job from SCHEDULED to QUEUED in its record and the index.
Keys other than those passed are built in the scripts: a single Redis (or Sentinel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from backend.jobs.index import LUA_FUNCTIONS

SCHEDULE_PREFIX = "schedule:"
SCHEDULE_SETS = "schedule:lists"
SCHEDULED_MESSAGES = "schedule:messages"
SCHEDULED_ENTRIES = "schedule:entries"
# Jobs one move script takes at most: a few milliseconds of Redis time.
MOVE_BATCH = 1000

# Shared by the scripts that schedule a message (here and in records.py).
SCHEDULE_FUNCTIONS = f"""
local SCHEDULE_PREFIX, SCHEDULE_SETS = '{SCHEDULE_PREFIX}', '{SCHEDULE_SETS}'
local SCHEDULED_MESSAGES, SCHEDULED_ENTRIES = '{SCHEDULED_MESSAGES}', '{SCHEDULED_ENTRIES}'

-- The message of `job_id` waits until `due` (ms), then goes on the list `list_key`.
local function schedule_message(job_id, due, list_key, message)
  local due_set = SCHEDULE_PREFIX .. list_key
  redis.call('ZADD', due_set, due, job_id)
  redis.call('HSET', SCHEDULED_MESSAGES, job_id, message)
  redis.call('HSET', SCHEDULED_ENTRIES, job_id, due_set)
  redis.call('SADD', SCHEDULE_SETS, due_set)
end

-- The job leaves the schedule (moved, or cancelled): true if it was in it.
local function unschedule(job_id, due_set)
  redis.call('HDEL', SCHEDULED_MESSAGES, job_id)
  redis.call('HDEL', SCHEDULED_ENTRIES, job_id)
  local removed = redis.call('ZREM', due_set, job_id) == 1
  if redis.call('EXISTS', due_set) == 0 then
    redis.call('SREM', SCHEDULE_SETS, due_set)
  end
  return removed
end
"""

# ARGV: job id, due (ms), list key, message.
_SCHEDULE = SCHEDULE_FUNCTIONS + """
schedule_message(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""

# At most ARGV[2] jobs due at ARGV[1] (ms) onto their lists, oldest first; with ARGV[3] = '1'
# (the records share this database) each moves from SCHEDULED to QUEUED in its record and
# the index, and its record notes when (`queued_ms`: how late the schedule was, and how
# long the job then waited in its queue). Returns how many moved. Commands go by set, not
# by job (one LPUSH, ZREM, HDEL of many members): about three calls per job remain.
_MOVE_DUE = LUA_FUNCTIONS + SCHEDULE_FUNCTIONS + """
local now, budget, move_records = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'

local function append(lists, key, ...)
  local list = lists[key]
  if not list then
    list = {}
    lists[key] = list
  end
  for _, value in ipairs({...}) do
    list[#list + 1] = value
  end
end

-- The moved jobs' records and index entries: SCHEDULED to QUEUED, one ZREM and one ZADD per set.
local function mark_queued(job_ids)
  local removed, added = {}, {}
  for _, job_id in ipairs(job_ids) do
    local key = RECORD_PREFIX .. job_id
    local f = redis.call('HMGET', key, 'state', 'name', 'owner')
    if f[1] == 'SCHEDULED' then
      local by_owner, by_task = index_keys('SCHEDULED', f[2], f[3])
      local score = redis.call('ZSCORE', by_task, job_id)
      redis.call('HSET', key, 'state', 'QUEUED', 'queued_ms', now)
      if score then
        local queued_owner, queued_task = index_keys('QUEUED', f[2], f[3])
        append(removed, by_owner, job_id)
        append(removed, by_task, job_id)
        append(added, queued_owner, score, job_id)
        append(added, queued_task, score, job_id)
      end
    end
  end
  for key, members in pairs(removed) do
    redis.call('ZREM', key, unpack(members))
    if redis.call('EXISTS', key) == 0 then
      redis.call('SREM', string.sub(key, 1, #INDEX_PREFIX) == INDEX_PREFIX and INDEX_SETS or TASK_INDEX_SETS, key)
    end
  end
  for key, members in pairs(added) do
    redis.call('ZADD', key, unpack(members))
    redis.call('SADD', string.sub(key, 1, #INDEX_PREFIX) == INDEX_PREFIX and INDEX_SETS or TASK_INDEX_SETS, key)
  end
end

local moved = 0
for _, due_set in ipairs(redis.call('SMEMBERS', SCHEDULE_SETS)) do
  if moved >= budget then
    break
  end
  local job_ids = redis.call('ZRANGEBYSCORE', due_set, '-inf', now, 'LIMIT', 0, budget - moved)
  if #job_ids > 0 then
    local messages = redis.call('HMGET', SCHEDULED_MESSAGES, unpack(job_ids))
    redis.call('ZREM', due_set, unpack(job_ids))
    redis.call('HDEL', SCHEDULED_MESSAGES, unpack(job_ids))
    redis.call('HDEL', SCHEDULED_ENTRIES, unpack(job_ids))
    local pushed, pushed_ids = {}, {}
    for i, job_id in ipairs(job_ids) do
      if messages[i] then
        pushed[#pushed + 1] = messages[i]
        pushed_ids[#pushed_ids + 1] = job_id
      end
    end
    if #pushed > 0 then
      -- In due order: a worker's BRPOP takes the list's other end, the oldest first.
      redis.call('LPUSH', string.sub(due_set, #SCHEDULE_PREFIX + 1), unpack(pushed))
      moved = moved + #pushed
      if move_records then
        mark_queued(pushed_ids)
      end
    end
  end
  if redis.call('EXISTS', due_set) == 0 then
    redis.call('SREM', SCHEDULE_SETS, due_set)
  end
end
return moved
"""

# The job ARGV[1] leaves the schedule (cancelled): 1 if it was in it.
_UNSCHEDULE = SCHEDULE_FUNCTIONS + """
local due_set = redis.call('HGET', SCHEDULED_ENTRIES, ARGV[1])
if not due_set then
  return 0
end
return unschedule(ARGV[1], due_set) and 1 or 0
"""


@dataclass(frozen=True)
class QueueSchedule:
    """How many jobs wait in the schedule of one queue list, and when the next is due."""

    list_key: str
    scheduled: int
    next_due_ms: int | None


class Schedule:
    """The schedule in one Redis database (the broker's)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._schedule = client.register_script(_SCHEDULE)
        self._move_due = client.register_script(_MOVE_DUE)
        self._unschedule = client.register_script(_UNSCHEDULE)

    def add(self, job_id: str, due_ms: int, list_key: bytes | str, message: bytes | str, client: Any = None) -> None:
        """Schedule `message` (of a job whose record exists) onto `list_key` at `due_ms`,
        with `client` (a connection or pipeline to this database) or this schedule's own."""
        self._schedule(args=[job_id, due_ms, list_key, message], client=client or self.client)

    def move_due(self, now_ms: int, *, move_records: bool, batch: int = MOVE_BATCH) -> int:
        """Move at most `batch` due jobs onto their queues; how many moved."""
        return int(self._move_due(args=[now_ms, batch, "1" if move_records else "0"]))

    def remove(self, job_id: str) -> bool:
        """Take a job off the schedule (it was cancelled): True if it was on it."""
        return bool(self._unschedule(args=[job_id]))

    def queues(self) -> list[QueueSchedule]:
        """Each queue list that has scheduled jobs: how many, and the next due time."""
        keys = sorted(key.decode() if isinstance(key, bytes) else key for key in self.client.smembers(SCHEDULE_SETS))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
        replies = pipe.execute()
        return [
            QueueSchedule(key.removeprefix(SCHEDULE_PREFIX), int(count), int(first[0][1]) if first else None)
            for key, count, first in zip(keys, replies[::2], replies[1::2], strict=True)
        ]
