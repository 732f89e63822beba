"""The job index: every job, findable by state, task name, owner and submit time.

Two families of Redis sorted sets hold the ids of the jobs, scored by submit time in
milliseconds; a job is in one set of each:

- by task: one set per (state, task name), `jobs:by-task:FAILURE|add`;
- by owner: one set per (state, task name, owner), `jobs:index:FAILURE|add|cli`.

A listing without an owner filter merges sets of the first family, whose number is
states × task names however many clients submit; with an owner, sets of the second,
that owner's only. So the index costs two sorted-set entries per job (about 210 bytes),
and a state change moves two entries. The sets `jobs:by-task` and `jobs:index` name the
sets of each family that hold jobs.

- Writes happen inside the Lua scripts that write the job's record (records.py and
  the result backend): a record and its index entries never disagree.
- A listing merges, newest first, the sets the filter selects, and reads each job's
  record and result in the same script: one round trip, one consistent snapshot.
  Paging is by (score, id): stable while jobs are submitted and finish.
- Counts per state are ZCARD/ZCOUNT of those sets: they cost nothing per job.
- Records expire (RESULT_EXPIRES); their entries are trimmed by `trim`, which
  workers run on a timer (backend/taskqueue/index_trimmer.py). Until then a listing
  skips an entry whose record is gone.

Keys are built inside the scripts from the record's fields, which works on a single
Redis (and through Sentinel), not on Redis Cluster.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from backend.jobs import states
from backend.jobs.errors import ServiceError

# Sets by (state, task name, owner), and the set of those that hold at least one job.
INDEX_PREFIX = "jobs:index:"
INDEX_SETS = "jobs:index"
# Sets by (state, task name), and the set of those that hold at least one job.
TASK_INDEX_PREFIX = "jobs:by-task:"
TASK_INDEX_SETS = "jobs:by-task"
RECORD_PREFIX = "job:"
# Between the parts of an index key. Owners never contain it (client ids, `anonymous`,
# `cli`, `code`); a task name may, so the name is whatever lies between the first and last.
SEPARATOR = "|"

# Shared by every script that writes a record: Redis scripts cannot import one another.
LUA_FUNCTIONS = f"""
local INDEX_PREFIX = '{INDEX_PREFIX}'
local INDEX_SETS = '{INDEX_SETS}'
local TASK_INDEX_PREFIX = '{TASK_INDEX_PREFIX}'
local TASK_INDEX_SETS = '{TASK_INDEX_SETS}'
local RECORD_PREFIX = '{RECORD_PREFIX}'

-- The job's two sets: by (state, name, owner), and by (state, name).
local function index_keys(state, name, owner)
  local by_task = state .. '{SEPARATOR}' .. name
  return INDEX_PREFIX .. by_task .. '{SEPARATOR}' .. owner, TASK_INDEX_PREFIX .. by_task
end

local function index_add(state, name, owner, score, job_id)
  local by_owner, by_task = index_keys(state, name, owner)
  redis.call('ZADD', by_owner, score, job_id)
  redis.call('SADD', INDEX_SETS, by_owner)
  redis.call('ZADD', by_task, score, job_id)
  redis.call('SADD', TASK_INDEX_SETS, by_task)
end

local function remove_from(key, registry, job_id)
  redis.call('ZREM', key, job_id)
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', registry, key)
  end
end

local function index_remove(state, name, owner, job_id)
  local by_owner, by_task = index_keys(state, name, owner)
  remove_from(by_owner, INDEX_SETS, job_id)
  remove_from(by_task, TASK_INDEX_SETS, job_id)
end

-- A new job: its record (fields: a flat name, value list that begins with name, state
-- and owner, in that order: JobRecords.new_record), expiring after ttl seconds, and its
-- index entries scored by its submit time.
local function create_record(job_id, ttl, score, fields)
  local key = RECORD_PREFIX .. job_id
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIRE', key, ttl)
  index_add(fields[4], fields[2], fields[6], score, job_id)
end

-- The job now is in `state`: its record says so and its entries move to that state's sets.
-- A record without a state (written before the index existed) stays unindexed.
local function index_move(job_id, state)
  local key = RECORD_PREFIX .. job_id
  local f = redis.call('HMGET', key, 'state', 'name', 'owner')
  if not f[1] or f[1] == state then
    return
  end
  local score = redis.call('ZSCORE', (index_keys(f[1], f[2], f[3])), job_id)
  redis.call('HSET', key, 'state', state)
  if score then
    index_remove(f[1], f[2], f[3], job_id)
    index_add(state, f[2], f[3], score, job_id)
  end
end

