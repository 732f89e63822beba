"""The result backend (backend/taskqueue/results.py) reads a stored state as Celery does,
by a faster path where it can."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from celery.backends.redis import RedisBackend

from backend.jobs import extensions


@pytest.mark.parametrize(
    "result",
    [
        {"steps": 3, "message": "é ✓"},
        [1, 2.5, None, True],
        # Types kombu's JSON marks with "__type__", and a value that only looks like one.
        datetime(2026, 12, 7, 4, 0, tzinfo=UTC),
        Decimal("1.25"),
        uuid.UUID(int=7),
        {"__type__": "not kombu's", "value": 1},
    ],
    ids=["object", "list", "datetime", "decimal", "uuid", "a lookalike"],
)
def test_a_stored_state_decodes_as_celerys_own_backend_decodes_it(idle_app, result):
    backend = extensions.celery_app(idle_app).backend
    stored = backend.encode({"status": "SUCCESS", "result": result, "date_done": "2026-12-07T04:00:00"}).encode()
    assert backend.decode(stored) == RedisBackend.decode(backend, stored)
    assert backend.decode_result(stored)["result"] == result


def test_a_failure_decodes_to_its_exception_as_celery_does(idle_app):
    backend = extensions.celery_app(idle_app).backend
    stored = backend.encode(
        {"status": "FAILURE", "result": backend.prepare_exception(ValueError("bad input")), "date_done": None}
    ).encode()
    error = backend.decode_result(stored)["result"]
    assert (type(error).__name__, str(error)) == ("ValueError", "bad input")
