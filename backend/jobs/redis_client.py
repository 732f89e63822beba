"""The one Redis client of an app's job service: records, index, subscriptions,
idempotency keys, rate-limit counts and readiness all use it (create_app builds it).

A plain URL is redis-py's from_url. A Sentinel location asks the sentinels for the
current master on every new connection, so after a failover the client reaches the
promoted replica by itself: a connection to a dead master fails (a 503 for a request),
one to a demoted master is dropped on its READONLY reply, and the next one is made
to whichever server the sentinels name then.
"""

from __future__ import annotations

import redis
from redis.sentinel import Sentinel

from config import BaseConfig, RedisLocation


def redis_client(config: BaseConfig, location: RedisLocation | None = None) -> redis.Redis:
    """A client of RESULT_BACKEND's Redis (or of `location`'s); it connects lazily, on first use."""
    location = location or config.RESULT_BACKEND_LOCATION
    timeouts = {
        "socket_timeout": config.REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": config.REDIS_CONNECT_TIMEOUT,
    }
    if not location.through_sentinel:
        return redis.Redis.from_url(location.url, **timeouts)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis.sentinel is untyped
        list(location.sentinels), sentinel_kwargs=config.sentinel_kwargs(), **timeouts
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        config.REDIS_SENTINEL_MASTER, db=location.db, username=location.username, password=location.password
    )
    return client
