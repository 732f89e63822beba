"""Task records: what Celery's result backend cannot tell us.

Celery reports PENDING both for a queued task and for an id nobody ever
submitted. A small Redis hash per task (`job:<id>`), written before the
message is published, tells them apart, and holds the timestamps and the
cancellation flag. It lives beside the results and expires with them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import redis
from redis.client import PubSub

KEY_PREFIX = "job:"

# Atomic with the API's cancel: a task either starts or is cancelled first,
# never both. A record missing (e.g. a task sent by other code) is created so
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

# Returns 1 when the task had not started yet (so it never will), 0 otherwise.
_REQUEST_CANCEL = """
redis.call('HSETNX', KEYS[1], 'cancel_requested_at', ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'started_at') == 1 then
  return 0
end
return 1
"""


# How long to wait for Redis to confirm a subscription when the client has no socket timeout.
DEFAULT_REPLY_TIMEOUT = 5.0


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Subscription:
    """Messages published on one channel, from the moment Redis confirmed the subscription.

    SUBSCRIBE takes effect when Redis serves it, not when it is sent, and Redis may
    serve a command sent later on another connection first: a status read there,
    then a change published before the subscription took effect, and that change is
    never heard of. It happened to 1-2 of every 330 long-polls in make bench, which
    then waited out their whole bound. So the status read that must follow the
    subscription follows confirm(), and wait() refuses to run before it.
    """

    def __init__(
        self, pubsub: PubSub, channel: bytes | str, reply_timeout: float,
        renew: Callable[[], PubSub] | None = None,
    ):
        """Send the SUBSCRIBE; confirm() waits for Redis to serve it.

        `renew`, for a kept connection, which may have died since its last use (Redis
        restarted): a fresh PubSub to start again with, once, if this one turns out closed.
        """
        self.pubsub = pubsub
        self.channel = channel.encode() if isinstance(channel, str) else channel
        self.reply_timeout = reply_timeout
        self.confirmed = False
        self._renew = renew
        try:
            pubsub.subscribe(self.channel)
        except redis.ConnectionError as error:
            self._start_afresh(error)

    def confirm(self) -> None:
        if self.confirmed:
            return
        try:
            confirmed = self._receive("subscribe", self.reply_timeout)
        except redis.ConnectionError as error:
            self._start_afresh(error)
            confirmed = self._receive("subscribe", self.reply_timeout)
        if not confirmed:
            raise redis.TimeoutError(f"Redis did not confirm the subscription to {self.channel!r}")
        self.confirmed = True

    def _start_afresh(self, error: redis.ConnectionError) -> None:
        """Subscribe again on a new connection; `error` when there is none to try."""
        renew, self._renew = self._renew, None
        if renew is None:
            raise error
        self.pubsub.close()
        self.pubsub = renew()
        self.pubsub.subscribe(self.channel)

    def wait(self, timeout: float) -> bool:
        """True when a message on the channel arrives within `timeout` s, else False.
        The messages received with it are read too: a burst needs one status read."""
        if not self.confirmed:
            raise RuntimeError("confirm() the subscription, then read the status, then wait")
        if not self._receive("message", timeout):
            return False
        while self.pubsub.get_message(timeout=0) is not None:
            pass
        return True

    def close(self) -> None:
        self.pubsub.close()

    def _receive(self, kind: str, timeout: float) -> bool:
        """Read until a `kind` message of this channel; what else arrives (confirmations
        and messages of a kept connection's earlier channels) is skipped."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.pubsub.get_message(timeout=remaining)
            if message is not None and message["type"] == kind and message["channel"] == self.channel:
                return True
        return False


class TaskRecords:
    """Reads and writes `job:<id>` hashes with one Redis client."""

    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl = ttl_seconds
        self._start = client.register_script(_START_UNLESS_CANCELLED)
        self._cancel = client.register_script(_REQUEST_CANCEL)
        self._uncount = client.register_script(_UNCOUNT_DELIVERY)
        self._waiters = threading.local()

    @staticmethod
    def key(task_id: str) -> str:
        return KEY_PREFIX + task_id

    @staticmethod
    def new_record(name: str) -> dict[str, str]:
        """The fields of a record when its task is submitted (the worker adds the rest)."""
        return {"name": name, "submitted_at": utcnow_iso()}

    def create(self, task_id: str, name: str) -> None:
        pipe = self.client.pipeline()
        pipe.hset(self.key(task_id), mapping=self.new_record(name))
        pipe.expire(self.key(task_id), self.ttl)
        pipe.execute()

    def delete(self, task_id: str) -> None:
        self.client.delete(self.key(task_id))

    def get(self, task_id: str) -> dict[str, str] | None:
        return self._decode(self.client.hgetall(self.key(task_id)))

    def get_with(self, task_id: str, other_key: str) -> tuple[dict[str, str] | None, bytes | None]:
        """The record and the raw value of `other_key` (the task's result, which lives
        in the same Redis) in one round trip: half the cost of a status read."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.key(task_id))
        pipe.get(other_key)
        raw_record, value = pipe.execute()
        return self._decode(raw_record), value

    @staticmethod
    def _decode(raw: dict[bytes, bytes]) -> dict[str, str] | None:
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    def subscription(self, channel: bytes | str) -> Subscription:
        """A pub/sub connection of its own, subscribed to `channel` (confirmed); close() it when done."""
        pubsub = self.client.pubsub()
        try:
            subscription = Subscription(pubsub, channel, self._reply_timeout())
            subscription.confirm()
            return subscription
        except BaseException:
            pubsub.close()
            raise

    @contextmanager
    def subscribed(self, channel: bytes | str) -> Iterator[Subscription]:
        """This thread's pub/sub connection, subscribing to `channel` while in the block:
        the SUBSCRIBE is sent, the caller confirm()s it when it needs it in effect.

        Kept for the thread's next wait: a new connection per long-poll (connect,
        handshake, close) cost 0.6 ms of a 6 ms end-to-end no-op (make bench). Messages
        and confirmations of an earlier wait that arrive late are skipped by the next
        one. An error of the caller's own (a 404, a 503 for too many waits) leaves the
        connection as it was; any other closes it, so no broken state is kept.
        """
        pubsub = getattr(self._waiters, "pubsub", None)
        if pubsub is not None and set(pubsub.channels) - set(pubsub.pending_unsubscribe_channels):
            # Still subscribed to an earlier channel: redis-py re-subscribes every known
            # channel when it reconnects, pending unsubscribes included. Start afresh.
            pubsub.close()
            pubsub = None
        renew = self._new_kept_pubsub if pubsub is not None else None
        if pubsub is None:
            pubsub = self._new_kept_pubsub()
        subscription = None
        kept = False
        try:
            subscription = Subscription(pubsub, channel, self._reply_timeout(), renew)
            try:
                yield subscription
            except redis.RedisError:
                raise
            except Exception:
                self._end(subscription)
                kept = True
                raise
            self._end(subscription)
            kept = True
        finally:
            if not kept:
                self._waiters.pubsub = None
                (subscription.pubsub if subscription is not None else pubsub).close()

    def _new_kept_pubsub(self) -> PubSub:
        pubsub = self._waiters.pubsub = self.client.pubsub()
        return pubsub

    @staticmethod
    def _end(subscription: Subscription) -> None:
        # Read its confirmation even if the caller never needed it (it is usually here
        # already), so a later wait on this connection cannot take it for its own.
        subscription.confirm()
        subscription.pubsub.unsubscribe(subscription.channel)

    def _reply_timeout(self) -> float:
        return self.client.get_connection_kwargs().get("socket_timeout") or DEFAULT_REPLY_TIMEOUT

    def start_unless_cancelled(
        self, task_id: str, name: str, attempt: int = 0, started: tuple[bytes | str, str] | None = None
    ) -> int:
        """Mark the task started and store `started` (result key, STARTED meta as JSON):
        0 if it was cancelled before it started, else the number of times this attempt
        has now been delivered (1 normally)."""
        keys, meta = [self.key(task_id)], ""
        if started is not None:
            result_key, meta = started
            keys.append(result_key)
        return int(self._start(keys=keys, args=[utcnow_iso(), self.ttl, name, attempt, meta]))

    def uncount_delivery(self, task_id: str, attempt: int = 0) -> None:
        """The worker handed this delivery back on purpose: do not count it as a death."""
        self._uncount(keys=[self.key(task_id)], args=[attempt])

    def request_cancel(self, task_id: str) -> bool:
        """Flag the task cancelled; True if it had not started (it never will)."""
        return bool(self._cancel(keys=[self.key(task_id)], args=[utcnow_iso()]))

    def is_cancel_requested(self, task_id: str) -> bool:
        return bool(self.client.hexists(self.key(task_id), "cancel_requested_at"))
