"""Visibility leases: a live worker keeps its messages, a dead worker's come back fast.

Celery on Redis keeps each delivered, not yet acknowledged message in a sorted
set (`unacked_index`) scored by its delivery time. Every worker sweeps that set
and puts back on its queue any message whose score is older than the visibility
timeout. That is how a task survives a worker killed mid-run. With a fixed score
it is also how a healthy task that runs longer than the timeout is handed to a
second worker and runs twice (celery#5935), so deployments set the timeout to
hours, and a dead worker's task then waits hours.

This consumer step renews the lease instead. Every few seconds the worker's main
process rescores the messages it holds to "now". A live worker never loses a
message, however long its task runs. A dead worker stops renewing, so its messages
come back one visibility timeout later. The timeout can therefore be short
(config.BROKER_VISIBILITY_TIMEOUT).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.concurrency.solo import TaskPool as SoloPool

from backend.taskqueue.timer_step import TimerStep
from backend.taskqueue.transport import ADDS_NOTHING_FIRST

logger = logging.getLogger(__name__)

# Renew this many times per visibility timeout: several renewals can be
# missed (a slow Redis, a busy event loop) before a live worker loses a message.
RENEWALS_PER_TIMEOUT = 6

# The held messages (ARGV[3:]: pairs of a delivery tag and its queue's set of held messages)
# still unacknowledged, rescored to ARGV[1]; never re-adds an acknowledged one. A rescore
# adds no data, so it starts as transport.ADDS_NOTHING_FIRST says and a full Redis runs it:
# a lease that lapsed while Redis refused ZADD would hand the job this worker still runs to
# another worker once memory is freed.
# Each queue's set is rescored too, and loses its entries older than ARGV[2]: those of dead
# workers, which no one acknowledges (backend/jobs/queues.py counts only live leases).
_RENEW = ADDS_NOTHING_FIRST + """
local renewed = 0
local pruned = {}
for i = 3, #ARGV, 2 do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[1], ARGV[i])
  redis.call('ZADD', ARGV[i + 1], 'XX', ARGV[1], ARGV[i])
  if not pruned[ARGV[i + 1]] then
    redis.call('ZREMRANGEBYSCORE', ARGV[i + 1], '-inf', '(' .. ARGV[2])
    pruned[ARGV[i + 1]] = true
  end
end
return renewed
"""


class RenewLeases(TimerStep):
    """Rescores this worker's unacknowledged messages on a timer of the worker's event loop.

    It runs in the main process, not in the task (with the prefork or threads pool):
    it covers every task, prefetched and ETA messages too. It stops when the main
    process stops, which is the point. While Celery waits out the soft-shutdown grace
    period it renews nothing, hence config's limit on WORKER_SOFT_SHUTDOWN_TIMEOUT.
    """

    def start(self, c: Any) -> None:
        channel = c.task_consumer.channel
        if not hasattr(channel, "unacked_index_key"):
            return  # not the Redis transport: nothing to renew
        if isinstance(c.pool, SoloPool):
            # The solo pool runs tasks in the event loop itself: no renewal while a
            # task runs, so one longer than the visibility timeout would run twice.
            logger.error(
                "--pool solo cannot renew visibility leases while a task runs: a task longer than "
                "%s s will be run again by another worker. Use the default prefork pool.",
                channel.visibility_timeout,
            )
        interval = max(channel.visibility_timeout / RENEWALS_PER_TIMEOUT, 0.5)
        self.repeat(c, interval, renew_leases, (channel,))


def held_delivery_tags(channel: Any) -> list[str]:
    """Delivery tags this channel holds and has not acknowledged.

    kombu keeps no public list of them; its QoS tracks delivered messages in
    `_delivered` and acknowledged ones in `_dirty` until they are flushed.
    (The lock pins kombu; tests/reliability guard this.)
    """
    qos = channel.qos
    return [tag for tag in list(qos._delivered) if tag not in qos._dirty]


def renew_leases(channel: Any) -> int:
    """Rescore the held messages to now; returns how many were renewed."""
    tags = held_delivery_tags(channel)
    if not tags:
        return 0
    delivered = channel.qos._delivered
    pairs = [part for tag in tags if (message := delivered.get(tag)) for part in (tag, channel.unacked_key_of(message))]
    now = time.time()
    try:
        with channel.conn_or_acquire() as client:
            renewed = client.register_script(_RENEW)(
                keys=[channel.unacked_index_key], args=[now, now - 2 * channel.visibility_timeout, *pairs]
            )
            return int(renewed)
    except channel.connection_errors + channel.channel_errors as exc:
        # The consumer reconnects on its own; missed renewals are what the
        # margin of RENEWALS_PER_TIMEOUT is for.
        logger.warning("could not renew visibility leases of %d messages: %r", len(tags), exc)
        return 0
