"""Running limits: how many jobs of one client, or of one task, run at once, cluster-wide.

Celery's `rate_limit` counts per worker and nothing counts running jobs. Here a limit is
a Redis sorted set of slots, one per job running under it (`limits:running:client:billing`,
`limits:running:task:render`), checked when a worker is about to start a job: in the
worker's main process, just before the job goes to the pool (after its countdown, if it
has one). A job's limits are its client's (CLIENT_MAX_RUNNING, or the client's own
`max_running` in the clients file, which the API stamps on the job's message) and its
task's (`max_running` where the task is declared). Jobs sent by code outside the API
belong to no client: only their task's limit applies.

- A job under every limit takes a slot in each and runs.
- A job over a limit is parked: one script moves its message out of the worker's hands
  (kombu's unacked hash) into Redis, `limits:parked`, and queues its id in the limit's
  waiting line (`limits:waiting:client:billing`). The worker acknowledges it and goes on
  with the next message: it holds no parked job and never polls for one, and other
  clients' jobs behind it start at once.
- A slot is held while its job's message is unacknowledged, i.e. while a worker holds it.
  When the job ends (its message acknowledged), or its worker hands it back (stopping,
  a pool process lost), the worker frees the slot and, in the same script, moves the
  oldest parked jobs that now fit to the front of their queue, each with its slot
  reserved for the visibility timeout.
- A worker that dies frees nothing; its slots lapse when kombu's visibility sweep puts
  its messages back on their queues (within BROKER_VISIBILITY_TIMEOUT), and every worker
  moves the parked jobs that fit every PROMOTE_SECONDS, so none waits for an event that
  will not come.

Each step is one Lua script: a job is in exactly one place (its queue, a worker, or a
waiting line), never lost and never run twice. Keys other than the ones passed are built
inside the scripts, which works on a single Redis (and through Sentinel), not Cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from celery.worker.state import task_ready
from kombu.utils.json import dumps

from backend.taskqueue.task import CLIENT_LIMIT_HEADER, OWNER_HEADER
from backend.taskqueue.timer_step import TimerStep
from backend.taskqueue.transport import ADDS_NOTHING_FIRST

logger = logging.getLogger(__name__)

RUNNING_PREFIX = "limits:running:"
WAITING_PREFIX = "limits:waiting:"
# Parked messages by delivery tag: the message as it was queued, and the list it goes back on.
PARKED = "limits:parked"
PARKED_QUEUE = "limits:parked-queue"
# The waiting lines that hold parked jobs, and each line's limit (for the periodic promotion).
WAITING_LINES = "limits:waiting"
LINE_LIMITS = "limits:max"
# Seconds between two promotions by each worker: the longest a parked job waits after a
# slot freed without an acknowledgement (a dead worker's, once its messages went back).
PROMOTE_SECONDS = 2.0

# KEYS[1] unacked_index (a sorted set: the first, no-op write), KEYS[2] the unacked hash,
# then the keys above. Functions the scripts share: Redis scripts cannot import one another.
_FUNCTIONS = ADDS_NOTHING_FIRST + f"""
local held = KEYS[2]
local PARKED, PARKED_QUEUE = '{PARKED}', '{PARKED_QUEUE}'
local WAITING_LINES, LINE_LIMITS = '{WAITING_LINES}', '{LINE_LIMITS}'

-- The slots of `running` still taken, after dropping those that lapsed: a slot scored at
-- or before `now` is taken while a worker holds its message (in the unacked hash); one
-- scored later is reserved for a promoted message until then.
local function taken(running, now)
  for _, tag in ipairs(redis.call('ZRANGEBYSCORE', running, '-inf', now)) do
    if redis.call('HEXISTS', held, tag) == 0 then
      redis.call('ZREM', running, tag)
    end
  end
  return redis.call('ZCARD', running)
end

