"""Following a job as it changes: Redis pub/sub on the channel its state is published on.

Every state the worker stores is also published on the job's result key
(backend/taskqueue/results.py). The long-poll and the event stream both wait on
that channel through a Watch, the one place that orders "subscribe, confirm,
read the status, wait": a read before the subscription is in effect could miss
a change published in between, and the wait would then last its whole bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import redis
from redis.client import PubSub

# How long to wait for Redis to confirm a subscription when the client has no socket timeout.
DEFAULT_REPLY_TIMEOUT = 5.0

Status = TypeVar("Status")


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


class Subscriptions:
    """Pub/sub connections of one Redis client: a new one per event stream, and one
    kept per thread for long-polls."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._kept = threading.local()

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
        pubsub = getattr(self._kept, "pubsub", None)
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
                self._kept.pubsub = None
                (subscription.pubsub if subscription is not None else pubsub).close()

    def _new_kept_pubsub(self) -> PubSub:
        pubsub: PubSub = self.client.pubsub()
        self._kept.pubsub = pubsub
        return pubsub

    @staticmethod
    def _end(subscription: Subscription) -> None:
        # Read its confirmation even if the caller never needed it (it is usually here
        # already), so a later wait on this connection cannot take it for its own.
        subscription.confirm()
        subscription.pubsub.unsubscribe(subscription.channel)

    def _reply_timeout(self) -> float:
        return float(self.client.get_connection_kwargs().get("socket_timeout") or DEFAULT_REPLY_TIMEOUT)


class Watch(Generic[Status]):
    """A job's status, read only once its subscription is in effect, and its changes.

    The race-sensitive order lives here and nowhere else: confirm the subscription,
    then read the status, then wait for a message and read again. `status` is the
    last status read; `read` reads it (a 404 or 503 it raises goes to the caller).
    """

    def __init__(self, subscription: Subscription, read: Callable[[], Status]) -> None:
        self.subscription = subscription
        self._read = read
        subscription.confirm()
        self.status = read()

    def next_change(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a message on the job's channel, then read the status
        again; True when it differs from the last one (`status` is then the new one)."""
        if not self.subscription.wait(timeout):
            return False
        return self.refresh()

    def refresh(self) -> bool:
        """Read the status again without waiting (a heartbeat's safety net: a change
        published while the connection was reconnecting is heard of no other way)."""
        current = self._read()
        changed = current != self.status
        self.status = current
        return changed
