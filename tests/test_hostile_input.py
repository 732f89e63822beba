"""Hostile input gets a clean JSON error with the exact status: never a 500, an HTML
page or a traceback, and nothing is enqueued.

tests/test_input_errors.py covers ordinary bad input; this file covers input meant to
break the parser, the size limit, the router or the text handling. Bodies are sent as
raw bytes, not through `json=`, so they are exactly what a hostile client would send.
Submits go to POST /longtask where it matters: every long_task field has a default, so
a body misread as empty would be accepted (202) instead of refused.
"""

from __future__ import annotations

import io

import pytest
import requests

JSON = "application/json"
MAX_BODY = 64 * 1024  # MAX_CONTENT_LENGTH's default, checked in test_the_limit_is_the_documented_default


def assert_clean_error(response, status: int, code: str) -> dict:
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json"
    assert "Traceback" not in text and "<html" not in text.lower()
    body = response.get_json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) <= {"code", "message", "details"}
    assert error["code"] == code
    assert error["message"]
    return error


@pytest.fixture
def nothing_enqueued(idle_queue_length):
    before = idle_queue_length()
    yield
    assert idle_queue_length() == before


def post(client, path: str, body: bytes, content_type: str | None = JSON, **kwargs):
    return client.post(path, data=body, content_type=content_type, **kwargs)


def test_the_limit_is_the_documented_default(idle_app):
    assert idle_app.config["MAX_CONTENT_LENGTH"] == MAX_BODY


# Malformed JSON: 400.


@pytest.mark.parametrize(
    "body",
    [
        b'{"steps": 1,}',  # trailing comma
        b"{'steps': 1}",  # single quotes
        b"{steps: 1}",  # bare key
        b"{} {}",  # two documents
        b"{}\x00",  # a NUL byte after the document
        b"\x0b",  # whitespace to Python, not to JSON: must not read as an empty body
        b" \t\r\n",  # whitespace alone is no JSON document either; only a body of no bytes is "no input"
        b"\x0c{}",
        b'{"steps": "\xff"}',  # invalid UTF-8
        b'{"steps": "\xc0\xaf"}',  # overlong UTF-8 for "/"
        b"\xef\xbb\xbf\xef\xbb\xbf{}",  # two byte order marks
    ],
    ids=["trailing-comma", "single-quotes", "bare-key", "two-documents", "nul-after", "vertical-tab", "whitespace",
         "form-feed", "invalid-utf8", "overlong-utf8", "double-bom"],
)
def test_malformed_json_is_400(idle_client, nothing_enqueued, body):
    assert_clean_error(post(idle_client, "/longtask", body), 400, "malformed_json")


def test_json_nested_deeper_than_the_parser_goes_is_400_not_a_recursion_error(idle_client, nothing_enqueued):
    body = b"[" * 32_000 + b"]" * 32_000  # under the size limit
    assert len(body) < MAX_BODY
    error = assert_clean_error(post(idle_client, "/longtask", body), 400, "malformed_json")
    assert "recursion" in error["message"]


def test_json_nested_100k_levels_is_refused_by_the_size_limit_first(idle_client, nothing_enqueued):
    body = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert_clean_error(post(idle_client, "/longtask", body), 413, "request_entity_too_large")


# Anything but JSON: 415.


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"steps": "1"}},  # application/x-www-form-urlencoded
        {"data": {"steps": "1", "file": (io.BytesIO(b"{}"), "input.json")}, "content_type": "multipart/form-data"},
        {"data": b'{"steps": 1}'},  # no Content-Type at all
        {"data": b'{"steps": 1}', "content_type": "text/json"},
        {"data": b'{"steps": 1}', "content_type": "application/x-json"},
        {"data": b"<steps>1</steps>", "content_type": "application/xml"},
    ],
    ids=["form-urlencoded", "multipart", "no-content-type", "text-json", "x-json", "xml"],
)
def test_a_body_that_is_not_json_is_415(idle_client, nothing_enqueued, kwargs):
    assert_clean_error(idle_client.post("/longtask", **kwargs), 415, "unsupported_media_type")


# Too big: 413, whether the client says so (Content-Length) or streams it (chunked).


