"""Bad input gets a clear JSON error with the right status, and nothing is enqueued."""

import pytest


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 10_001}, "steps"),
        ({"steps": "5"}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"step_seconds": -1}, "step_seconds"),
        ({"step_seconds": 61}, "step_seconds"),
        ({"steps": 1, "colour": "red"}, "colour"),
        ({"steps": 10**30}, "steps"),
    ],
)
def test_out_of_range_long_task_input_is_422_naming_the_field_and_enqueues_nothing(
    idle_client, idle_queue_length, payload, field
):
    before = idle_queue_length()
    error = assert_error(idle_client.post("/longtask", json=payload), 422, "validation_error")
    assert field in [detail["field"] for detail in error["details"]]
    assert idle_queue_length() == before


def test_a_long_task_longer_than_its_time_limit_is_422(idle_client, idle_queue_length):
    before = idle_queue_length()
    answer = idle_client.post("/longtask", json={"steps": 10_000, "step_seconds": 60})
    error = assert_error(answer, 422, "validation_error")
    assert "time limit" in error["message"]
    assert idle_queue_length() == before


def test_query_parameters_are_validated_on_get_longtask(idle_client, idle_queue_length):
    before = idle_queue_length()
    error = assert_error(idle_client.get("/longtask?steps=abc"), 422, "validation_error")
    assert error["details"][0]["field"] == "steps"
    assert idle_queue_length() == before


@pytest.mark.parametrize(
    "payload",
    [{"x": 1, "y": "a"}, {"x": 1}, {"x": None, "y": 2}, {"x": "1", "y": 2}, {"x": 1e309, "y": 0}, [1, 2], "1+2"],
)
def test_add_with_bad_types_is_422_and_enqueues_nothing(idle_client, idle_queue_length, payload):
    before = idle_queue_length()
    assert_error(idle_client.post("/add", json=payload), 422, "validation_error")
    assert idle_queue_length() == before


def test_malformed_json_is_400(idle_client, idle_queue_length):
    before = idle_queue_length()
    assert_error(idle_client.post("/add", data='{"x": 1,', content_type="application/json"), 400, "malformed_json")
    assert idle_queue_length() == before


def test_non_json_content_type_is_415(idle_client, idle_queue_length):
    before = idle_queue_length()
    answer = idle_client.post("/add", data='{"x": 1, "y": 2}', content_type="text/plain")
    assert_error(answer, 415, "unsupported_media_type")
    assert idle_queue_length() == before


def test_a_body_over_the_limit_is_413(idle_client, idle_app):
    body = '{"x": 1, "y": 2, "pad": "' + "a" * idle_app.config["MAX_CONTENT_LENGTH"] + '"}'
    assert_error(idle_client.post("/add", data=body, content_type="application/json"), 413, "request_entity_too_large")


def test_odd_unicode_is_a_clean_422(idle_client):
    answer = idle_client.post("/add", json={"x": "\u202e\ud83d\ude00\x00", "y": 1})
    error = assert_error(answer, 422, "validation_error")
    assert error["details"][0]["field"] == "x"


def test_an_unknown_task_name_is_404(idle_client):
    assert_error(idle_client.post("/tasks/rm_rf", json={}), 404, "unknown_task")


def test_an_unknown_route_is_a_json_404(idle_client):
    assert_error(idle_client.get("/no/such/route"), 404, "not_found")


def test_a_wrong_method_is_a_json_405(idle_client):
    error = assert_error(idle_client.delete("/add"), 405, "method_not_allowed")
    assert error["message"]


@pytest.mark.parametrize(
    "task_id",
    ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "x" * 5000, "%00", "café", "a b", "*", "job:1"],
)
def test_unknown_or_malformed_task_ids_are_404(idle_client, task_id):
    assert_error(idle_client.get(f"/status/{task_id}"), 404, "task_not_found")


@pytest.mark.parametrize("path", ["/status/../../etc/passwd", "/status/..%2F..%2Fetc%2Fpasswd", "/status/a/b"])
def test_path_traversal_in_a_task_id_is_a_json_404(idle_client, path):
    response = idle_client.get(path)
    assert response.status_code == 404 and response.is_json


def test_cancelling_an_unknown_task_is_404(idle_client):
    assert_error(idle_client.post("/status/00000000-0000-4000-8000-000000000000/cancel"), 404, "task_not_found")
