"""The dashboard's job history, in a real Chromium against real gunicorn and a real worker:
every job the server knows is listed, however it was sent, newest first and kept fresh;
filters, counts, paging, cancel and retry from the page, and a job's detail view."""

from __future__ import annotations

import pytest
import requests

expect = pytest.importorskip("playwright.sync_api").expect

# Text that would become an element, and run, if the page ever inserted it as HTML.
INJECTED = "<img src=x onerror=window.injected=1>"


def test_a_job_submitted_with_curl_appears_in_the_list_without_a_reload(dashboard, api):
    dashboard.open()
    dashboard.page.evaluate("window.sameDocument = true")
    task_id = api.submit("add", x=2, y=3)
    expect(dashboard.rows.first).to_have_attribute("data-task-id", task_id)  # newest first
    row = dashboard.row(task_id)
    expect(row.locator(".job-name")).to_have_text("add")
    expect(row.locator(".badge")).to_have_text("SUCCESS")
    expect(row.locator(".message")).to_have_text("result: 5")
    expect(row.locator(".owner")).to_have_text("anonymous")
    assert dashboard.page.evaluate("window.sameDocument") is True


def test_a_job_sent_by_code_without_the_api_is_listed_too(dashboard, api):
    dashboard.open()
    task_id = api.send_from_code("add", x=1, y=1)
    row = dashboard.row(task_id)
    expect(row.locator(".badge")).to_have_text("SUCCESS")
    expect(row.locator(".owner")).to_have_text("code")


def test_a_job_cancelled_then_retried_from_the_page_succeeds_and_the_detail_links_the_two(dashboard, api):
    dashboard.open()
    original = dashboard.submit(3, 1)  # the retry runs the same input: 3 s
    row = dashboard.row(original)
    row.get_by_role("button", name="Cancel").click()
    expect(row.locator(".badge")).to_have_text("REVOKED")

    with dashboard.page.expect_response(lambda response: response.url.endswith("/retry")) as answer:
        row.get_by_role("button", name="Retry").click()
    retry = answer.value.json()["task_id"]
    expect(row.get_by_role("button", name="Retry")).to_be_hidden()  # a job is retried once
    expect(dashboard.row(retry).locator(".badge")).to_have_text("SUCCESS")

    row.locator(".job-name").click()
    expect(dashboard.detail).to_be_visible()
    expect(dashboard.field("retried_by")).to_have_text(retry)
    dashboard.field("retried_by").click()
    expect(dashboard.detail.locator(".detail-id")).to_have_text(retry)
    expect(dashboard.field("state")).to_have_text("SUCCESS")
    expect(dashboard.field("retry_of")).to_have_text(original)
    dashboard.field("retry_of").click()
    expect(dashboard.detail.locator(".detail-id")).to_have_text(original)
    expect(dashboard.field("state")).to_have_text("REVOKED")


def test_filters_by_state_and_task_list_only_matching_jobs_with_their_counts(dashboard, api):
    failed = [api.submit("long_task", steps=1, step_seconds=0, fail_at_step=1) for _ in range(2)]
    succeeded = api.submit("add", x=1, y=1)
    for task_id in failed:
        api.wait_for(task_id, "FAILURE")
    api.wait_for(succeeded, "SUCCESS")
    dashboard.open()
    expect(dashboard.row(succeeded)).to_be_visible()

    dashboard.count("FAILURE").click()  # a count is a shortcut to its state's filter
    expect(dashboard.state_box("FAILURE")).to_be_checked()
    expect(dashboard.row(succeeded)).to_have_count(0)
    expected = api.jobs(state="FAILURE", limit=25)
    expect(dashboard.ids).to_have_text([job["task_id"] for job in expected["jobs"]])
    assert set(failed) <= {job["task_id"] for job in expected["jobs"]}
    for state, count in expected["counts"].items():
        expect(dashboard.count(state).locator(".count-value")).to_have_text(str(count))
    expect(dashboard.page.locator("#count-total")).to_have_text(f"{expected['counts']['FAILURE']} jobs")

    dashboard.state_box("SUCCESS").check()  # several states at once
    dashboard.page.select_option("#name-filter", "add")
    expected = api.jobs(state="FAILURE,SUCCESS", name="add", limit=25)
    expect(dashboard.ids).to_have_text([job["task_id"] for job in expected["jobs"]])
    expect(dashboard.row(succeeded)).to_be_visible()
    expect(dashboard.count("FAILURE").locator(".count-value")).to_have_text("0")
    expect(dashboard.count("SUCCESS").locator(".count-value")).to_have_text(str(expected["counts"]["SUCCESS"]))


def test_retry_all_failed_retries_the_failures_of_the_task_filter_and_says_how_many(dashboard, api):
    failed = [api.submit("long_task", steps=1, step_seconds=0, fail_at_step=1) for _ in range(2)]
    for task_id in failed:
        api.wait_for(task_id, "FAILURE")
    dashboard.open()
    dashboard.page.select_option("#name-filter", "long_task")
    dashboard.state_box("FAILURE").check()
    for task_id in failed:
        expect(dashboard.row(task_id).get_by_role("button", name="Retry")).to_be_visible()

    dashboard.page.once("dialog", lambda dialog: dialog.accept())
    with dashboard.page.expect_response(lambda response: response.url.endswith("/jobs/retry")) as answer:
        dashboard.page.click("#retry-failed")
    assert answer.value.request.post_data_json == {"state": ["FAILURE"], "name": "long_task"}
    outcome = answer.value.json()
    assert set(failed) <= {job["task_id"] for job in outcome["jobs"]}
    assert outcome["skipped"] == {} and outcome["more"] is False
    expect(dashboard.page.locator("#action-status")).to_have_text(f"Retried {outcome['done']} failed jobs.")
    for task_id in failed:
        expect(dashboard.row(task_id).get_by_role("button", name="Retry")).to_be_hidden()
        expect(dashboard.row(task_id).locator(".retried")).to_be_visible()