def chunked(client, path: str, body: bytes):
    # gunicorn sets wsgi.input_terminated: it de-chunks the body and ends the stream.
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type=JSON,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_body_over_the_limit_with_a_content_length_is_413(idle_client, nothing_enqueued):
    body = b'{"steps": 1, "pad": "' + b"a" * MAX_BODY + b'"}'
    assert_clean_error(post(idle_client, "/longtask", body), 413, "request_entity_too_large")


def test_a_chunked_body_over_the_limit_is_413(idle_client, nothing_enqueued):
    body = b'{"steps": 1, "pad": "' + b"a" * MAX_BODY + b'"}'
    assert_clean_error(chunked(idle_client, "/longtask", body), 413, "request_entity_too_large")


def test_a_chunked_body_is_not_cut_at_the_limit_and_parsed(idle_client, nothing_enqueued):
    # Valid JSON in the first 64 KiB, more after it: werkzeug hands over the first 64 KiB
    # without a 413, which would be read as {} and submitted.
    body = b"{}" + b" " * (MAX_BODY - 2) + b"more than the limit"
    assert_clean_error(chunked(idle_client, "/longtask", body), 413, "request_entity_too_large")


def test_a_small_chunked_body_is_read(idle_client, nothing_enqueued):
    error = assert_clean_error(chunked(idle_client, "/add", b'{"x": 1, "y": "2"}'), 422, "validation_error")
    assert [d["field"] for d in error["details"]] == ["y"]


@pytest.mark.e2e
def test_gunicorn_answers_a_chunked_body_over_the_limit_with_a_json_413(gunicorn_url):
    def chunks():
        for _ in range(20):
            yield b" " * 8192

    response = requests.post(f"{gunicorn_url}/longtask", data=chunks(), headers={"Content-Type": JSON}, timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_entity_too_large"


# Huge and odd numbers: a 422 naming the field (or 400 past what the parser reads), never a 500.


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/add", b'{"x": 1e309, "y": 1}', "x"),  # overflows a double
        ("/add", b'{"x": 1%s, "y": 1}' % (b"0" * 400), "x"),  # 10**400 as an integer literal
        ("/add", b'{"x": NaN, "y": 1}', "x"),  # Python's json reads these; JSON has none
        ("/add", b'{"x": Infinity, "y": 1}', "x"),
        ("/add", b'{"x": 1, "y": -Infinity}', "y"),
        ("/add", b'{"x": 1e16, "y": 1}', "x"),
        ("/longtask", b'{"steps": 1e300}', "steps"),
        ("/longtask", b'{"steps": 1e400}', "steps"),
        ("/longtask", b'{"steps": NaN}', "steps"),
        ("/longtask", b'{"steps": 2.5}', "steps"),
        ("/longtask", b'{"step_seconds": -0.0000001}', "step_seconds"),
    ],
)
def test_huge_and_non_finite_numbers_are_422_naming_the_field(idle_client, nothing_enqueued, path, body, field):
    error = assert_clean_error(post(idle_client, path, body), 422, "validation_error")
    assert [d["field"] for d in error["details"]] == [field]


def test_an_integer_literal_longer_than_the_parser_reads_is_400(idle_client, nothing_enqueued):
    body = b'{"steps": 1%s}' % (b"0" * 5000)  # Python refuses ints over 4,300 digits
    assert_clean_error(post(idle_client, "/longtask", body), 400, "malformed_json")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/add", b'{"x": -0, "y": -0.0}'),
        ("/add", b'{"x": 5e-324, "y": 1e15}'),  # the smallest double, the largest allowed value
        ("/longtask", b'{"steps": 2.0, "step_seconds": 0}'),  # JSON Schema's "integer" includes 2.0
        ("/longtask", b'{"steps": 1e1, "step_seconds": 0}'),
    ],
)
def test_odd_but_valid_numbers_are_accepted(idle_client, idle_queue_length, path, body):
    before = idle_queue_length()
    response = post(idle_client, path, body)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert idle_queue_length() == before + 1


# Odd text: a 4xx that names what it refused, as valid JSON.


@pytest.mark.parametrize(
    "key",
    ["\U0001f600", "\u202egnp.exe", "\x00", "\u200b", "a" * 1000],
    ids=["emoji", "rtl-override", "nul", "zero-width-space", "long"],
)
def test_an_unknown_field_with_an_odd_name_is_422_naming_it(idle_client, nothing_enqueued, key):
    response = idle_client.post("/add", json={"x": 1, "y": 2, key: 1})
    error = assert_clean_error(response, 422, "validation_error")
    assert [d["field"] for d in error["details"]] == [key]


