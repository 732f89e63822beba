"""Moved to tests/helpers.py; this re-export remains only until tests/test_config.py and
tests/test_import.py import from there. Delete it then."""

from tests.helpers import PROJECT_ROOT, VENV_BIN, Process, service_env, wait_until  # noqa: F401
