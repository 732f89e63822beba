"""The broker transport: kombu's Redis transport, with one redis-py client per channel.

kombu builds a new `redis.Redis` object for every publish, ack and requeue
(`Channel.conn_or_acquire`), and building one is not cheap in redis-py 6+: it
copies the response-callback table (redis-py#3624). The connections come from
the channel's pool either way, and a `redis.Redis` is safe to share between
threads, so each channel keeps one. Selected by config.py for redis:// and
rediss:// broker URLs (`broker_transport`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kombu.transport import redis as kombu_redis
from kombu.utils.objects import cached_property


class Channel(kombu_redis.Channel):
    @cached_property
    def _shared_client(self):
        return self._create_client()

    @contextmanager
    def conn_or_acquire(self, client=None) -> Iterator:
        yield client or self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel
