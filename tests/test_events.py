"""GET /status/<id>/events: the task's status as Server-Sent Events, one per change,
ending after a final state; errors are JSON before any streaming starts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pytest
import redis
import requests

from backend.jobs import extensions
from devtools.redis_server import RedisServer, free_port
from tests.helpers import wait_for_state, wait_until

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
STATUS_KEYS = [
    "task_id", "name", "state", "progress", "result", "error", "submitted_at", "run_at", "deadline_at",
    "started_at", "finished_at", "attempt", "max_attempts", "next_attempt_at", "owner", "input", "input_note",
    "retry_of", "retried_by",
]


@dataclass
class Stream:
    """What a client read from one event stream, parsed as the SSE spec says."""

    events: list[tuple[str, dict]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: str | None = None
    ids: list[str | None] = field(default_factory=list)  # each event's id, None without one

    @property
    def statuses(self) -> list[dict]:
        return [data for name, data in self.events if name == "status"]

    def feed(self, lines) -> None:
        """Read lines until the server ends the stream."""
        for _ in self.read(lines):
            pass

    def read(self, lines):
        """Yield each status as it arrives."""
        name, data, event_id = "message", [], None
        for line in lines:
            if line == "":
                if data:
                    self.events.append((name, json.loads("\n".join(data))))
                    self.ids.append(event_id)
                    yield self.events[-1][1]
                name, data, event_id = "message", [], None
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "data":
                    data.append(value)
                elif key == "retry":
                    self.retry = value
                elif key == "id":
                    event_id = value


def open_stream(base_url: str, task_id: str) -> requests.Response:
    # The read timeout bounds each wait between two lines: heartbeats come every 15 s.
    return requests.get(f"{base_url}/status/{task_id}/events", stream=True, timeout=(5, 30))


def lines_of(response: requests.Response):
    return response.iter_lines(decode_unicode=True)


def chunks_of(response):
    """The chunks of an in-process (test client) stream as they are produced, as text."""
    return (chunk.decode() for chunk in response.response)


def submit(base_url: str, path: str, body: dict) -> str:
    response = requests.post(f"{base_url}{path}", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["task_id"]


def test_a_running_task_streams_each_change_then_its_final_state_and_ends(gunicorn_url, worker):
    task_id = submit(gunicorn_url, "/tasks/long_task", {"steps": 4, "step_seconds": 0.4})
    stream = Stream()
    with open_stream(gunicorn_url, task_id) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        stream.feed(lines_of(response))  # returns only when the server closes the stream

    states = [status["state"] for status in stream.statuses]
    assert states[0] in {"QUEUED", "STARTED", "PROGRESS"}
    assert states[-1] == "SUCCESS"
    assert stream.statuses[-1]["result"] == {"steps": 4, "message": "completed 4 steps"}
    percents = [status["progress"]["percent"] for status in stream.statuses if status["state"] == "PROGRESS"]
    assert len(percents) >= 2, states
    assert percents == sorted(set(percents)), percents  # strictly increasing: one event per change
    assert all(list(status) == STATUS_KEYS for status in stream.statuses)  # the /status object
    assert stream.retry is not None and stream.retry.isdigit()


def test_the_first_event_is_the_same_object_as_the_status_route(make_app, gunicorn_url, idle_redis_url):
    # A task nobody runs (queued on the idle database, read through an in-process app):
    # nothing changes between the two reads.
    client = make_app(idle_redis_url, EVENTS_MAX_SECONDS="0.2").test_client()
    task_id = client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    stream = Stream()
    stream.feed(client.get(f"/status/{task_id}/events").get_data(as_text=True).splitlines())
    assert stream.statuses[0] == client.get(f"/status/{task_id}").get_json()


@pytest.mark.parametrize("task_id", [UNKNOWN_ID, "not a valid id", "..", "x" * 200])
def test_an_unknown_or_malformed_id_is_a_404_json_before_any_streaming(gunicorn_url, task_id):
    response = requests.get(f"{gunicorn_url}/status/{task_id}/events", timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] in {"task_not_found", "not_found"}


def test_a_cancelled_task_stream_ends_with_revoked(gunicorn_url, worker):
    task_id = submit(gunicorn_url, "/tasks/long_task", {"steps": 30, "step_seconds": 0.3})
    stream = Stream()
    with open_stream(gunicorn_url, task_id) as response:
        statuses = stream.read(lines_of(response))
        for status in statuses:
            if status["state"] == "PROGRESS":
                cancelled = requests.post(f"{gunicorn_url}/status/{task_id}/cancel", timeout=10)
                assert cancelled.status_code == 202
                break
        for _ in statuses:  # the rest, until the server ends the stream
            pass
    assert stream.statuses[-1]["state"] == "REVOKED"
    assert stream.statuses[-1]["progress"] is None
    assert stream.statuses[-2]["state"] == "PROGRESS"


def test_the_stream_of_a_finished_task_is_one_event_and_ends(gunicorn_url, app, worker):
    task_id = submit(gunicorn_url, "/add", {"x": 2, "y": 3})
    wait_for_state(app.test_client(), task_id, {"SUCCESS"})
    started = time.monotonic()
    stream = Stream()
    with open_stream(gunicorn_url, task_id) as response:
        stream.feed(lines_of(response))
    assert [status["state"] for status in stream.statuses] == ["SUCCESS"]
    assert stream.statuses[0]["result"] == 5
    assert time.monotonic() - started < 5


def test_a_client_that_leaves_frees_its_stream_at_once_not_at_the_next_heartbeat(
    gunicorn_url, worker_redis_url, worker
):
    task_id = submit(gunicorn_url, "/tasks/long_task", {"steps": 2, "step_seconds": 8})  # quiet for 8 s
    channel = f"celery-task-meta-{task_id}"
    redis_client = redis.Redis.from_url(worker_redis_url, socket_timeout=2)

    def subscribers() -> int:
        return redis_client.pubsub_numsub(channel)[0][1]

    try:
        with open_stream(gunicorn_url, task_id) as response:
            assert next(lines_of(response)).startswith("retry:")
            wait_until(lambda: subscribers() == 1, 5, what="the stream to subscribe")
        started = time.monotonic()  # the client has closed its connection
        wait_until(lambda: subscribers() == 0, 5, what="the stream to notice its client left")
        assert time.monotonic() - started < 5  # the heartbeat is 15 s away
    finally:
        requests.post(f"{gunicorn_url}/status/{task_id}/cancel", timeout=10)


def test_an_idle_stream_sends_heartbeats_and_ends_after_events_max_seconds(make_app, idle_redis_url):
    client = make_app(idle_redis_url, EVENTS_MAX_SECONDS="1", EVENTS_HEARTBEAT_SECONDS="0.2").test_client()
    task_id = client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    started = time.monotonic()
    stream = Stream()
    stream.feed(client.get(f"/status/{task_id}/events").get_data(as_text=True).splitlines())
    assert 1 <= time.monotonic() - started < 5
    assert [status["state"] for status in stream.statuses] == ["QUEUED"]
    assert stream.comments.count("keep-alive") >= 3
    assert "reconnect" in stream.comments[-1]  # says why it ended without a final state


def test_only_the_final_event_has_an_id_and_a_reconnect_after_it_gets_204(idle_app, idle_client):
    task_id = idle_client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    response = idle_client.get(f"/status/{task_id}/events", buffered=False)
    chunks = chunks_of(response)
    first = next(chunks)
    idle_app.test_client().post(f"/status/{task_id}/cancel")
    stream = Stream()
    stream.feed((first + "".join(chunks)).splitlines())
    response.close()
    assert [status["state"] for status in stream.statuses] == ["QUEUED", "REVOKED"]
    assert stream.ids == [None, "end"]
    # What a browser's EventSource does after the server closed the finished stream:
    reconnect = idle_client.get(f"/status/{task_id}/events", headers={"Last-Event-ID": "end"})
    assert reconnect.status_code == 204 and reconnect.data == b""
    # Any other id is a fresh start: the current (final) status, once.
    again = Stream()
    again.feed(idle_client.get(f"/status/{task_id}/events", headers={"Last-Event-ID": "x"}).text.splitlines())
    assert [status["state"] for status in again.statuses] == ["REVOKED"]


def test_a_change_is_sent_at_once_not_at_the_next_heartbeat(idle_app, idle_client):
    task_id = idle_client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    response = idle_client.get(f"/status/{task_id}/events", buffered=False)
    chunks = chunks_of(response)
    assert "QUEUED" in next(chunks)  # the current status, before any change
    started = time.monotonic()
    idle_app.test_client().post(f"/status/{task_id}/cancel")
    rest = "".join(chunks)
    response.close()
    assert "REVOKED" in rest and "keep-alive" not in rest
    assert time.monotonic() - started < 5  # the heartbeat is 15 s: it came from pub/sub


def test_redis_lost_mid_stream_ends_the_stream_cleanly(make_app, tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        client = make_app(server.url, EVENTS_HEARTBEAT_SECONDS="0.5").test_client()
        task_id = client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]  # no worker: stays queued
        response = client.get(f"/status/{task_id}/events", buffered=False)
        chunks = chunks_of(response)
        assert "QUEUED" in next(chunks)
    finally:
        server.stop()
    started = time.monotonic()
    rest = list(chunks)  # ends, rather than raising or waiting out EVENTS_MAX_SECONDS
    response.close()
    assert time.monotonic() - started < 10
    assert not any("event: status" in chunk for chunk in rest)


def test_before_streaming_a_redis_outage_is_a_503_json(make_app):
    client = make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.get(f"/status/{UNKNOWN_ID}/events")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"].isdigit()


def test_the_stream_needs_a_token_when_tokens_are_on(make_app, idle_redis_url):
    token = "t" * 40
    client = make_app(idle_redis_url, API_TOKENS=token).test_client()
    task_id = client.post("/add", json={"x": 1, "y": 2}, headers={"Authorization": f"Bearer {token}"}).get_json()[
        "task_id"
    ]
    refused = client.get(f"/status/{task_id}/events")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"


def test_the_document_describes_the_stream_with_the_status_routes_errors(idle_client):
    paths = idle_client.get("/openapi.json").get_json()["paths"]
    operation = paths["/status/{task_id}/events"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert operation["responses"]["404"] == paths["/status/{task_id}"]["get"]["responses"]["404"]


@pytest.mark.parametrize("setting", ["EVENTS_MAX_SECONDS", "EVENTS_HEARTBEAT_SECONDS"])
def test_a_stream_setting_that_is_not_a_positive_number_is_refused(setting):
    from config import ConfigError, TestingConfig

    with pytest.raises(ConfigError, match=setting):
        TestingConfig({setting: "0"})


def test_a_job_sent_by_code_with_text_json_cannot_encode_as_utf8_still_streams_and_lists(idle_app, idle_client):
    # Code outside the API is not validated: a lone surrogate reaches the record. The status
    # must still be JSON everywhere (escaped, as json.dumps writes it), never a broken stream.
    job_id = extensions.celery_app(idle_app).tasks["add"].delay("\udfff", 1).id
    expected = {"x": "\udfff", "y": 1}
    assert idle_client.get(f"/status/{job_id}").get_json()["input"] == expected
    listed = idle_client.get("/jobs").get_json()["jobs"]
    assert [job["input"] for job in listed if job["task_id"] == job_id] == [expected]
    response = idle_client.get(f"/status/{job_id}/events", buffered=False)
    first = next(chunks_of(response))
    response.close()
    stream = Stream()
    stream.feed((first + "\n").splitlines())
    assert [status["input"] for status in stream.statuses] == [expected]
