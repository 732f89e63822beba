"""The job history: every job is listed however it was sent, filters and paging hold
while jobs come and go, failures can be retried once, and the index ends with its jobs."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import redis

from backend.jobs import extensions, states
from backend.jobs.index import INDEX_PREFIX, INDEX_SETS, TASK_INDEX_PREFIX, TASK_INDEX_SETS
from devtools.redis_server import free_port
from tests.helpers import (
    EXPIRY_DB,
    HISTORY_DB,
    IDLE_HISTORY_DB,
    empty_db,
    launch_worker,
    make_app,
    wait_for_state,
    wait_until,
)


@pytest.fixture(scope="module")
def history_url(redis_server):
    return empty_db(redis_server, HISTORY_DB)


@pytest.fixture(scope="module")
def history_worker(history_url, tmp_path_factory):
    process, hostname = launch_worker(history_url, tmp_path_factory.mktemp("history-worker"))
    yield hostname
    process.stop()


@pytest.fixture
def history_app(history_url, history_worker):
    return make_app(history_url)


@pytest.fixture
def history(history_app):
    return history_app.test_client()


@pytest.fixture
def idle_history(redis_server):
    return make_app(empty_db(redis_server, IDLE_HISTORY_DB)).test_client()


def listing(client, **query) -> dict:
    response = client.get("/jobs", query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def listed_ids(client, **query) -> list[str]:
    return [job["task_id"] for job in listing(client, **query)["jobs"]]


def submit(client, path: str, body: dict, **headers) -> str:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["task_id"]


def failed_job(client) -> str:
    task_id = submit(client, "/tasks/long_task", {"steps": 2, "step_seconds": 0, "fail_at_step": 1})
    wait_for_state(client, task_id, {states.FAILURE})
    return task_id


# --- every job is listed -----------------------------------------------------------------


def test_a_job_from_the_api_is_listed_with_its_owner_and_input(idle_history):
    task_id = submit(idle_history, "/add", {"x": 1, "y": 2})
    [job] = listing(idle_history)["jobs"]
    assert job == idle_history.get(f"/status/{task_id}").get_json()  # the same object as /status
    assert job["owner"] == "anonymous"
    assert job["input"] == {"x": 1, "y": 2}
    assert job["state"] == states.QUEUED


def test_jobs_sent_from_code_are_listed_as_owned_by_code_with_their_input_named(history_app, history):
    celery = extensions.celery_app(history_app)
    delayed = celery.tasks["add"].delay(2, 3).id
    counted_down = celery.tasks["add"].apply_async(kwargs={"x": 1, "y": 1}, countdown=30).id
    listed = {job["task_id"]: job for job in listing(history, owner="code")["jobs"]}
    assert listed[delayed]["input"] == {"x": 2, "y": 3}
    assert listed[counted_down]["state"] == states.SCHEDULED  # in the server-side schedule, not a worker
    wait_for_state(history, delayed, {states.SUCCESS})
    assert delayed in listed_ids(history, state="SUCCESS", owner="code")


def test_a_job_sent_with_send_task_is_listed_once_a_worker_holds_it(history_app, history):
    celery = extensions.celery_app(history_app)
    # send_task, as `celery call` does: no record is written by the sender.
    task_id = celery.send_task("add", kwargs={"x": 5, "y": 5}, countdown=60).id
    wait_until(lambda: task_id in listed_ids(history, owner="code", state="QUEUED"), timeout=10,
               what="the worker to record the job it holds")
    assert history.get(f"/status/{task_id}").get_json()["input"] == {"x": 5, "y": 5}
    history.post(f"/status/{task_id}/cancel")


def test_a_job_celery_retries_stays_one_listed_job_through_retry_and_success(history_app, history, history_url):
    celery = extensions.celery_app(history_app)
    # Sent by name (the worker loads tests.support_tasks); Task.retry() then sends it again.
    task_id = celery.send_task("tests.retry_once", kwargs={"countdown": 0.5}).id
    store = redis.Redis.from_url(history_url)

    def sets_holding_it() -> list[str]:
        keys = [key.decode() for key in store.smembers(INDEX_SETS) | store.smembers(TASK_INDEX_SETS)]
        return sorted(key for key in keys if store.zscore(key, task_id) is not None)

    # A 404 until the worker receives it (nothing recorded it before): no "state" then.
    wait_until(lambda: history.get(f"/status/{task_id}").get_json().get("state") == states.RETRY, timeout=10,
               what="the job to be retried by Celery")
    assert sets_holding_it() == [
        f"{TASK_INDEX_PREFIX}RETRY|tests.retry_once", f"{INDEX_PREFIX}RETRY|tests.retry_once|code",
    ]
    wait_for_state(history, task_id, {states.SUCCESS})
    assert sets_holding_it() == [
        f"{TASK_INDEX_PREFIX}SUCCESS|tests.retry_once", f"{INDEX_PREFIX}SUCCESS|tests.retry_once|code",
    ]
    assert listed_ids(history, name="tests.retry_once").count(task_id) == 1


def test_the_cli_owns_what_it_submits(history_app, history):
    result = history_app.test_cli_runner().invoke(args=["jobs", "submit", "add", "--json", '{"x": 1, "y": 1}'])
    assert result.exit_code == 0, result.output
    assert listing(history, owner="cli")["jobs"]


# --- filters and paging ------------------------------------------------------------------


def test_filters_select_by_state_name_owner_and_time(idle_history):
    before = datetime.now(UTC)
    adds = [submit(idle_history, "/add", {"x": i, "y": 0}) for i in range(3)]
    long_one = submit(idle_history, "/tasks/long_task", {"steps": 1})
    idle_history.post(f"/status/{adds[0]}/cancel")
    after = datetime.now(UTC)

    assert listed_ids(idle_history) == [long_one, *reversed(adds)]  # newest first
    assert listed_ids(idle_history, name="add") == list(reversed(adds))
    assert listed_ids(idle_history, state="REVOKED") == [adds[0]]
    assert set(listed_ids(idle_history, state="QUEUED,REVOKED")) == {*adds, long_one}
    repeated = idle_history.get("/jobs?state=QUEUED&state=REVOKED").get_json()["jobs"]
    assert {job["task_id"] for job in repeated} == {*adds, long_one}
    assert listed_ids(idle_history, owner="code") == []
    assert len(listed_ids(idle_history, since=before.isoformat(), until=after.isoformat())) == 4
    assert listed_ids(idle_history, since=after.isoformat()) == []
    # The times shown are the times filtered on: a job's own submitted_at includes it.
    shown = idle_history.get(f"/status/{adds[1]}").get_json()["submitted_at"]
    assert adds[1] in listed_ids(idle_history, since=shown, until=shown)
    assert listed_ids(idle_history, name="add", state="QUEUED", owner="anonymous") == [adds[2], adds[1]]


def test_counts_per_state_follow_the_filters(idle_history):
    adds = [submit(idle_history, "/add", {"x": i, "y": 0}) for i in range(3)]
    submit(idle_history, "/tasks/long_task", {"steps": 1})
    idle_history.post(f"/status/{adds[0]}/cancel")
    counts = listing(idle_history, name="add")["counts"]
    assert counts["QUEUED"] == 2 and counts["REVOKED"] == 1 and sum(counts.values()) == 3
    stats = idle_history.get("/jobs/stats").get_json()
    assert stats["total"] == 4 and stats["counts"]["QUEUED"] == 3
    assert idle_history.get("/jobs/stats?state=REVOKED").get_json()["total"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"state": "BROKEN"}, "state"),
        ({"limit": "201"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no zone: ambiguous
        ({"until": "yesterday"}, "until"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_filter_is_a_422_naming_the_parameter(idle_history, query, field):
    response = idle_history.get("/jobs", query_string=query)
    assert response.status_code == 422
    # A list's item is named with its position: state.0.
    assert [detail["field"].split(".")[0] for detail in response.get_json()["error"]["details"]] == [field]


def test_a_parameter_given_twice_is_a_422_but_state_may_repeat(idle_history):
    response = idle_history.get("/jobs?name=add&name=long_task")
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "name"
    assert idle_history.get("/jobs?state=QUEUED&state=FAILURE").status_code == 200
    assert idle_history.get("/jobs?since=1764374400").status_code == 422  # a number is not ISO 8601


def test_a_cursor_is_refused_with_other_filters(idle_history):
    for i in range(3):
        submit(idle_history, "/add", {"x": i, "y": 0})
    cursor = listing(idle_history, limit=1)["next_cursor"]
    response = idle_history.get("/jobs", query_string={"limit": 1, "cursor": cursor, "name": "add"})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "cursor"


def test_paging_is_stable_while_jobs_are_submitted_and_finish(history):
    existing = [submit(history, "/add", {"x": i, "y": 0}) for i in range(60)]
    stop = threading.Event()

    def keep_submitting():
        while not stop.is_set():
            submit(history, "/add", {"x": 0, "y": 0})

    submitter = threading.Thread(target=keep_submitting)
    submitter.start()
    try:
        seen: list[str] = []
        query: dict = {"limit": 7, "name": "add"}
        while True:
            page = listing(history, **query)
            seen += [job["task_id"] for job in page["jobs"]]
            if page["next_cursor"] is None:
                break
            query["cursor"] = page["next_cursor"]
            time.sleep(0.01)  # let submits and finishing jobs interleave with the paging
    finally:
        stop.set()
        submitter.join()
    assert len(seen) == len(set(seen)), "a job appeared twice"
    assert set(existing) <= set(seen), "a job that existed before the first page was skipped"


# --- retry -------------------------------------------------------------------------------


def test_a_failure_is_retried_with_its_input_and_linked_both_ways(history):
    failed = failed_job(history)
    assert history.get(f"/status/{failed}").get_json()["error"] == {
        "type": "StepFailed", "message": "failed at step 1 of 2, as asked (fail_at_step=1)",
    }
    response = history.post(f"/status/{failed}/retry")
    assert response.status_code == 202
    retry = response.get_json()
    assert retry["retry_of"] == failed and response.headers["Location"] == retry["status_url"]
    assert history.get(f"/status/{failed}").get_json()["retried_by"] == retry["task_id"]
    retried = wait_for_state(history, retry["task_id"], {states.FAILURE})
    assert retried["retry_of"] == failed
    assert retried["input"] == {"steps": 2, "step_seconds": 0, "fail_at_step": 1}


def test_a_job_is_retried_once_then_its_retry_is_the_one_to_retry(history):
    failed = failed_job(history)
    first = history.post(f"/status/{failed}/retry").get_json()["task_id"]
    again = history.post(f"/status/{failed}/retry")
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "already_retried"
    assert again.get_json()["error"]["details"] == {"retried_by": first}


def test_a_job_that_succeeded_or_has_not_ended_is_not_retried(history, idle_history):
    done = submit(history, "/add", {"x": 1, "y": 1})
    wait_for_state(history, done, {states.SUCCESS})
    queued = submit(idle_history, "/add", {"x": 1, "y": 1})
    for client, task_id in ((history, done), (idle_history, queued)):
        response = client.post(f"/status/{task_id}/retry")
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "not_retryable"
    assert idle_history.post("/status/no-such-job/retry").status_code == 404


def test_a_cancelled_job_is_retried(idle_history):
    queued = submit(idle_history, "/add", {"x": 1, "y": 1})
    idle_history.post(f"/status/{queued}/cancel")
    response = idle_history.post(f"/status/{queued}/retry")
    assert response.status_code == 202
    assert idle_history.get(f"/status/{response.get_json()['task_id']}").get_json()["state"] == states.QUEUED


def test_a_retry_with_an_idempotency_key_is_made_once(history):
    failed = failed_job(history)
    first = history.post(f"/status/{failed}/retry", headers={"Idempotency-Key": "retry-1"})
    second = history.post(f"/status/{failed}/retry", headers={"Idempotency-Key": "retry-1"})
    assert second.status_code == 202 and second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json()["task_id"] == first.get_json()["task_id"]


def test_an_input_that_no_longer_fits_the_model_is_a_422_naming_the_field(history_app, history):
    # Sent by code past the API's validation: the worker runs it and it fails on the extra argument.
    task_id = extensions.celery_app(history_app).send_task("long_task", kwargs={"steps": 1, "colour": "red"}).id
    wait_for_state(history, task_id, {states.FAILURE})
    response = history.post(f"/status/{task_id}/retry")
    assert response.status_code == 422
    assert [detail["field"] for detail in response.get_json()["error"]["details"]] == ["colour"]


def test_an_input_over_the_cap_is_listed_but_not_kept_and_says_why(redis_server):
    client = make_app(empty_db(redis_server, IDLE_HISTORY_DB), JOB_INPUT_MAX_BYTES="10").test_client()
    task_id = submit(client, "/add", {"x": 123456, "y": 654321})
    client.post(f"/status/{task_id}/cancel")
    [job] = listing(client)["jobs"]
    assert job["input"] is None and "JOB_INPUT_MAX_BYTES" in job["input_note"]
    response = client.post(f"/status/{task_id}/retry")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "input_not_kept"


# --- bulk actions ------------------------------------------------------------------------


def test_two_bulk_retries_at_once_retry_each_failure_once(history):
    failures = [
        submit(history, "/tasks/long_task", {"steps": 1, "step_seconds": 0, "fail_at_step": 1}) for _ in range(20)
    ]
    for task_id in failures:
        wait_for_state(history, task_id, {states.FAILURE})
    # The 20 and no other: not earlier tests' jobs, nor retries that fail while the bulk runs.
    since = history.get(f"/status/{failures[0]}").get_json()["submitted_at"]
    until = history.get(f"/status/{failures[-1]}").get_json()["submitted_at"]
    outcomes: list[dict] = []

    def bulk_retry():
        response = history.post("/jobs/retry", json={"name": "long_task", "since": since, "until": until})
        assert response.status_code == 200, response.get_json()
        outcomes.append(response.get_json())

    threads = [threading.Thread(target=bulk_retry) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    retried = [job["task_id"] for outcome in outcomes for job in outcome["jobs"]]
    assert sorted(retried) == sorted(failures), "each failure retried exactly once"
    assert sum(outcome["done"] for outcome in outcomes) == 20
    assert not any(outcome["more"] for outcome in outcomes)
    for task_id in failures:
        assert history.get(f"/status/{task_id}").get_json()["retried_by"]


def test_a_bulk_action_stops_at_its_limit_and_says_there_is_more(redis_server):
    client = make_app(empty_db(redis_server, IDLE_HISTORY_DB), BULK_ACTION_MAX_JOBS="3").test_client()
    ids = [submit(client, "/add", {"x": i, "y": 0}) for i in range(5)]
    first = client.post("/jobs/cancel", json={"name": "add"}).get_json()
    assert first["done"] == 3 and first["more"] and first["limit"] == 3
    assert [job["task_id"] for job in first["jobs"]] == list(reversed(ids))[:3]
    assert all(job["state"] == states.REVOKED for job in first["jobs"])
    second = client.post("/jobs/cancel", json={"name": "add"}).get_json()
    assert second["done"] == 2 and not second["more"]
    retried = client.post("/jobs/retry", json={}).get_json()
    assert retried["done"] == 3 and retried["more"]


def test_bulk_actions_refuse_states_they_cannot_act_on(idle_history):
    response = idle_history.post("/jobs/retry", json={"state": ["QUEUED"]})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "state.0"
    assert idle_history.post("/jobs/cancel", json={"state": "SUCCESS"}).status_code == 422
    assert idle_history.post("/jobs/cancel", json={"colour": "red"}).status_code == 422


# --- failure behaviour and expiry --------------------------------------------------------


def test_a_submit_whose_publish_fails_leaves_no_listed_job(redis_server):
    url = empty_db(redis_server, IDLE_HISTORY_DB)
    broken = make_app(url, BROKER_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    assert broken.post("/add", json={"x": 1, "y": 2}).status_code == 503
    assert listing(make_app(url).test_client())["jobs"] == []
    assert redis.Redis.from_url(url).smembers(INDEX_SETS) == set()


def test_the_index_ends_with_its_jobs_and_does_not_grow(redis_server, start_worker):
    url = empty_db(redis_server, EXPIRY_DB)
    settings = {"RESULT_EXPIRES": "2", "JOB_INDEX_TRIM_SECONDS": "0.5"}
    start_worker(url, **settings)
    client = make_app(url, **settings).test_client()
    store = redis.Redis.from_url(url)

    def index_size() -> int:
        return sum(store.zcard(key) for prefix in (INDEX_PREFIX, TASK_INDEX_PREFIX) for key in store.keys(prefix + "*"))

    sizes = []
    for round_ in range(3):
        ids = [submit(client, "/add", {"x": i, "y": round_}) for i in range(100)]
        sizes.append(index_size())  # read at once: on a slow host a round can outlast the expiry
        wait_for_state(client, ids[-1], {states.SUCCESS})
    assert all(0 < size <= 2 * 300 for size in sizes), sizes  # two entries per job
    wait_until(lambda: index_size() == 0, timeout=15, what="the worker to trim the expired jobs")
    assert store.smembers(INDEX_SETS) == store.smembers(TASK_INDEX_SETS) == set()
    assert listing(client)["jobs"] == [] and sum(listing(client)["counts"].values()) == 0
    assert store.dbsize() < 10, store.keys("*")


def test_a_listing_skips_an_expired_job_before_it_is_trimmed(redis_server):
    client = make_app(empty_db(redis_server, IDLE_HISTORY_DB), RESULT_EXPIRES="1").test_client()
    submit(client, "/add", {"x": 1, "y": 1})
    time.sleep(2.1)
    assert listing(client)["jobs"] == []


def test_a_worker_given_result_backend_in_its_environment_still_lists_finished_jobs(redis_server, start_worker):
    # `celery` reads RESULT_BACKEND as its own --result-backend option and would override
    # the job service's backend with Celery's plain one (backend/taskqueue/celery_app.py).
    url = empty_db(redis_server, EXPIRY_DB)
    start_worker(url, RESULT_BACKEND=url, BROKER_URL=url)
    client = make_app(url).test_client()
    task_id = submit(client, "/add", {"x": 1, "y": 2})
    wait_for_state(client, task_id, {states.SUCCESS})
    assert listed_ids(client, state="SUCCESS") == [task_id]