@pytest.mark.parametrize(
    "body",
    [
        b'{"x": 1, "y": 1, "\\ud800": 1}',  # a lone surrogate, escaped
        b'{"x": "\\udfff", "y": 1}',
        b'{"x": "\xed\xa0\x80", "y": 1}',  # a surrogate encoded in UTF-8 (CESU), not valid UTF-8
        b'{"x": "\\u0000", "y": 1}',
    ],
    ids=["surrogate-key", "surrogate-value", "cesu-surrogate", "nul-value"],
)
def test_lone_surrogates_and_nul_in_strings_are_422(idle_client, nothing_enqueued, body):
    assert_clean_error(post(idle_client, "/add", body), 422, "validation_error")


@pytest.mark.parametrize("value", ["%ff", "%00", "%D9%A1%D9%A2", "%EF%BC%91", "1e999999"])
def test_odd_query_values_are_422(idle_client, nothing_enqueued, value):
    error = assert_clean_error(idle_client.get(f"/longtask?steps={value}"), 422, "validation_error")
    assert [d["field"] for d in error["details"]] == ["steps"]


@pytest.mark.parametrize("name", ["%E2%80%AEadd", "%F0%9F%98%80", "%ff", "%00", "a" * 10_000, "add%00"])
def test_odd_task_names_are_404(idle_client, nothing_enqueued, name):
    assert_clean_error(idle_client.post(f"/tasks/{name}", json={}), 404, "unknown_task")


@pytest.mark.parametrize("key", ["café", "a\tb", "a" * 256])
def test_an_odd_idempotency_key_is_400(idle_client, nothing_enqueued, key):
    response = idle_client.post("/add", json={"x": 1, "y": 2}, headers={"Idempotency-Key": key})
    assert_clean_error(response, 400, "invalid_idempotency_key")


# Odd ids and paths: 404, never a file and never a Redis key outside the task records.

ODD_TASK_IDS = ["%2e%2e", "..%252f..%252fetc%252fpasswd", "%00", "abc%00def", "a" * 10_000,
                "%E2%80%AE%F0%9F%98%80", "%ff", "job:1", "*", "celery-task-meta-*"]
TRAVERSALS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"]


@pytest.mark.parametrize("task_id", ODD_TASK_IDS)
def test_odd_task_ids_are_404_for_status_cancel_and_events(idle_client, task_id):
    assert_clean_error(idle_client.get(f"/status/{task_id}"), 404, "task_not_found")
    assert_clean_error(idle_client.post(f"/status/{task_id}/cancel"), 404, "task_not_found")
    assert_clean_error(idle_client.get(f"/status/{task_id}/events"), 404, "task_not_found")


@pytest.mark.parametrize("traversal", TRAVERSALS)
def test_path_traversal_matches_no_route(idle_client, traversal):
    assert_clean_error(idle_client.get(f"/status/{traversal}"), 404, "not_found")
    assert_clean_error(idle_client.post(f"/status/{traversal}/cancel"), 404, "not_found")
    assert_clean_error(idle_client.get(f"/static/{traversal}"), 404, "not_found")
    assert_clean_error(idle_client.get(f"/docs/{traversal}"), 404, "not_found")


# Not "/": it is the dashboard (tests/browser).
@pytest.mark.parametrize("path", ["/status", "/status/", "/tasks/", "/etc/passwd", "/docs/redoc/", "/.env"])
def test_unknown_routes_are_a_json_404(idle_client, path):
    assert_clean_error(idle_client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/status/abc", "GET"),
        ("DELETE", "/status/abc", "GET"),
        ("GET", "/status/abc/cancel", "POST"),
        ("DELETE", "/tasks", "GET"),
        ("GET", "/tasks/add", "POST"),
        ("PATCH", "/longtask", "POST"),
        ("TRACE", "/add", "POST"),
        ("POST", "/healthz", "GET"),
        ("POST", "/openapi.json", "GET"),
    ],
)
def test_wrong_methods_are_a_json_405_with_allow(idle_client, method, path, allowed):
    response = idle_client.open(path, method=method)
    assert_clean_error(response, 405, "method_not_allowed")
    assert allowed in response.headers["Allow"]
