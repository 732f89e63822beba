"""Slots for requests that wait: `?wait=` long-polls and event streams.

Each holds a gunicorn thread for as long as it waits, and a process has only
GUNICORN_THREADS of them. Without a bound, enough open streams would leave no
thread for anything else: submits, status reads, even /healthz would queue
behind them. So a process lets at most MAX_WAITING_REQUESTS of them wait at
once (by default its threads minus 4) and answers the next with a 503 and
Retry-After; the dashboard backs off and tries again.
"""

from __future__ import annotations

import threading

from backend.jobs.errors import ServiceError

# Seconds a refused long-poll or stream should wait: a slot frees as soon as any wait ends.
WAITING_RETRY_AFTER_SECONDS = 2


class Slot:
    """One waiting request's slot; released once, however many times release() is called."""

    def __init__(self, slots: WaitingSlots) -> None:
        self._slots = slots
        self._held = True

    def release(self) -> None:
        with self._slots.lock:
            if not self._held:
                return
            self._held = False
            self._slots.in_use -= 1

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class WaitingSlots:
    def __init__(self, size: int) -> None:
        self.size = size
        self.in_use = 0
        self.lock = threading.Lock()

    def take(self) -> Slot:
        """A slot, or a 503 when every one is taken (never waits for one)."""
        with self.lock:
            if self.in_use >= self.size:
                raise ServiceError(
                    503,
                    "too_many_waiting_requests",
                    f"this API process already holds {self.size} long-polls and event streams; retry shortly",
                    headers={"Retry-After": str(WAITING_RETRY_AFTER_SECONDS)},
                )
            self.in_use += 1
        return Slot(self)