def test_the_detail_of_a_failed_job_shows_its_input_error_and_timestamps(dashboard, api):
    task_id = api.submit("long_task", steps=2, step_seconds=0.1, fail_at_step=2)
    status = api.wait_for(task_id, "FAILURE")
    dashboard.open()
    dashboard.row(task_id).locator(".job-name").click()

    expect(dashboard.detail).to_be_visible()
    expect(dashboard.detail.locator(".detail-id")).to_have_text(task_id)
    expect(dashboard.field("state")).to_have_text("FAILURE")
    expect(dashboard.field("owner")).to_have_text("anonymous")
    expect(dashboard.field("input")).to_contain_text('"fail_at_step": 2')
    expect(dashboard.field("error")).to_have_text("StepFailed: failed at step 2 of 2, as asked (fail_at_step=2)")
    for moment in ("submitted_at", "started_at", "finished_at"):
        expect(dashboard.field(moment)).to_have_attribute("datetime", status[moment])
        expect(dashboard.field(moment)).not_to_be_empty()
    expect(dashboard.field("result")).to_be_hidden()
    expect(dashboard.field("retried_by")).to_be_hidden()
    expect(dashboard.detail.get_by_role("button", name="Retry")).to_be_visible()
    dashboard.page.keyboard.press("Escape")
    expect(dashboard.detail).to_be_hidden()


def test_untrusted_text_from_a_job_is_shown_as_text_never_as_html(dashboard, api):
    task_id = api.send_from_code("tests.fail", message=INJECTED)  # raises ValueError(message)
    api.wait_for(task_id, "FAILURE")
    dashboard.open()
    row = dashboard.row(task_id)
    expect(row.locator(".job-error")).to_have_text(f"ValueError: {INJECTED}")
    row.locator(".job-name").click()
    expect(dashboard.field("error")).to_have_text(f"ValueError: {INJECTED}")
    expect(dashboard.field("input")).to_contain_text(INJECTED)
    expect(dashboard.page.locator("img")).to_have_count(0)
    assert dashboard.page.evaluate("window.injected") is None
    assert dashboard.page.console_errors == []  # not even an inline handler blocked by the CSP


def test_next_and_previous_move_through_pages_of_the_list_without_duplicates(dashboard, api):
    for number in range(25):
        api.submit("add", x=number, y=0)
    pages = [api.jobs(name="add", limit=10)]
    pages.append(api.jobs(name="add", limit=10, cursor=pages[0]["next_cursor"]))
    pages.append(api.jobs(name="add", limit=10, cursor=pages[1]["next_cursor"]))
    ids = [[job["task_id"] for job in listed["jobs"]] for listed in pages]
    assert len({task_id for page_ids in ids for task_id in page_ids}) == sum(map(len, ids)) >= 25

    dashboard.open()
    page = dashboard.page
    page.select_option("#name-filter", "add")
    page.select_option("#page-size", "10")
    expect(dashboard.ids).to_have_text(ids[0])
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#page-number")).to_have_text("Page 2")
    expect(dashboard.ids).to_have_text(ids[1])
    page.get_by_role("button", name="Next").click()
    expect(dashboard.ids).to_have_text(ids[2])
    page.get_by_role("button", name="Previous").click()
    expect(dashboard.ids).to_have_text(ids[1])
    page.get_by_role("button", name="Previous").click()
    expect(page.locator("#page-number")).to_have_text("Page 1")
    expect(dashboard.ids).to_have_text(ids[0])


def test_on_a_later_page_new_jobs_are_announced_and_the_page_stays_put(dashboard, api):
    for number in range(11):
        api.submit("add", x=number, y=0)
    dashboard.open()
    page = dashboard.page
    page.select_option("#page-size", "10")
    expect(dashboard.rows).to_have_count(10)
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#page-number")).to_have_text("Page 2")
    second_page = api.jobs(limit=10, cursor=api.jobs(limit=10)["next_cursor"])
    expect(dashboard.ids).to_have_text([job["task_id"] for job in second_page["jobs"]])

    newest = api.submit("add", x=100, y=0)
    expect(page.get_by_role("button", name="New jobs: back to newest")).to_be_visible()
    expect(dashboard.ids).to_have_text([job["task_id"] for job in second_page["jobs"]])  # held by its cursor
    page.get_by_role("button", name="New jobs: back to newest").click()
    expect(page.locator("#page-number")).to_have_text("Page 1")
    expect(dashboard.rows.first).to_have_attribute("data-task-id", newest)


def test_the_queues_panel_counts_a_scheduled_job_and_forgets_it_once_cancelled(dashboard, api):
    dashboard.open()
    response = requests.post(f"{api.base_url}/add?delay_seconds=300", json={"x": 1, "y": 1}, timeout=10)
    task_id = response.json()["task_id"]
    celery = dashboard.page.locator('#queue-rows tr[data-queue="celery"] td')
    expect(celery).to_have_count(5)
    expect(celery.nth(2)).to_have_text("1")  # scheduled
    expect(dashboard.row(task_id).locator(".badge")).to_have_text("SCHEDULED")
    assert requests.post(f"{api.base_url}/status/{task_id}/cancel", timeout=10).json()["state"] == "REVOKED"
    expect(celery.nth(2)).to_have_text("0")
