"""The dashboard with a client's token, in a real Chromium against real gunicorn with a
clients file: it lists that client's jobs only and offers only what its role may do (a
`read` client: no submit form, no Cancel, Retry or "Retry all failed"); and, whatever the
token, never puts it in a URL."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from backend.jobs import service
from backend.jobs.callers import Caller, Role
from backend.ops.clients import ClientsFile, token_digest
from tests.helpers import launch_gunicorn, make_app
from tests.reliability import figures

expect = pytest.importorskip("playwright.sync_api").expect

ROLES = {"watcher": Role.READ, "billing": Role.SUBMIT, "ops": Role.ADMIN}


@pytest.fixture(scope="module")
def clients_file(tmp_path_factory) -> ClientsFile:
    return ClientsFile(tmp_path_factory.mktemp("clients") / "clients.json")


@pytest.fixture(scope="module")
def tokens(clients_file) -> dict[str, str]:
    """One client of each role in the clients file: each one's token, by name."""
    return {name: clients_file.add(name, role)[1] for name, role in ROLES.items()}


@pytest.fixture(scope="module")
def clients_url(dashboard_redis_url, clients_file, tokens, tmp_path_factory):
    """A gunicorn with the clients file, on the dashboard's Redis (the `api` fixture's, so it
    ends what a test left running)."""
    process, url = launch_gunicorn(
        dashboard_redis_url, tmp_path_factory.mktemp("gunicorn-clients"), "gunicorn-clients",
        GUNICORN_WORKERS="1", API_CLIENTS_FILE=str(clients_file.path),
    )
    yield url
    process.stop()


def submit_as(redis_url: str, client: str, task: str, **job_input) -> str:
    """A job owned by `client`, whatever its role (a `read` client cannot submit one itself:
    its jobs were submitted under its name when it could)."""
    app = make_app(redis_url)
    with app.app_context():
        return service.submit(task, job_input, caller=Caller(client, Role.SUBMIT)).job_id


def test_with_a_read_token_the_page_lists_the_clients_jobs_without_a_submit_form_or_action_buttons(
    dashboard, clients_url, tokens, api
):
    failed = submit_as(api.redis_url, "watcher", "long_task", steps=1, step_seconds=0, fail_at_step=1)
    running = submit_as(api.redis_url, "watcher", "long_task", steps=60, step_seconds=0.5)
    others = submit_as(api.redis_url, "billing", "add", x=1, y=2)
    api.wait_for(failed, "FAILURE")
    page = dashboard.page
    dashboard.open(clients_url)
    dashboard.save_token(tokens["watcher"])

    expect(page.locator("#caller")).to_have_text("watcher (read)")
    expect(dashboard.row(running).locator(".badge")).to_have_text("PROGRESS")
    expect(dashboard.ids).to_have_text([running, failed])  # its own jobs, and no other client's
    assert dashboard.row(others).count() == 0
    expect(page.locator("#submit-form")).to_be_hidden()
    expect(page.locator("#queues-panel")).to_be_hidden()  # GET /queues is for admins
    expect(page.locator("#retry-failed")).to_be_hidden()
    expect(page.locator("#job-rows .cancel:visible")).to_have_count(0)
    expect(page.locator("#job-rows .retry:visible")).to_have_count(0)
    expect(page.locator("#token-panel")).to_be_visible()  # another token can still be saved

    dashboard.row(failed).locator(".open-detail").click()
    expect(dashboard.field("error")).to_contain_text("StepFailed")
    expect(page.locator("#detail-retry")).to_be_hidden()
    expect(page.locator("#detail-cancel")).to_be_hidden()
    # No script error; the 401s of the calls made before the token was saved are logged too.
    assert [error for error in page.console_errors if "status of 401" not in error] == []


def test_with_a_submit_token_the_page_offers_its_own_jobs_buttons_but_no_bulk_retry(
    dashboard, clients_url, tokens, api
):
    page = dashboard.page
    dashboard.open(clients_url)
    dashboard.save_token(tokens["billing"])
    expect(page.locator("#caller")).to_have_text("billing (submit)")
    expect(page.locator("#retry-failed")).to_be_hidden()  # POST /jobs/retry is for admins

    row = dashboard.row(dashboard.submit(30, 0.5))
    expect(row.locator(".owner")).to_have_text("billing")
    row.locator(".cancel").click()
    expect(row.locator(".badge")).to_have_text("REVOKED")
    expect(row.locator(".retry")).to_be_visible()


def test_with_an_admin_token_the_page_offers_everything_and_without_one_it_offers_all_until_it_knows(
    dashboard, clients_url, tokens, api
):
    page = dashboard.page
    dashboard.open(clients_url)
    expect(page.locator("#list-problem")).to_contain_text("enter a token")
    expect(page.locator("#submit-form")).to_be_visible()  # the API's 401 says what is missing
    dashboard.save_token(tokens["ops"])
    expect(page.locator("#caller")).to_have_text("ops (admin)")
    expect(page.locator("#submit-form")).to_be_visible()
    expect(page.locator("#retry-failed")).to_be_visible()


@pytest.mark.reliability
def test_the_page_never_puts_a_token_in_a_url(dashboard, clients_url, tokens, api):
    """Each client's token saved in turn, and the page used with it: every URL the page asked
    for (documents, scripts, API calls, streams) holds no token, whole, URL-encoded or hashed;
    nor does the page keep one anywhere but the tab's sessionStorage."""
    urls: list[str] = []
    page = dashboard.page
    page.on("request", lambda request: urls.append(request.url))
    dashboard.open(clients_url)
    for name in ("watcher", "billing", "ops"):
        dashboard.save_token(tokens[name])
        expect(page.locator("#caller")).to_have_text(f"{name} ({ROLES[name].label})")
        if name != "watcher":
            running = dashboard.submit(30, 0.5)  # followed by a stream
            expect(dashboard.row(running).locator(".badge")).to_have_text("PROGRESS")
            dashboard.row(running).locator(".cancel").click()
            expect(dashboard.row(running).locator(".badge")).to_have_text("REVOKED")
            dashboard.row(running).locator(".open-detail").click()
            expect(dashboard.field("state")).to_have_text("REVOKED")
            page.click("#detail-close")
        dashboard.count("SUCCESS").click()  # a filter: another GET /jobs query string
        dashboard.count("SUCCESS").click()
        page.reload()  # the tab keeps the token; the page asks again with it
        expect(page.locator("#caller")).to_have_text(f"{name} ({ROLES[name].label})")
    page.click("#token-panel summary")  # closed again by the reload
    page.click("#token-forget")

    secrets = [form for token in tokens.values() for form in (token, quote(token, safe=""), token_digest(token))]
    leaking = [url for url in urls if any(secret in url for secret in secrets)]
    api_calls = [url for url in urls if "/static/" not in url]
    stored = page.evaluate("JSON.stringify({local: {...localStorage}, session: {...sessionStorage}, "
                           "cookie: document.cookie})")
    figures.record("security", "dashboard request URLs checked for a token", len(urls), "", "≥ 50", len(urls) >= 50)
    figures.record("security", "dashboard request URLs holding a token or its hash", len(leaking), "", "0",
                   not leaking)
    assert len(api_calls) >= 20
    assert leaking == []
    assert not any(secret in stored for secret in secrets)  # forgotten, and never in localStorage or a cookie
