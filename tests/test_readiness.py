"""/readyz pings the workers once per READYZ_CACHE_SECONDS per API process: a ping holds
its request for the whole READYZ_PING_TIMEOUT, and /readyz needs no token."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from config import ConfigError, load_config

# kombu's Redis transport broadcasts a ping on its fanout channel, "/<db>.celery.pidbox".
# Pub/sub spans databases: the other tests' workers and Flower ping in theirs.
PING_CHANNEL = "/{db}.celery.pidbox"


class PingCounter:
    """Counts the ping broadcasts sent to one database of a real Redis."""

    def __init__(self, redis_url: str):
        # Kept: a client that is collected closes its pool's connections, this one's too.
        self.client = redis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(PING_CHANNEL.format(db=self.client.get_connection_kwargs()["db"]))
        confirmation = self.pubsub.get_message(timeout=5)  # from here on, no ping is missed
        assert confirmation is not None and confirmation["type"] == "subscribe"

    def count(self) -> int:
        seen = 0
        while (message := self.pubsub.get_message(timeout=0.5)) is not None:
            seen += message["type"] == "message"
        self.pubsub.close()
        return seen


def readyz_bodies(app, calls: int) -> list[dict]:
    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(lambda _: app.test_client().get("/readyz").get_json(), range(calls)))


def test_readyz_calls_within_the_cache_time_share_one_ping(make_app, idle_redis_url):
    app = make_app(idle_redis_url, READYZ_PING_TIMEOUT="0.3", READYZ_CACHE_SECONDS="60")
    pings = PingCounter(idle_redis_url)
    bodies = readyz_bodies(app, 4) + readyz_bodies(app, 1)  # at once, then after
    assert pings.count() == 1
    # No worker consumes this database: every caller gets the one answer, "none".
    assert all(body["workers"]["ok"] is False and body["workers"]["count"] == 0 for body in bodies)
    assert bodies[-1]["workers"]["age_seconds"] >= 0


def test_with_no_cache_time_only_calls_made_during_a_ping_share_it(make_app, idle_redis_url):
    app = make_app(idle_redis_url, READYZ_PING_TIMEOUT="0.5", READYZ_CACHE_SECONDS="0")
    pings = PingCounter(idle_redis_url)
    readyz_bodies(app, 3)  # at once: they queue behind one ping and take its answer
    readyz_bodies(app, 1)
    assert pings.count() == 2


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_a_cache_time_that_is_not_zero_or_positive_is_refused(value):
    with pytest.raises(ConfigError, match="READYZ_CACHE_SECONDS"):
        load_config({"READYZ_CACHE_SECONDS": value})
