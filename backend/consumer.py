"""The worker's consumer, reconnecting to Redis within seconds of its return.

kombu retries a lost broker connection after 2, 4, 6 ... up to 30 seconds, so a
worker could stay idle for half a minute after Redis is back. Celery exposes no
setting for these intervals, so this subclass passes short ones (config:
worker_consumer).
"""

from __future__ import annotations

from functools import partial

from celery.worker.consumer import Consumer

# Seconds between reconnect attempts: first, step, and cap.
RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 1.0}


class QuickReconnectConsumer(Consumer):
    def ensure_connected(self, conn):
        conn.ensure_connection = partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        return super().ensure_connected(conn)
