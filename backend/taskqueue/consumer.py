"""The worker's consumer: Celery's, with two changes (config: worker_consumer).

- It reconnects to Redis within a second of its return. kombu retries a lost
  broker connection after 2, 4, 6 ... up to 30 seconds, so a worker could stay
  idle for half a minute after Redis is back, and Celery has no setting for it.
- Tasks it hands back on shutdown (cancelled after the soft-shutdown grace
  period, to go back on the queue) are not counted as deliveries that died:
  otherwise a few rolling deploys would fail a healthy long task with
  DeliveryLimitExceeded (see TASK_MAX_DELIVERIES).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from celery.worker.consumer import Consumer
from celery.worker.state import active_requests

logger = logging.getLogger(__name__)

# Seconds between reconnect attempts: first, step, and cap.
RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 1.0}


class JobsConsumer(Consumer):
    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        return super().ensure_connected(conn)

    def cancel_active_requests(self) -> Any:
        """Called by the cold (after soft) shutdown to cancel and requeue running tasks."""
        records = self.app.Task.records
        for request in tuple(active_requests):
            try:
                records.uncount_delivery(request.id, request.request_dict.get("retries") or 0)
            except Exception as exc:  # Redis may be gone too: the shutdown must go on
                logger.warning("could not uncount the delivery of %s: %r", request.id, exc)
        return super().cancel_active_requests()
