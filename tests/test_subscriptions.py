"""A wait on a task's channel starts only once Redis has confirmed the subscription.

SUBSCRIBE takes effect when Redis serves it, and Redis may serve a command sent later
on another connection first. If the status read after subscribing is served first and
the task changes in between, the change is published to nobody, and a long-poll waits
out its whole bound (it happened to 1-2 of 330 long-polls in make bench). Here a real
TCP proxy in front of a real Redis holds every SUBSCRIBE back, as a busy network or
server can, to make that order certain.
"""

import socket
import threading
import time

import pytest
import redis

from backend.jobs.watch import Subscriptions
from devtools.redis_server import RedisServer, free_port
from tests.helpers import cancel_during_long_poll

HOLD_S = 0.5


class SubscribeDelayingProxy:
    """Forwards TCP connections to Redis; what a client sends is held back for
    `hold` seconds whenever it contains a SUBSCRIBE command, replies pass at once."""

    def __init__(self, upstream_port: int, hold: float):
        self.upstream = ("127.0.0.1", upstream_port)
        self.hold = hold
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(self.upstream, timeout=10)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and b"SUBSCRIBE" in data.upper():
                    time.sleep(self.hold)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def proxy(redis_server):
    proxy = SubscribeDelayingProxy(redis_server.port, HOLD_S)
    yield proxy
    proxy.close()


def test_a_subscription_is_in_effect_once_confirmed(proxy, idle_redis_url):
    subscriptions = Subscriptions(redis.Redis.from_url(proxy.url(1), socket_timeout=5))
    direct = redis.Redis.from_url(idle_redis_url)
    with subscriptions.subscribed("channel-a") as subscription:
        subscription.confirm()
        assert direct.pubsub_numsub("channel-a") == [(b"channel-a", 1)]
    with subscriptions.subscribed("channel-b") as subscription:  # the thread's kept connection
        with pytest.raises(RuntimeError):
            subscription.wait(1)  # before confirm(): it could miss what it waits for
        subscription.confirm()
        assert direct.pubsub_numsub("channel-b") == [(b"channel-b", 1)]
        direct.publish("channel-b", "changed")
        assert subscription.wait(5)
        assert not subscription.wait(0.2)  # the burst was read with the first message
    subscription = subscriptions.subscription("channel-c")  # an event stream's own connection
    try:
        assert direct.pubsub_numsub("channel-c") == [(b"channel-c", 1)]
    finally:
        subscription.close()


def test_a_change_while_the_subscribe_is_on_its_way_ends_the_long_poll(make_app, proxy):
    app = make_app(proxy.url(1))  # the idle database: no worker takes the task
    task_id = app.test_client().post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    started = time.monotonic()
    # The cancel lands while the long-poll's SUBSCRIBE is held back, after its first read.
    body = cancel_during_long_poll(app, task_id, after=HOLD_S / 3, wait=10)
    assert body["state"] == "REVOKED"
    assert time.monotonic() - started < 5, "the long-poll missed the change and waited out its bound"


def test_a_long_poll_after_a_redis_restart_subscribes_again_instead_of_failing(make_app, tmp_path):
    server = RedisServer(free_port(), tmp_path, appendonly=True).start()
    try:
        client = make_app(server.url).test_client()  # no worker here: the task stays QUEUED
        task_id = client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
        assert client.get(f"/status/{task_id}?wait=0.1").status_code == 200  # the thread keeps its subscriber
        server.stop()
        server.start()  # the same port, its data back from the append-only file
        response = client.get(f"/status/{task_id}?wait=0.1")
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["state"] == "QUEUED"
    finally:
        server.stop()
