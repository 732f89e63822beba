"""A browser's own EventSource on GET /status/<id>/events, in a real Chromium against
real gunicorn: it gets the final state once, then stops for good."""

from __future__ import annotations

import pytest
import requests

pytest.importorskip("playwright.sync_api")

# Resolves when the EventSource is closed for good, or after `limit` ms (it reconnects
# every 3 s, the stream's `retry:`), with the states it received.
FOLLOW = """([path, limit]) => new Promise((resolve) => {
  const states = [];
  const source = new EventSource(path);
  const done = () => { source.close(); resolve({ states, closedByServer: closed }); };
  let closed = false;
  source.addEventListener("status", (event) => states.push(JSON.parse(event.data).state));
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) { closed = true; done(); } };
  setTimeout(done, limit);
})"""


def test_an_event_source_stops_reconnecting_once_it_has_the_final_state(page, gunicorn_url, worker):
    task_id = requests.post(f"{gunicorn_url}/add", json={"x": 1, "y": 2}, timeout=10).json()["task_id"]
    body = requests.get(f"{gunicorn_url}/status/{task_id}?wait=20", timeout=30).json()
    while body["state"] != "SUCCESS":
        body = requests.get(f"{gunicorn_url}/status/{task_id}?wait=20", timeout=30).json()
    answers = []
    page.on("response", lambda response: "/events" in response.url and answers.append(response.status))
    page.goto(f"{gunicorn_url}/healthz")  # the API's origin: EventSource follows the same-origin rules
    seen = page.evaluate(FOLLOW, [f"/status/{task_id}/events", 12_000])
    assert seen == {"states": ["SUCCESS"], "closedByServer": True}
    # The stream, then the reconnect that says "end" and is told to stop (204), and no more.
    assert answers == [200, 204]
