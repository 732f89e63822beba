"""The broker transport: kombu's Redis transport, with one redis-py client per channel,
and a message a worker takes recorded even when Redis is full.

kombu builds a new `redis.Redis` object for every publish, ack and requeue
(`Channel.conn_or_acquire`), and building one is not cheap in redis-py 6+: it
copies the response-callback table (redis-py#3624). The connections come from
the channel's pool either way, and a `redis.Redis` is safe to share between
threads, so each channel keeps one. make_celery installs it for redis:// and
rediss:// broker URLs, and its Sentinel variant for sentinel:// ones (use_for_redis_urls).

Through Sentinel, a publish waits until a replica has its message (WAIT): what
the API accepted (202) survives the master's death, since Sentinel promotes that
replica. docs/operations.md says what it costs.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import time
from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps
from kombu.utils.objects import cached_property

from backend.jobs.errors import is_redis_full
from backend.jobs.queues import UNACKED_PREFIX
from backend.taskqueue.recorded_publish import pending_for

logger = logging.getLogger(__name__)

# Redis at maxmemory (noeviction) refuses the first write of a script that may add data,
# not the writes after it: a script is atomic, so once it has written it runs to its end
# (Redis' and Valkey's script.c; a script with a `#!lua` line is refused whole instead,
# and Redis 6 has none). A script that only moves or rescores what Redis already holds
# starts with this write, which adds nothing, and a full Redis runs it to its end.
ADDS_NOTHING_FIRST = "redis.call('ZREM', KEYS[1], '')\n"

# The message BRPOP just took off its queue, recorded as unacknowledged: scored by time
# in KEYS[1] (the index the visibility sweep reads), its payload in KEYS[2], and scored in
# KEYS[3], its queue's own set of held messages (what GET /queues counts as running).
_HOLD = ADDS_NOTHING_FIRST + """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
"""


@dataclass(frozen=True)
class HeldAtLoss:
    """A message this process held when its connection to Redis died."""

    lost_at: float  # time()
    hold: str  # what the unacked hash keeps: JSON of [message, exchange, routing key]


# Messages a channel still held when its connection died (a Redis restart, a failover), by
# delivery tag. kombu hands a closing channel's messages back to their queues, but not
# through a dead connection; they wait in Redis' unacked hash, and would come back only
# when their lease lapses, one visibility timeout later. Instead, the next sweep of this
# process hands them back as soon as Redis answers (QoS.hand_back_held). Process-wide: a
# reconnect makes a new connection, transport and channel.
_HELD_AT_LOSS: dict[str, HeldAtLoss] = {}


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # kombu is untyped
        # Messages to put back on their queue that a full Redis refused (see reject).
        self.requeue_refused: set[str] = set()
        # Called with a delivery tag once its message is no longer this worker's (acknowledged,
        # rejected, handed back): the running limits free its slots (running_limits.py).
        self.on_settled: Callable[[str], None] | None = None

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        """kombu's, and the message leaves its queue's set of held messages (the same pipeline)."""
        pipe = super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[no-untyped-call]  # kombu is untyped
        message = self._delivered.get(delivery_tag)
        if message is not None:
            pipe.zrem(self.channel.unacked_key_of(message), delivery_tag)
        return pipe

    def _settled(self, delivery_tag: str) -> None:
        if self.on_settled is not None:
            self.on_settled(delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]  # kombu is untyped
        self._settled(delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        """kombu's: every message this channel holds back on its queue (the channel closes).
        Through a dead connection, those not handed back are left to the next sweep."""
        tags = list(self._delivered)
        try:
            super().restore_unacked(client)  # type: ignore[no-untyped-call]  # kombu is untyped
        except self.channel.connection_errors:
            lost_at = time()
            for tag, message in self._delivered.items():
                _HELD_AT_LOSS[tag] = HeldAtLoss(lost_at, hold_of(message))
            raise
        finally:
            for tag in tags:
                self._settled(tag)

    def hand_back_held(self) -> int:
        """Put the messages this process held when a connection died back on their queues
        (at the front: they were running or next); how many went back."""
        handed_back = 0
        with self.channel.conn_or_acquire() as client:
            for tag, held in list(_HELD_AT_LOSS.items()):
                handed_back += self._hand_back(tag, held, client)
                del _HELD_AT_LOSS[tag]
        if handed_back:
            logger.info("handed back %d messages held when the connection to Redis was lost", handed_back)
        return handed_back

    def _hand_back(self, tag: str, held: HeldAtLoss, client: redis.Redis) -> int:
        """kombu's restore_by_tag (a WATCH transaction), with two cases of its own:

        - the lease was renewed after the loss: another worker has the message (the visibility
          sweep gave it out, Redis having been away longer than the timeout). It stays there.
        - Redis has no hold at all: through Sentinel, the master died after its replica saw the
          worker take the message off its queue but before it saw the hold. The message is
          then only in this process: it goes back from memory, unless it is on its queue (the
          replica never saw it taken) or the loss is older than half a visibility timeout (by
          then another worker may have had it from a sweep, and finished it).
        """
        message, exchange, routing_key = json.loads(held.hold)
        queue_keys = self._queue_keys_of(message, exchange, routing_key)
        restored = False

        def transaction(pipe: Any) -> None:
            nonlocal restored
            score, hold = pipe.zscore(self.unacked_index_key, tag), pipe.hget(self.unacked_key, tag)
            if hold is None and score is None:
                restored = time() - held.lost_at < self.channel.visibility_timeout / 2 and not any(
                    pipe.lpos(key, form) is not None for key in queue_keys for form in _queued_forms(message)
                )
                hold = held.hold
            else:
                restored = score is not None and hold is not None and score <= held.lost_at
            pipe.multi()
            if restored:
                pipe.zrem(self.unacked_index_key, tag)
                pipe.hdel(self.unacked_key, tag)
                for queue in self.channel._lookup(exchange, routing_key):
                    pipe.zrem(UNACKED_PREFIX + queue, tag)
                self.channel._do_restore_message(json.loads(hold)[0], exchange, routing_key, pipe, leftmost=False)

        client.transaction(transaction, self.unacked_key, self.unacked_index_key, *queue_keys)
        return int(restored)

    def _queue_keys_of(self, message: dict[str, Any], exchange: str, routing_key: str) -> list[str]:
        """The lists the message would be restored to: its queues' at its priority."""
        priority = self.channel._get_message_priority(message, reverse=False)
        queues = self.channel._lookup(exchange, routing_key)
        return [self.channel._q_for_pri(queue, priority) for queue in queues]

    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's append, as one script a full Redis runs. kombu's own MULTI is refused
        then, after BRPOP took the message off its queue: the message lived only in the
        worker's memory, and the error stopped the worker ("Unrecoverable error:
        OutOfMemoryError"). This moves a message Redis held; it adds none."""
        hold = hold_of(message)
        try:
            with self.channel.conn_or_acquire() as client:
                self.channel.hold_script(
                    keys=[self.unacked_index_key, self.unacked_key, self.channel.unacked_key_of(message)],
                    args=[time(), delivery_tag, hold],
                    client=client,
                )
        except self.channel.connection_errors:
            # BRPOP took it off its queue: if the hold never reached Redis, only this process has it.
            _HELD_AT_LOSS[delivery_tag] = HeldAtLoss(time(), hold)
            raise
        # Skips kombu_redis.QoS.append (the MULTI) for the base class's bookkeeping.
        virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]  # kombu is untyped

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """kombu's reject; a requeue that a full Redis refuses (the job of a pool process
        that died) is tried again by each sweep, the message held and leased meanwhile."""
        try:
            super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]  # kombu is untyped
        except Exception as exc:
            if not (requeue and is_redis_full(exc)):
                raise
            logger.warning("Redis is full: message %s goes back on its queue once memory frees", delivery_tag)
            self.requeue_refused.add(delivery_tag)
        self._settled(delivery_tag)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """kombu's sweep of lapsed leases, after the messages held when a connection died
        and the requeues a full Redis refused; skipped
        while Redis is full: its lock is a write a full Redis refuses (else an error with a
        traceback every sweep, in the log), and so is a requeue. The next sweep runs."""
        try:
            self.hand_back_held()
            for tag in tuple(self.requeue_refused):
                super().reject(tag, requeue=True)  # type: ignore[no-untyped-call]  # kombu is untyped
                self.requeue_refused.discard(tag)
            super().restore_visible(*args, **kwargs)  # type: ignore[no-untyped-call]  # kombu is untyped
        except Exception as exc:
            if not is_redis_full(exc):
                raise
            logger.debug("visibility sweep skipped: Redis is full")


