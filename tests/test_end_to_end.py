"""The documented user session against real gunicorn, worker and Flower processes."""

import pytest
import requests

from tests.helpers import FLOWER_AUTH, wait_until

pytestmark = pytest.mark.e2e


def test_curl_session_through_gunicorn(gunicorn_url, worker):
    response = requests.get(f"{gunicorn_url}/longtask", params={"steps": 3, "step_seconds": 0.3}, timeout=5)
    assert response.status_code == 202
    status_url = gunicorn_url + response.headers["Location"]
    seen = set()

    def finished():
        body = requests.get(status_url, timeout=5).json()
        seen.add(body["state"])
        return body if body["state"] == "SUCCESS" else None

    wait_until(finished, timeout=30, what="the long task to succeed")
    assert "PROGRESS" in seen


def test_gunicorn_serves_json_errors_not_html(gunicorn_url):
    response = requests.post(f"{gunicorn_url}/add", data="{", headers={"Content-Type": "application/json"}, timeout=5)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert requests.get(f"{gunicorn_url}/status/nope", timeout=5).status_code == 404


def test_flower_requires_credentials(flower_url):
    assert requests.get(f"{flower_url}/", timeout=5).status_code == 401
    assert requests.get(f"{flower_url}/", auth=("flower-user", "wrong"), timeout=5).status_code == 401
    assert requests.get(f"{flower_url}/", auth=FLOWER_AUTH, timeout=5).status_code == 200


def test_flower_lists_the_tasks_that_run_while_it_watches(flower_url, client, worker):
    # Workers send task events only once Flower has switched them on (it asks every
    # 5 s, config.py): a task that ran before then is not listed, so submit until one is.
    def listed(task_id):
        tasks = requests.get(f"{flower_url}/api/tasks", auth=FLOWER_AUTH, timeout=5).json()
        return tasks.get(task_id, {}).get("state") == "SUCCESS" and tasks[task_id]

    def submit_one_and_see_it_listed():
        task_id = client.post("/add", json={"x": 40, "y": 2}).get_json()["task_id"]
        try:
            return wait_until(lambda: listed(task_id), timeout=3, interval=0.3, what="Flower to list the task")
        except TimeoutError:
            return None

    task = wait_until(submit_one_and_see_it_listed, timeout=40, interval=0, what="Flower to list a task")
    assert task["name"] == "add"
