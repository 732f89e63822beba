"""The task functions themselves, called directly (no broker): pure unit tests."""

from backend.tasks import add, long_task


def test_add_adds(app):
    assert add(2, 3.5) == 5.5


def test_long_task_runs_every_step_and_reports_completion(app):
    assert long_task(steps=3, step_seconds=0) == {"steps": 3, "message": "completed 3 steps"}