def hold_of(message: Any) -> str:
    """What the unacked hash keeps of a message it holds, as kombu writes it."""
    delivery = message.delivery_info
    return json.dumps([message._raw, delivery["exchange"], delivery["routing_key"]])


def _queued_forms(message: dict[str, Any]) -> tuple[str, str]:
    """The message as it sits on a queue: as it was sent, and as a hand-back leaves it
    (marked redelivered, as kombu's _do_restore_message marks it)."""
    redelivered = copy.deepcopy(message)
    try:
        redelivered["headers"]["redelivered"] = True
        redelivered["properties"]["delivery_info"]["redelivered"] = True
    except KeyError:
        pass
    return dumps(message), dumps(redelivered)  # type: ignore[no-untyped-call]  # kombu is untyped


class Channel(kombu_redis.Channel):
    QoS = QoS

    @cached_property
    def _shared_client(self) -> redis.Redis:
        client: redis.Redis = self._create_client()  # type: ignore[no-untyped-call]  # kombu is untyped
        return client

    @cached_property
    def hold_script(self) -> Any:
        return self._shared_client.register_script(_HOLD)

    @cached_property
    def _queues_by_route(self) -> dict[tuple[str, str], str]:
        return {}

    def queue_of(self, message: Any) -> str:
        """The queue a delivered message came from: kombu's lookup of its exchange and routing
        key (a Redis read), done once per route."""
        delivery = message.delivery_info
        route = (delivery.get("exchange") or "", delivery.get("routing_key") or "")
        known: dict[tuple[str, str], str] = self._queues_by_route
        if route not in known:
            known[route] = str(self._lookup(*route)[0])  # type: ignore[no-untyped-call]  # kombu is untyped
        return known[route]

    def unacked_key_of(self, message: Any) -> str:
        """The set of held messages of the message's queue (backend/jobs/queues.py)."""
        return UNACKED_PREFIX + self.queue_of(message)

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        yield client or self._shared_client

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's _put; a job's message whose record is pending (recorded_publish.py) is
        pushed by the script that writes the record, in the same round trip."""
        if kwargs.get("_publish_batch") is not None or queue in (self._expires or {}):
            super()._put(queue, message, **kwargs)  # type: ignore[no-untyped-call]  # kombu is untyped
            return
        with self.conn_or_acquire() as client:
            self._push(self._queue_key(queue, message), dumps(message), message, client)  # type: ignore[no-untyped-call]

    def _queue_key(self, queue: str, message: Any) -> str:
        """The list the message goes on: its queue's, or the list of its priority step."""
        key: str = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))  # type: ignore[no-untyped-call]
        return key

    @staticmethod
    def _push(key: str, payload: str, message: Any, client: Any) -> None:
        """LPUSH `payload` on `key` with `client` (a connection or a pipeline), with the
        job's pending record written first in the same script when there is one."""
        pending = pending_for(message)
        if pending is None:
            client.lpush(key, payload)
        else:
            pending.push(key, payload, client)