-- The job is gone (its publish failed): its record and its entry both.
local function delete_record(job_id)
  local key = RECORD_PREFIX .. job_id
  local f = redis.call('HMGET', key, 'state', 'name', 'owner', 'retry_of')
  if f[1] then
    index_remove(f[1], f[2], f[3], job_id)
  end
  if f[4] and redis.call('HGET', RECORD_PREFIX .. f[4], 'retried_by') == job_id then
    redis.call('HDEL', RECORD_PREFIX .. f[4], 'retried_by')
  end
  redis.call('DEL', key)
end
"""

# The index sets a filter selects: states (a comma-separated list, '' for any), a task
# name and an owner ('' for any: neither is ever empty). Chosen inside each script that
# reads them, not before it: a set emptied and made again in between would be missed.
_SELECTED_KEYS = f"""
local function last_separator(text)
  local last = nil
  local at = string.find(text, '{SEPARATOR}', 1, true)
  while at do
    last = at
    at = string.find(text, '{SEPARATOR}', at + 1, true)
  end
  return last
end

local function selected_keys(states, name, owner)
  local wanted = nil
  if states ~= '' then
    wanted = {{}}
    for state in string.gmatch(states, '[^,]+') do
      wanted[state] = true
    end
  end
  -- Without an owner, the sets by task: as many as states × task names, whoever submitted.
  local prefix, registry = TASK_INDEX_PREFIX, TASK_INDEX_SETS
  if owner ~= '' then
    prefix, registry = INDEX_PREFIX, INDEX_SETS
  end
  local keys = {{}}
  for _, key in ipairs(redis.call('SMEMBERS', registry)) do
    local body = string.sub(key, #prefix + 1)
    local first = string.find(body, '{SEPARATOR}', 1, true)
    local name_end = #body
    local selected = true
    if owner ~= '' then
      local last = last_separator(body)
      name_end = last - 1
      selected = string.sub(body, last + 1) == owner
    end
    if selected and (not wanted or wanted[string.sub(body, 1, first - 1)])
       and (name == '' or string.sub(body, first + 1, name_end) == name) then
      keys[#keys + 1] = key
    end
  end
  table.sort(keys)
  return keys
end
"""

# The newest `limit` jobs of the sets the filter (ARGV[7..9]) selects, merged by
# (score, id) descending, below the cursor (ARGV[1] score, ARGV[2] id; '' for none) and
# not before ARGV[3] (a score), with each job's record and result (ARGV[5] is the result
# key prefix). Entries whose record expired are skipped. Then those sets and the count
# of each between ARGV[3] and ARGV[6].
# Each set is read lazily, one entry first (most sets give a page nothing), then more as
# it proves busy; a heap of the sets' next entries picks the newest. A page so costs
# about one read per set plus the page itself, whatever the number of jobs.
_PAGE = _SELECTED_KEYS + """
local max_score, after_id, min_score = ARGV[1], ARGV[2], ARGV[3]
local limit, result_prefix, count_max = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local keys = selected_keys(ARGV[7], ARGV[8], ARGV[9])
local cursor_score = tonumber(max_score)

local function refill(h)
  local r = redis.call('ZREVRANGEBYSCORE', h.key, max_score, min_score, 'WITHSCORES', 'LIMIT', h.offset, h.chunk)
  h.offset = h.offset + #r / 2
  h.entries, h.pos = {}, 1
  for j = 1, #r, 2 do
    h.entries[#h.entries + 1] = {r[j], tonumber(r[j + 1]), r[j + 1]}
  end
  h.done = #r < 2 * h.chunk
  h.chunk = math.min(h.chunk * 4, 64)
end

-- The set's next entry, past the cursor's ties (only ids after it, in reverse order, are
-- new); nil once the set has no more.
local function next_entry(h)
  while true do
    while h.pos <= #h.entries do
      local e = h.entries[h.pos]
      if after_id == '' or e[2] < cursor_score or e[1] < after_id then
        return e
      end
      h.pos = h.pos + 1
    end
    if h.done then
      return nil
    end
    refill(h)
  end
end

local heap = {}
local function newer(a, b)
  return a.e[2] > b.e[2] or (a.e[2] == b.e[2] and a.e[1] > b.e[1])
end
local function push(h)
  heap[#heap + 1] = h
  local i = #heap
  while i > 1 do
    local parent = math.floor(i / 2)
    if not newer(heap[i], heap[parent]) then break end
    heap[i], heap[parent] = heap[parent], heap[i]
    i = parent
  end
end
local function pop()
  local top = heap[1]
  heap[1] = heap[#heap]
  heap[#heap] = nil
  local i = 1
  while true do
    local left, right, best = 2 * i, 2 * i + 1, i
    if left <= #heap and newer(heap[left], heap[best]) then best = left end
    if right <= #heap and newer(heap[right], heap[best]) then best = right end
    if best == i then break end
    heap[i], heap[best] = heap[best], heap[i]
    i = best
  end
  return top
end

for _, key in ipairs(keys) do
  local h = {key = key, offset = 0, entries = {}, pos = 1, done = false, chunk = 1}
  h.e = next_entry(h)
  if h.e then push(h) end
end
local page, more = {}, 0
while #heap > 0 do
  if #page >= limit then
    more = 1
    break
  end
  local h = pop()
  local e = h.e
  h.pos = h.pos + 1
  h.e = next_entry(h)
  if h.e then push(h) end
  local record = redis.call('HGETALL', RECORD_PREFIX .. e[1])
  if #record > 0 then
    page[#page + 1] = {e[1], e[3], record, redis.call('GET', result_prefix .. e[1])}
  end
end
local counts = {}
local whole = min_score == '-inf' and count_max == '+inf'
for i, key in ipairs(keys) do
  if whole then
    counts[i] = redis.call('ZCARD', key)
  else
    counts[i] = redis.call('ZCOUNT', key, min_score, count_max)
  end
end
return {page, more, keys, counts}
"""

# The sets the filter (ARGV[3..5]) selects and the count of each between ARGV[1] and ARGV[2].
_COUNTS = _SELECTED_KEYS + """
local keys = selected_keys(ARGV[3], ARGV[4], ARGV[5])
local counts = {}
for i, key in ipairs(keys) do
  counts[i] = redis.call('ZCOUNT', key, ARGV[1], ARGV[2])
end
return {keys, counts}
"""

# The number of jobs in every set by task, for the metrics: one ZCARD per set.
_SIZES = """
local keys = redis.call('SMEMBERS', TASK_INDEX_SETS)
local sizes = {}
for i, key in ipairs(keys) do
  sizes[i] = redis.call('ZCARD', key)
end
return {keys, sizes}
"""

# Remove the entries of jobs whose record expired: those scored before ARGV[1]
# (submitted more than RESULT_EXPIRES ago; a younger job's record cannot have
# expired yet), checking at most ARGV[2] entries of the sets by owner, and taking each
# expired job out of its set by task too. Returns {checked, removed}.
_TRIM = """
local cutoff, budget = ARGV[1], tonumber(ARGV[2])
local checked, removed = 0, 0
for _, key in ipairs(redis.call('SMEMBERS', INDEX_SETS)) do
  local body = string.sub(key, #INDEX_PREFIX + 1)
  local by_task = TASK_INDEX_PREFIX .. string.sub(body, 1, last_separator(body) - 1)
  local offset = 0
  while checked < budget do
    local ids = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', offset, 100)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      checked = checked + 1
      if redis.call('EXISTS', RECORD_PREFIX .. id) == 0 then
        redis.call('ZREM', key, id)
        remove_from(by_task, TASK_INDEX_SETS, id)
        removed = removed + 1
      else
        offset = offset + 1
      end
    end
  end
  if redis.call('EXISTS', key) == 0 then
    redis.call('SREM', INDEX_SETS, key)
  end
end
return {checked, removed}
"""

# Checks per trim script: about a millisecond of Redis time, so it never stalls others.
TRIM_BUDGET = 2000
MAX_PAGE_SIZE = 200


def score_of(epoch_seconds: float) -> int:
    """The index score of a submit time: milliseconds since the epoch, the precision of the
    times the API shows, so `until=<a job's submitted_at>` includes that job. Jobs of one
    millisecond are ordered by id."""
    return int(epoch_seconds * 1000)


def index_key(state: str, name: str, owner: str) -> str:
    """The job's set by (state, task name, owner)."""
    return f"{INDEX_PREFIX}{state}{SEPARATOR}{name}{SEPARATOR}{owner}"


def task_index_key(state: str, name: str) -> str:
    """The job's set by (state, task name)."""
    return f"{TASK_INDEX_PREFIX}{state}{SEPARATOR}{name}"


def parse_index_key(key: str) -> tuple[str, str, str]:
    """(state, name, owner) of a set by owner."""
    body = key.removeprefix(INDEX_PREFIX)
    state, _, rest = body.partition(SEPARATOR)
    name, _, owner = rest.rpartition(SEPARATOR)
    return state, name, owner


def parse_task_index_key(key: str) -> tuple[str, str]:
    """(state, name) of a set by task."""
    state, _, name = key.removeprefix(TASK_INDEX_PREFIX).partition(SEPARATOR)
    return state, name


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing, a count or a bulk action is about. None: any."""

    states: frozenset[str] | None = None
    name: str | None = None
    owner: str | None = None
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, inclusive

    def selector(self) -> list[str]:
        """The arguments of the scripts' selected_keys(): '' for any."""
        return [",".join(sorted(self.states or ())), self.name or "", self.owner or ""]

    def score_range(self) -> tuple[str, str]:
        """(lowest, highest) index score the filter's time range allows."""
        low = "-inf" if self.since is None else str(score_of(self.since))
        high = "+inf" if self.until is None else str(score_of(self.until))
        return low, high

    def fingerprint(self) -> str:
        """Short and stable: a cursor carries it, so it is refused with another filter."""
        canonical = json.dumps(
            [sorted(self.states or ()), self.name, self.owner, self.since, self.until], separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: just after the job with this score and id."""

    score: int
    job_id: str

    def encode(self, job_filter: JobFilter) -> str:
        raw = json.dumps([self.score, self.job_id, job_filter.fingerprint()], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, job_filter: JobFilter) -> Cursor:
        try:
            score, job_id, fingerprint = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            if not (isinstance(score, int) and isinstance(job_id, str) and isinstance(fingerprint, str)):
                raise ValueError(text)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
            raise _bad_cursor("is not a cursor this service returned") from exc
        if fingerprint != job_filter.fingerprint():
            raise _bad_cursor("belongs to a listing with other filters; send the same filters as that listing")
        return cls(score, job_id)


def _bad_cursor(why: str) -> ServiceError:
    return ServiceError(
        422, "validation_error", f"cursor: {why}", details=[{"field": "cursor", "message": why, "type": "cursor"}]
    )


@dataclass(frozen=True)
class IndexedJob:
    job_id: str
    record: dict[str, str]
    raw_result: bytes | None


@dataclass(frozen=True)
class Page:
    jobs: list[IndexedJob]
    next_cursor: Cursor | None
    counts: dict[str, int]  # per state, for the filter (not the cursor)


class JobIndex:
    """Reads the index and trims it; the writes are in the record scripts (records.py)."""

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self._page = client.register_script(LUA_FUNCTIONS + _PAGE)
        self._counts = client.register_script(LUA_FUNCTIONS + _COUNTS)
        self._sizes = client.register_script(LUA_FUNCTIONS + _SIZES)
        self._trim = client.register_script(LUA_FUNCTIONS + _SELECTED_KEYS + _TRIM)

    def page(
        self, job_filter: JobFilter, limit: int, cursor: Cursor | None = None, *, result_prefix: bytes | str
    ) -> Page:
        """The newest `limit` jobs matching the filter after `cursor`, with counts per state."""
        low, high = job_filter.score_range()
        # A cursor comes from a listing with the same filter (Cursor.decode checks): it is below `high`.
        start = high if cursor is None else str(cursor.score)
        rows, more, keys, set_counts = self._page(
            args=[start, "" if cursor is None else cursor.job_id, low, limit, result_prefix, high,
                  *job_filter.selector()]
        )
        jobs = [
            IndexedJob(job_id.decode(), _pairs(record), raw_result) for job_id, _score, record, raw_result in rows
        ]
        next_cursor = None
        if more and rows:
            last_id, last_score = rows[-1][0], rows[-1][1]
            next_cursor = Cursor(int(float(last_score)), last_id.decode())
        return Page(jobs, next_cursor, _counts_by_state(keys, set_counts))

    def counts(self, job_filter: JobFilter) -> dict[str, int]:
        """Jobs per state for the filter: one ZCOUNT per selected set."""
        keys, set_counts = self._counts(args=[*job_filter.score_range(), *job_filter.selector()])
        return _counts_by_state(keys, set_counts)

    def sizes(self) -> dict[tuple[str, str], int]:
        """Jobs per (state, task name), in one script: a ZCARD per set, never a scan."""
        keys, sizes = self._sizes()
        totals: dict[tuple[str, str], int] = {}
        for key, size in zip(keys, sizes, strict=True):
            totals[parse_task_index_key(key.decode())] = int(size)
        return totals

    def trim(self, now: float | None = None) -> int:
        """Remove the entries of expired jobs; the number removed. Safe in several
        processes at once; each script call checks at most TRIM_BUDGET entries."""
        cutoff = score_of((time.time() if now is None else now) - self.ttl)
        removed_total = 0
        while True:
            checked, removed = self._trim(args=[cutoff, TRIM_BUDGET])
            removed_total += int(removed)
            if int(checked) < TRIM_BUDGET or not removed:
                return removed_total


def _state_of(key: str) -> str:
    """The state of a set of either family: the first part after the prefix."""
    prefix = INDEX_PREFIX if key.startswith(INDEX_PREFIX) else TASK_INDEX_PREFIX
    return key.removeprefix(prefix).partition(SEPARATOR)[0]


def _pairs(flat: Iterable[bytes]) -> dict[str, str]:
    items = iter(flat)
    return {field.decode(): value.decode() for field, value in zip(items, items, strict=True)}


def _counts_by_state(keys: Iterable[bytes], counts: Iterable[Any]) -> dict[str, int]:
    totals = dict.fromkeys(states.ALL_STATES, 0)
    for key, count in zip(keys, counts, strict=True):
        state = _state_of(key.decode())
        totals[state] = totals.get(state, 0) + int(count)
    return totals