-- Move the oldest parked jobs of `waiting` that fit under `max` to the front of their
-- queues (RPUSH: the next BRPOP takes them), each with its slot reserved until `reserve`.
local function promote(running, waiting, max, now, reserve)
  local room = max - taken(running, now)
  while room > 0 do
    local popped = redis.call('ZPOPMIN', waiting)
    if #popped == 0 then
      break
    end
    local tag = popped[1]
    local message = redis.call('HGET', PARKED, tag)
    local queue = redis.call('HGET', PARKED_QUEUE, tag)
    redis.call('HDEL', PARKED, tag)
    redis.call('HDEL', PARKED_QUEUE, tag)
    if message and queue then
      redis.call('RPUSH', queue, message)
      redis.call('ZADD', running, reserve, tag)
      room = room - 1
    end
  end
  if redis.call('EXISTS', waiting) == 0 then
    redis.call('SREM', WAITING_LINES, waiting)
    redis.call('HDEL', LINE_LIMITS, waiting)
  end
end
"""

# A job about to start (ARGV[1] its delivery tag, ARGV[2] now in ms) under the limits
# KEYS[3..] (running, waiting pairs) of sizes ARGV[5..]: 'run' with a slot in each, or
# 'parked' (its message, ARGV[3], to go back on the list ARGV[4]) in the waiting line of
# the first limit it is over, or 'gone' when its worker no longer holds the message.
_ADMIT = _FUNCTIONS + """
local tag, now = ARGV[1], tonumber(ARGV[2])
local limits = (#KEYS - 2) / 2
local over = nil
for i = 1, limits do
  local running = KEYS[1 + 2 * i]
  if not redis.call('ZSCORE', running, tag) and taken(running, now) >= tonumber(ARGV[4 + i]) then
    over = i
    break
  end
end
if not over then
  for i = 1, limits do
    redis.call('ZADD', KEYS[1 + 2 * i], now, tag)
  end
  return 'run'
end
if redis.call('HEXISTS', held, tag) == 0 then
  return 'gone'
end
redis.call('HDEL', held, tag)
redis.call('ZREM', KEYS[1], tag)
for i = 1, limits do
  redis.call('ZREM', KEYS[1 + 2 * i], tag)
end
local waiting = KEYS[2 + 2 * over]
redis.call('HSET', PARKED, tag, ARGV[3])
redis.call('HSET', PARKED_QUEUE, tag, ARGV[4])
redis.call('ZADD', waiting, now, tag)
redis.call('SADD', WAITING_LINES, waiting)
redis.call('HSET', LINE_LIMITS, waiting, ARGV[4 + over])
return 'parked'
"""

# The job of delivery tag ARGV[1] ended or was handed back: its slots in KEYS[3..]
# (running, waiting pairs; sizes ARGV[4..]) free, and parked jobs that now fit move.
_RELEASE = _FUNCTIONS + """
local tag, now, reserve = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, (#KEYS - 2) / 2 do
  local running, waiting = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  redis.call('ZREM', running, tag)
  promote(running, waiting, tonumber(ARGV[3 + i]), now, reserve)
end
"""

# Every waiting line: the parked jobs that fit move (slots lapsed with a dead worker).
_PROMOTE_ALL = _FUNCTIONS + f"""
local now, reserve = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, waiting in ipairs(redis.call('SMEMBERS', WAITING_LINES)) do
  local running = '{RUNNING_PREFIX}' .. string.sub(waiting, {len(WAITING_PREFIX) + 1})
  promote(running, waiting, tonumber(redis.call('HGET', LINE_LIMITS, waiting) or '0'), now, reserve)
end
"""


@dataclass(frozen=True)
class Limit:
    """One limit a job is under: `kind` `client` or `task`, the client's or task's name."""

    kind: str
    name: str
    max_running: int

    @property
    def keys(self) -> tuple[str, str]:
        """Its slots and its waiting line."""
        suffix = f"{self.kind}:{self.name}"
        return RUNNING_PREFIX + suffix, WAITING_PREFIX + suffix


def limits_of(request: Any) -> list[Limit]:
    """The limits of the job a Celery request carries: its client's (stamped on its
    message by the API) and its task's."""
    limits = []
    headers = request.request_dict
    owner, client_max = headers.get(OWNER_HEADER), headers.get(CLIENT_LIMIT_HEADER)
    if owner and isinstance(client_max, int) and client_max > 0:
        limits.append(Limit("client", str(owner), client_max))
    task_max = getattr(request.task, "max_running", 0)
    if task_max:
        limits.append(Limit("task", request.task.name, int(task_max)))
    return limits


class RunningLimits:
    """The limits as one worker's main process applies them, on its consumer's channel."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.client: redis.Redis = channel._shared_client
        self._admit = self.client.register_script(_ADMIT)
        self._release = self.client.register_script(_RELEASE)
        self._promote_all = self.client.register_script(_PROMOTE_ALL)
        # Delivery tags of the jobs this process started under limits, and those limits.
        self.held: dict[str, list[Limit]] = {}

    def _state_keys(self) -> list[str]:
        return [self.channel.unacked_index_key, self.channel.unacked_key]

    def _reserve_until(self, now_ms: int) -> int:
        return now_ms + int(self.channel.visibility_timeout * 1000)

    def admit(self, request: Any) -> bool:
        """True: start the job now (it took its slots, or has no limit). False: it is
        parked, or no longer this worker's; either way the caller lets go of it."""
        limits = limits_of(request)
        if not limits:
            return True
        message = request.message
        tag = message.delivery_tag
        keys = [key for limit in limits for key in limit.keys]
        payload = dumps(message._raw)  # type: ignore[no-untyped-call]  # kombu is untyped
        args = [tag, _now_ms(), payload, self._queue_of(message), *(limit.max_running for limit in limits)]
        outcome = self._admit(keys=[*self._state_keys(), *keys], args=args).decode()
        if outcome == "run":
            self.held[tag] = limits
            return True
        if outcome == "parked":
            logger.info("job %s waits for a slot: %s", request.id, ", ".join(_label(limit) for limit in limits))
        return False

    def release(self, tag: str) -> None:
        """The job of delivery tag `tag` ended or went back: its slots free (see _RELEASE).
        A failure is only logged: the slot lapses by itself, and the next promotion moves
        what it held back."""
        limits = self.held.pop(tag, None)
        if limits is None:
            return
        now = _now_ms()
        keys = [key for limit in limits for key in limit.keys]
        try:
            self._release(
                keys=[*self._state_keys(), *keys],
                args=[tag, now, self._reserve_until(now), *(limit.max_running for limit in limits)],
            )
        except redis.RedisError as exc:
            logger.warning("could not free the running slots of %s: %r", tag, exc)

    def promote_waiting(self) -> None:
        """Move the parked jobs that fit, whichever worker parked them."""
        now = _now_ms()
        try:
            self._promote_all(keys=self._state_keys(), args=[now, self._reserve_until(now)])
        except redis.RedisError as exc:
            logger.warning("could not move parked jobs: %r", exc)

    def _queue_of(self, message: Any) -> str:
        """The list the message goes back on: its queue's, at its priority (as kombu's _put)."""
        priority = self.channel._get_message_priority(message._raw, reverse=False)
        key: str = self.channel._q_for_pri(self.channel.queue_of(message), priority)
        return key


def _now_ms() -> int:
    return int(time.time() * 1000)


def _label(limit: Limit) -> str:
    return f"{limit.kind} {limit.name} runs at most {limit.max_running}"


def start_within_limits(consumer: Any, handle: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap the consumer's `on_task_request` (which hands a request to the pool, after its
    countdown if any): a request over a limit is parked instead and let go of here."""

    def on_task_request(request: Any) -> Any:
        limits: RunningLimits | None = getattr(consumer, "running_limits", None)
        if limits is None or limits.admit(request):
            return handle(request)
        # No longer this worker's: out of its books, and its (moved) message acknowledged.
        task_ready(request)
        request.acknowledge()
        return None

    return on_task_request


class LimitRunningJobs(TimerStep):
    """Applies the limits on the consumer's channel, frees slots as its messages settle,
    and moves parked jobs on a timer of the worker's event loop."""

    def start(self, c: Any) -> None:
        channel = c.task_consumer.channel
        if not hasattr(channel, "unacked_key"):
            return  # not the Redis transport
        limits = RunningLimits(channel)
        c.running_limits = limits
        channel.qos.on_settled = limits.release
        self.repeat(c, PROMOTE_SECONDS, limits.promote_waiting)

    def stop(self, c: Any) -> None:
        c.running_limits = None
        super().stop(c)

    shutdown = stop
