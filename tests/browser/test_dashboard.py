"""The dashboard at /, in a real Chromium, against real gunicorn and a real worker:
submit from the page, watch the bar fill live, cancel, and keep working when
streaming is blocked or the API needs a token."""

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


def submit_from_page(page, steps: int, step_seconds: float):
    """Submit a long task with the page's form; the task's row."""
    rows = page.locator("#tasks .task")
    before = rows.count()
    page.fill("#steps", str(steps))
    page.fill("#step-seconds", str(step_seconds))
    page.click("#submit")
    expect(rows).to_have_count(before + 1)
    task_id = rows.first.get_attribute("data-task-id")
    return page.locator(f'#tasks .task[data-task-id="{task_id}"]')


def state_of(row):
    return row.locator(".badge")


def cancel_quietly(base_url: str, rows) -> None:
    """Free the shared worker: end what the test left running (409 once ended)."""
    for row in rows:
        task_id = row.get_attribute("data-task-id")
        requests.post(f"{base_url}/status/{task_id}/cancel", timeout=10)


def test_a_task_submitted_from_the_page_fills_its_bar_to_success_and_another_is_cancelled(
    page, gunicorn_url, worker
):
    page.goto(f"{gunicorn_url}/")
    expect(page.locator("nav a", has_text="API docs")).to_have_attribute("href", "/docs")
    expect(page.locator("nav a", has_text="Flower")).to_have_attribute("href", "http://127.0.0.1:5555")

    quick = submit_from_page(page, 3, 0.3)
    expect(state_of(quick)).to_have_text("SUCCESS")
    expect(quick.locator(".bar")).to_have_attribute("aria-valuenow", "100")
    expect(quick.locator(".message")).to_have_text("completed 3 steps")
    expect(quick.locator(".cancel")).to_be_hidden()

    slow = submit_from_page(page, 30, 0.3)
    expect(state_of(slow)).to_have_text("PROGRESS")
    slow.locator(".cancel").click()
    expect(state_of(slow)).to_have_text("REVOKED")
    expect(slow.locator(".task-error")).to_be_visible()

    # Two running and one queued (the worker has two processes), for the screenshot.
    running = [submit_from_page(page, 8, 1), submit_from_page(page, 8, 1.5)]
    queued = submit_from_page(page, 5, 1)
    try:
        for row in running:
            expect(state_of(row)).to_have_text("PROGRESS")
        expect(state_of(queued)).to_have_text("QUEUED")
        expect(running[0].locator(".message")).to_have_text(re.compile(r"step [3-8] of 8"))
        page.locator("#token-panel").evaluate("element => element.open = false")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    finally:
        cancel_quietly(gunicorn_url, [*running, queued])
    expect(state_of(queued)).to_have_text("REVOKED")
    assert page.console_errors == []  # no script error, no CSP violation


def test_the_list_survives_a_reload_and_follows_unfinished_tasks_again(page, gunicorn_url, worker):
    page.goto(f"{gunicorn_url}/")
    row = submit_from_page(page, 6, 0.4)
    expect(state_of(row)).to_have_text("PROGRESS")
    page.reload()
    row = page.locator("#tasks .task").first
    expect(state_of(row)).to_have_text("SUCCESS")
    expect(row.locator(".bar")).to_have_attribute("aria-valuenow", "100")


def test_only_the_two_newest_unfinished_tasks_hold_a_stream_the_rest_are_polled(page, gunicorn_url, worker):
    urls = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(f"{gunicorn_url}/")
    oldest_first = [submit_from_page(page, 20, 0.5) for _ in range(5)]
    try:
        expect(page.locator("#mode")).to_have_text("2 followed live, 3 polled")
        expect(state_of(oldest_first[-1])).to_have_text("QUEUED")  # the worker runs two at a time
        expect(state_of(oldest_first[0])).to_have_text("PROGRESS")  # polled, yet it moves
    finally:
        cancel_quietly(gunicorn_url, oldest_first)
    for row in oldest_first:
        expect(state_of(row)).to_have_text("REVOKED")
    oldest_id = oldest_first[0].get_attribute("data-task-id")
    assert f"{gunicorn_url}/status/{oldest_id}" in urls  # polled with short requests


def test_when_streaming_is_blocked_the_page_long_polls_and_still_reaches_success(page, gunicorn_url, worker):
    page.route("**/events", lambda route: route.abort())  # e.g. a proxy that refuses event streams
    page.goto(f"{gunicorn_url}/")
    row = submit_from_page(page, 3, 0.3)
    expect(state_of(row)).to_have_text("SUCCESS")
    expect(page.locator("#mode")).to_have_attribute("data-transport", "long-poll")


def test_an_api_error_is_shown_to_the_user(page, gunicorn_url):
    page.goto(f"{gunicorn_url}/")
    page.fill("#steps", "3000")
    page.fill("#step-seconds", "2")  # 6,000 s: over the task's time limit, a 422
    page.click("#submit")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).to_contain_text("at most 3000 seconds")
    expect(page.locator("#error-text")).to_contain_text("validation_error")
    expect(page.locator("#tasks .task")).to_have_count(0)


@pytest.fixture(scope="module")
def secured_url(worker_redis_url, tmp_path_factory):
    """A second gunicorn, with API_TOKENS set, on the database the worker consumes."""
    process, url = launch_gunicorn(
        worker_redis_url, tmp_path_factory.mktemp("gunicorn-tokens"), "gunicorn-tokens",
        GUNICORN_WORKERS="1", API_TOKENS=TOKEN,
    )
    yield url
    process.stop()


def test_with_tokens_the_page_asks_for_one_and_then_streams_with_it(page, secured_url, worker):
    page.goto(f"{secured_url}/")  # the page itself is open: it holds no secret
    page.fill("#steps", "2")
    page.fill("#step-seconds", "0.3")
    page.click("#submit")
    expect(page.locator("#error-text")).to_contain_text("enter a token")

    page.click("#token-panel summary")
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-state")).to_have_text("(saved for this tab)")
    row = submit_from_page(page, 2, 0.3)
    expect(state_of(row)).to_have_text("SUCCESS")  # the stream, too, carried the token
    assert TOKEN not in page.url
