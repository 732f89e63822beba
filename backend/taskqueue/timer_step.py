"""The base of the worker's consumer steps that run work on a timer of its event loop, in
its main process (leases, the index trim, the running limits, the schedule's mover). The
consumer starts them once connected, after its task strategies, and stops them when the
connection goes or the worker stops; each start is on the new connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import bootsteps


class TimerStep(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.timer_entry = None
        super().__init__(c, **kwargs)

    def repeat(self, c: Any, seconds: float, function: Callable[..., Any], args: tuple[Any, ...] = ()) -> None:
        """Call `function(*args)` every `seconds` until the step stops."""
        self.timer_entry = c.timer.call_repeatedly(seconds, function, args)

    def stop(self, c: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    shutdown = stop