class Transport(kombu_redis.Transport):
    Channel = Channel


class NotReplicated(redis.exceptions.ConnectionError):
    """The master has a replica, and it did not take a published message in time: the
    message was taken back, and the caller (the API: a 503) may publish it again. A
    ConnectionError: for the API, such a master is as good as unavailable."""


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """Our channel (QoS, shared client) on kombu's Sentinel channel: connections go to
    whichever server the sentinels name master."""

    from_transport_options = (  # type: ignore[assignment]  # one option more than kombu's
        *kombu_redis.SentinelChannel.from_transport_options, "replica_wait_ms",
    )
    # Milliseconds a publish waits for a replica (config.REDIS_SENTINEL_WAIT_MS); 0: no wait.
    replica_wait_ms = 0
    # Replicas the master had at the last publish (its ROLE): 0 after a failover left the
    # promoted master alone, and a publish then does not wait for a replica that is not there.
    replicas = 1

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's _put, then WAIT on the same connection: WAIT covers that connection's
        writes and, replication being one ordered stream, all written before them, such as
        the job's record. A master with a replica that did not take it in time takes it back."""
        if not self.replica_wait_ms or kwargs.get("_publish_batch") is not None or queue in (self._expires or {}):
            super()._put(queue, message, **kwargs)
            return
        key = self._queue_key(queue, message)
        payload = dumps(message)  # type: ignore[no-untyped-call]  # kombu is untyped
        with self.conn_or_acquire() as client:
            with client.pipeline(transaction=False) as pipe:
                self._push(key, payload, message, pipe)
                pipe.wait(min(self.replicas, 1), self.replica_wait_ms)
                pipe.execute_command("ROLE")
                _, acknowledged, role = pipe.execute()
            # ROLE, on a master: ["master", offset, [[host, port, offset], ...]].
            self.replicas = len(role[2])
            if acknowledged < 1 and self.replicas:
                client.lrem(key, 1, payload)
                raise NotReplicated(f"no replica took the message within {self.replica_wait_ms} ms")


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def use_for_redis_urls() -> None:
    """redis:// and rediss:// broker URLs get this transport, sentinel:// ones its Sentinel
    variant, through kombu's own table of URL schemes. Not Celery's broker_transport setting:
    that replaces the scheme, which kombu reads to turn TLS on for rediss:// and Flower
    reads to pick its broker view."""
    TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = f"{__name__}:Transport"
    TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"
