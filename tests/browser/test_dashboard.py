"""The dashboard at /, in a real Chromium, against real gunicorn and a real worker:
submit from the page, watch the bar fill live, cancel, and keep working when
streaming is blocked or the API needs a token. (The job history's list, filters,
paging, retries and detail view: test_dashboard_history.py.)"""

from __future__ import annotations

import os
import re

import pytest
import requests

from tests.helpers import PROJECT_ROOT, launch_gunicorn

expect = pytest.importorskip("playwright.sync_api").expect

# Every run saves one under var/ (not committed); SAVE_README_SCREENSHOT=1 refreshes the
# README's docs/dashboard.png instead, so a test run leaves the working tree clean.
SCREENSHOT = PROJECT_ROOT / ("docs" if os.environ.get("SAVE_README_SCREENSHOT") else "var") / "dashboard.png"
TOKEN = "browser-" + "0123456789abcdef" * 3


def cancel_quietly(base_url: str, task_ids) -> None:
    """Free the shared worker: end what the test left running (409 once ended)."""
    for task_id in task_ids:
        requests.post(f"{base_url}/status/{task_id}/cancel", timeout=10)


def test_a_task_submitted_from_the_page_fills_its_bar_to_success_and_another_is_cancelled(
    dashboard, dashboard_url, api
):
    dashboard.open()
    page = dashboard.page
    expect(page.locator("nav a", has_text="API docs")).to_have_attribute("href", "/docs")
    expect(page.locator("nav a", has_text="Flower")).to_have_attribute("href", "http://127.0.0.1:5555")

    quick = dashboard.row(dashboard.submit(3, 0.3))
    expect(quick.locator(".badge")).to_have_text("SUCCESS")
    expect(quick.locator(".bar")).to_have_attribute("aria-valuenow", "100")
    expect(quick.locator(".message")).to_have_text("completed 3 steps")
    expect(quick.locator(".cancel")).to_be_hidden()

    slow = dashboard.row(dashboard.submit(30, 0.3))
    expect(slow.locator(".badge")).to_have_text("PROGRESS")
    slow.locator(".cancel").click()
    expect(slow.locator(".badge")).to_have_text("REVOKED")
    expect(slow.locator(".job-error")).to_have_text("TaskRevokedError: cancelled by request")

    # Two running and one queued (the worker has two processes), for the screenshot.
    running = [dashboard.submit(8, 1), dashboard.submit(8, 1.5)]
    queued = dashboard.submit(5, 1)
    try:
        for task_id in running:
            expect(dashboard.row(task_id).locator(".badge")).to_have_text("PROGRESS")
        expect(dashboard.row(queued).locator(".badge")).to_have_text("QUEUED")
        expect(dashboard.row(running[0]).locator(".message")).to_have_text(re.compile(r"step [3-8] of 8"))
        page.locator("#token-panel").evaluate("element => element.open = false")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    finally:
        cancel_quietly(dashboard_url, [*running, queued])
    for task_id in [*running, queued]:
        expect(dashboard.row(task_id).locator(".badge")).to_have_text("REVOKED")
    assert page.console_errors == []  # no script error, no CSP violation


def test_after_a_reload_the_page_lists_a_running_job_again_and_follows_it_to_success(dashboard, api):
    dashboard.open()
    task_id = dashboard.submit(6, 0.4)
    expect(dashboard.row(task_id).locator(".badge")).to_have_text("PROGRESS")
    dashboard.page.reload()
    row = dashboard.row(task_id)
    expect(row.locator(".badge")).to_have_text("SUCCESS")
    expect(row.locator(".bar")).to_have_attribute("aria-valuenow", "100")


def test_at_most_two_running_jobs_hold_a_stream_the_rest_are_refreshed_with_the_list(
    dashboard, dashboard_url, api
):
    streamed, listed = set(), []

    def note(request):
        path = request.url.removeprefix(dashboard_url)
        if path.endswith("/events"):
            streamed.add(path.split("/")[2])
        elif path.startswith("/jobs?"):
            listed.append(path)

    dashboard.page.on("request", note)
    dashboard.open()
    oldest_first = [dashboard.submit(20, 1) for _ in range(5)]
    try:
        expect(dashboard.page.locator("#mode")).to_have_text("2 followed live, 3 polled")
        expect(dashboard.row(oldest_first[-1]).locator(".badge")).to_have_text("QUEUED")  # two run at a time
        expect(dashboard.row(oldest_first[0]).locator(".badge")).to_have_text("PROGRESS")
        # The two running jobs are the two oldest: they got the streams, the queued ones never did.
        assert streamed == set(oldest_first[:2])
    finally:
        cancel_quietly(dashboard_url, oldest_first)
    for task_id in oldest_first[2:]:
        expect(dashboard.row(task_id).locator(".badge")).to_have_text("REVOKED")  # seen by the list's refresh
    assert len(listed) >= 2


def test_when_streaming_is_blocked_the_page_long_polls_and_still_reaches_success(dashboard, api):
    dashboard.page.route("**/events", lambda route: route.abort())  # e.g. a proxy that refuses event streams
    dashboard.open()
    row = dashboard.row(dashboard.submit(3, 0.3))
    expect(row.locator(".badge")).to_have_text("SUCCESS")
    expect(dashboard.page.locator("#mode")).to_have_attribute("data-transport", "long-poll")


def test_an_api_error_is_shown_to_the_user(dashboard, api):
    jobs_before = sum(api.jobs()["counts"].values())
    dashboard.open()
    page = dashboard.page
    page.fill("#steps", "3000")
    page.fill("#step-seconds", "2")  # 6,000 s: over the task's time limit, a 422
    page.click("#submit")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).to_contain_text("at most 3000 seconds")
    expect(page.locator("#error-text")).to_contain_text("validation_error")
    assert sum(api.jobs()["counts"].values()) == jobs_before


@pytest.fixture(scope="module")
def secured_url(dashboard_redis_url, tmp_path_factory):
    """A second gunicorn, with API_TOKENS set, on the dashboard's Redis."""
    process, url = launch_gunicorn(
        dashboard_redis_url, tmp_path_factory.mktemp("gunicorn-tokens"), "gunicorn-tokens",
        GUNICORN_WORKERS="1", API_TOKENS=TOKEN,
    )
    yield url
    process.stop()


def test_with_tokens_the_page_asks_for_one_and_then_lists_and_streams_with_it(dashboard, secured_url, api):
    urls = []
    dashboard.page.on("request", lambda request: urls.append(request.url))
    dashboard.open(secured_url)  # the page itself is open: it holds no secret
    page = dashboard.page
    expect(page.locator("#list-problem")).to_contain_text("enter a token")
    page.fill("#steps", "2")
    page.fill("#step-seconds", "0.3")
    page.click("#submit")
    expect(page.locator("#error-text")).to_contain_text("enter a token")

    page.click("#token-panel summary")
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-state")).to_have_text("(saved for this tab)")
    expect(page.locator("#list-problem")).to_be_hidden()
    row = dashboard.row(dashboard.submit(2, 0.3))
    expect(row.locator(".badge")).to_have_text("SUCCESS")  # the stream, too, carried the token
    expect(row.locator(".owner")).to_have_text(re.compile(r"^token-[0-9a-f]{16}$"))
    assert not [url for url in urls if TOKEN in url]
