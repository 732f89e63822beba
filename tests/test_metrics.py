"""GET /metrics: Prometheus text, summed over gunicorn's workers, behind the API token."""

import socket
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from backend.jobs import states
from devtools.redis_server import free_port
from tests.helpers import METRICS_DB, empty_db

# A database of the session's Redis that only this module uses, emptied for each test
# that takes it: the job gauges count every job of their database. No worker consumes it.


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str) -> dict:
    response = requests.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


def scraped(client, query: str = "") -> dict:
    response = client.get(f"/metrics{query}")
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


def job_gauges(metrics: dict) -> dict[tuple[str, str], float]:
    """{(state, task): jobs} of a scrape, zeros left out."""
    found = {}
    for (name, labels), sample in metrics.items():
        if name == "jobs" and sample:
            by_name = dict(labels)
            found[by_name["state"], by_name["task"]] = sample
    return found


@pytest.fixture
def empty_idle_url(redis_server):
    return empty_db(redis_server, METRICS_DB)


@pytest.fixture
def silent_redis_url():
    """A Redis URL whose server accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


@pytest.mark.e2e
def test_metrics_count_requests_and_submits_of_every_gunicorn_worker(gunicorn_url, worker):
    before = scrape(gunicorn_url)
    submits = 12
    task_ids = []
    for _ in range(submits):
        # A new connection per request: gunicorn's two workers share them out.
        response = requests.post(f"{gunicorn_url}/add", json={"x": 1, "y": 2}, timeout=5)
        assert response.status_code == 202
        task_ids.append(response.json()["task_id"])
    for task_id in task_ids:
        assert requests.get(f"{gunicorn_url}/status/{task_id}", timeout=5).status_code == 200
    assert requests.get(f"{gunicorn_url}/status/never-submitted", timeout=5).status_code == 404

    # Every scrape, whichever worker answers it, shows the sum over both workers.
    for _ in range(4):
        after = scrape(gunicorn_url)
        route_count = "flask_http_request_duration_seconds_count"
        submitted = value(after, "jobs_submitted_total", task="add") - value(before, "jobs_submitted_total", task="add")
        assert submitted == submits
        assert (
            value(after, route_count, method="POST", route="/add", status="202")
            - value(before, route_count, method="POST", route="/add", status="202")
            == submits
        )
        # One series for every task id: the URL rule, not the path.
        assert (
            value(after, route_count, method="GET", route="/status/<task_id>", status="200")
            - value(before, route_count, method="GET", route="/status/<task_id>", status="200")
            == submits
        )
        assert value(after, route_count, method="GET", route="/status/<task_id>", status="404") >= 1
        assert not [key for key in after if any(task_id in str(key) for task_id in task_ids)]
        bucket = "flask_http_request_duration_seconds_bucket"
        assert value(after, bucket, method="POST", route="/add", status="202", le="+Inf") >= submits


def test_a_redis_outage_shows_as_503s_by_route(make_app):
    client = make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    assert client.post("/add", json={"x": 1, "y": 2}).status_code == 503
    assert client.get("/status/00000000-0000-4000-8000-000000000000").status_code == 503
    metrics = samples(client.get("/metrics").get_data(as_text=True))
    assert value(metrics, "jobs_unavailable_responses_total", route="/add") == 1
    assert value(metrics, "jobs_unavailable_responses_total", route="/status/<task_id>") == 1
    assert value(metrics, "flask_http_request_duration_seconds_count", method="POST", route="/add", status="503") == 1
    assert value(metrics, "jobs_submitted_total", task="add") == 0


def test_metrics_need_the_api_token_when_tokens_are_set(make_app, worker_redis_url):
    client = make_app(worker_redis_url, API_TOKENS="metrics-token").test_client()
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer metrics-token"}).status_code == 200


def test_metrics_are_not_rate_limited_and_not_counted(make_app, worker_redis_url, worker):
    client = make_app(worker_redis_url, SUBMIT_RATE_LIMIT="1/minute").test_client()
    assert all(client.get("/metrics").status_code == 200 for _ in range(5))
    metrics = samples(client.get("/metrics").get_data(as_text=True))
    assert not [key for key in metrics if ("route", "/metrics") in key[1]]
    assert value(metrics, "jobs_submitted_total", task="add") == 0


def test_a_failed_submit_is_not_counted(client):
    assert client.post("/add", json={"x": "not a number"}).status_code == 422
    metrics = samples(client.get("/metrics").get_data(as_text=True))
    assert value(metrics, "jobs_submitted_total", task="add") == 0
    assert value(metrics, "flask_http_request_duration_seconds_count", method="POST", route="/add", status="422") == 1


# --- jobs by state and task, from the job index --------------------------------------------


def test_jobs_by_state_and_task_are_read_from_the_index_at_each_scrape(make_app, empty_idle_url):
    client = make_app(empty_idle_url).test_client()
    before = scraped(client)
    assert job_gauges(before) == {}
    # Every public task's series exists at 0 before its first job.
    assert ("jobs", frozenset({("state", states.FAILURE), ("task", "add")})) in before
    assert value(before, "jobs_index_up") == 1

    adds = [client.post("/add", json={"x": i, "y": 0}).get_json()["task_id"] for i in range(3)]
    client.post("/tasks/long_task", json={"steps": 1})
    client.post(f"/status/{adds[0]}/cancel")
    assert job_gauges(scraped(client)) == {
        (states.QUEUED, "add"): 2, (states.REVOKED, "add"): 1, (states.QUEUED, "long_task"): 1,
    }

    client.post(f"/status/{adds[1]}/cancel")
    assert job_gauges(scraped(client)) == {
        (states.QUEUED, "add"): 1, (states.REVOKED, "add"): 2, (states.QUEUED, "long_task"): 1,
    }
    only_jobs = scraped(client, "?name[]=jobs")
    assert {name for name, _ in only_jobs} == {"jobs"}


def test_metrics_answer_without_the_job_gauges_when_redis_is_unreachable(make_app):
    client = make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    metrics = scraped(client)
    assert not [name for name, _ in metrics if name == "jobs"]
    assert value(metrics, "jobs_index_up") == 0
    assert ("jobs_submitted_total", frozenset({("task", "add")})) in metrics


def test_metrics_answer_within_the_redis_timeout_when_redis_hangs(make_app, silent_redis_url):
    client = make_app(silent_redis_url, REDIS_SOCKET_TIMEOUT="0.5").test_client()
    started = time.monotonic()
    metrics = scraped(client)
    assert time.monotonic() - started < 2
    assert value(metrics, "jobs_index_up") == 0
    assert not [name for name, _ in metrics if name == "jobs"]


@pytest.mark.e2e
def test_job_gauges_are_read_once_per_scrape_under_gunicorn(start_gunicorn, empty_idle_url):
    _, url = start_gunicorn(empty_idle_url, GUNICORN_WORKERS="2")
    adds = [requests.post(f"{url}/add", json={"x": i, "y": 0}, timeout=5).json()["task_id"] for i in range(3)]
    assert requests.post(f"{url}/status/{adds[0]}/cancel", timeout=5).status_code == 202
    # Whichever worker answers, each (state, task) is counted once, not once per worker.
    for _ in range(4):
        after = scrape(url)
        assert job_gauges(after) == {(states.QUEUED, "add"): 2, (states.REVOKED, "add"): 1}
        assert value(after, "jobs_index_up") == 1
