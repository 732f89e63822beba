"""The broker transport: kombu's Redis transport, with one redis-py client per channel.

kombu builds a new `redis.Redis` object for every publish, ack and requeue
(`Channel.conn_or_acquire`), and building one is not cheap in redis-py 6+: it
copies the response-callback table (redis-py#3624). The connections come from
the channel's pool either way, and a `redis.Redis` is safe to share between
threads, so each channel keeps one. make_celery installs it for redis:// and
rediss:// broker URLs (use_for_redis_urls).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.utils.objects import cached_property


class Channel(kombu_redis.Channel):
    @cached_property
    def _shared_client(self) -> redis.Redis:
        client: redis.Redis = self._create_client()  # type: ignore[no-untyped-call]  # kombu is untyped
        return client

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        yield client or self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel


def use_for_redis_urls() -> None:
    """redis:// and rediss:// broker URLs get this transport, through kombu's own table of
    URL schemes. Not Celery's broker_transport setting: that replaces the scheme, which
    kombu reads to turn TLS on for rediss:// and Flower reads to pick its broker view."""
    TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = f"{__name__}:Transport"
