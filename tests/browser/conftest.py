"""Fixtures of the browser tests: a real Chromium driven by Playwright, and the stack
the dashboard runs against.

Playwright never downloads a browser here: it drives the system's Chromium (Debian's
`chromium` package; .ci/run installs it). Without one, these tests skip and say why.
Every test here gets the `browser` marker (`make test PYTEST_ARGS="-m browser"`).

The dashboard lists every job of its Redis database, so it gets a Redis of its own
(`dashboard_url`, `dashboard_worker`): the page shows only the jobs these tests sent,
whatever the rest of the suite ran. A test drives the page through `dashboard` (where
to click, what to read) and sends jobs, or checks the page against the API, through `api`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from backend.jobs import extensions
from backend.jobs.history import CANCELLABLE_STATES
from devtools.redis_server import RedisServer, free_port
from tests.helpers import launch_gunicorn, launch_worker, make_app, wait_until

HERE = Path(__file__).parent
# Headless on a machine without network: no GPU, no sandbox (CI runs as root), and
# none of Chromium's background requests (updates, sync, safe browsing), which would
# only fill the log with refused connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium: install Debian's chromium package (.ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    # Waits in the tests are for real workers and real streams on two shared cores;
    # Playwright's default of 5 s is short when the machine is busy.
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page in its own context: empty localStorage and sessionStorage."""
    context = chromium.new_context(viewport={"width": 960, "height": 720})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def dashboard_redis_url(tmp_path_factory):
    server = RedisServer(free_port(), tmp_path_factory.mktemp("dashboard-redis"), appendonly=False)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def dashboard_worker(dashboard_redis_url, tmp_path_factory):
    """A real worker (2 pool processes) on the dashboard's Redis."""
    process, hostname = launch_worker(dashboard_redis_url, tmp_path_factory.mktemp("dashboard-worker"))
    yield hostname
    process.stop()


@pytest.fixture(scope="session")
def dashboard_url(dashboard_redis_url, tmp_path_factory):
    """The API and the dashboard under a real gunicorn, on the dashboard's Redis."""
    process, url = launch_gunicorn(
        dashboard_redis_url, tmp_path_factory.mktemp("dashboard-gunicorn"), "dashboard-gunicorn", GUNICORN_WORKERS="2"
    )
    yield url
    process.stop()


class JobsApi:
    """The API as curl or other code calls it, not through the page: jobs for a test to
    find in the page, and the truth to compare the page with."""

    def __init__(self, base_url: str, redis_url: str) -> None:
        self.base_url = base_url
        self.redis_url = redis_url

    def submit(self, task: str, **job_input) -> str:
        response = requests.post(f"{self.base_url}/tasks/{task}", json=job_input, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()["task_id"]

    def send_from_code(self, task: str, **kwargs) -> str:
        """Send a job as other code does (Celery's send_task), without the API."""
        return extensions.celery_app(make_app(self.redis_url)).send_task(task, kwargs=kwargs).id

    def status(self, task_id: str, wait: float = 0) -> dict | None:
        """The job's status; None while the API knows no such job."""
        response = requests.get(f"{self.base_url}/status/{task_id}", params={"wait": wait}, timeout=wait + 10)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, task_id: str, *states: str, timeout: float = 30) -> dict:
        """Long-poll the job's status until it is in one of `states`; that status."""

        def reached():
            # A job sent by code is unknown (404) until a worker receives it.
            status = self.status(task_id, wait=2)
            return status if status and status["state"] in states else None

        return wait_until(reached, timeout, what=f"job {task_id} to reach {states}")

    def jobs(self, **query) -> dict:
        """GET /jobs: {"jobs", "next_cursor", "counts"}."""
        response = requests.get(f"{self.base_url}/jobs", params=query, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def end_unfinished(self) -> None:
        """Cancel every job not ended, and wait until each has ended."""
        unfinished = ",".join(sorted(CANCELLABLE_STATES))
        while requests.post(f"{self.base_url}/jobs/cancel", json={}, timeout=30).json()["more"]:
            pass
        wait_until(
            lambda: sum(self.jobs(state=unfinished, limit=1)["counts"].values()) == 0,
            timeout=30,
            what="every job to end",
        )


@pytest.fixture
def api(dashboard_url, dashboard_redis_url, dashboard_worker):
    """JobsApi on the dashboard's stack, its worker running. After the test, every job
    left running is cancelled and has ended: the next test starts with an idle worker."""
    jobs_api = JobsApi(dashboard_url, dashboard_redis_url)
    yield jobs_api
    jobs_api.end_unfinished()


class Dashboard:
    """The dashboard page as its user sees it: where a test clicks, and what it reads."""

    def __init__(self, page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.rows = page.locator("#job-rows tr")
        self.ids = page.locator("#job-rows .job-id")  # the rows' job ids, top to bottom
        self.detail = page.locator("#detail")

    def open(self, base_url: str | None = None) -> None:
        self.page.goto(f"{base_url or self.base_url}/")

    def save_token(self, token: str) -> None:
        """Save `token` under "API token", as a user does; returns once the page says whose it is."""
        if not self.page.locator("#token-panel").evaluate("element => element.open"):
            self.page.click("#token-panel summary")
        self.page.fill("#token", token)
        with self.page.expect_response(lambda response: response.url.endswith("/me")):
            self.page.click("#token-form button[type=submit]")

    def row(self, task_id: str):
        return self.page.locator(f'#job-rows tr[data-task-id="{task_id}"]')

    def submit(self, steps: int, step_seconds: float) -> str:
        """Submit a long task with the page's form; its id, once its row is listed."""
        self.page.fill("#steps", str(steps))
        self.page.fill("#step-seconds", str(step_seconds))
        with self.page.expect_response(lambda response: response.url.endswith("/tasks/long_task")) as answer:
            self.page.click("#submit")
        task_id = answer.value.json()["task_id"]
        self.row(task_id).wait_for()
        return task_id

    def state_box(self, state: str):
        """The checkbox that filters by `state`."""
        return self.page.locator("#state-filter").get_by_label(state, exact=True)

    def count(self, state: str):
        """The button showing how many jobs of the filter are in `state`; a click shows only those."""
        return self.page.locator(f'#counts .count[data-state="{state}"]')

    def field(self, name: str):
        """A field of the detail view, named as in the status object: `input`, `error`, `retry_of`..."""
        return self.detail.locator(f'[data-field="{name}"]')


@pytest.fixture
def dashboard(page, dashboard_url):
    return Dashboard(page, dashboard_url)
