"""Fixtures of the browser tests: a real Chromium driven by Playwright.

Playwright never downloads a browser here: it drives the system's Chromium (Debian's
`chromium` package; .ci/run installs it). Without one, these tests skip and say why.
Every test here gets the `browser` marker (`make test PYTEST_ARGS="-m browser"`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).parent
# Headless on a machine without network: no GPU, no sandbox (CI runs as root), and
# none of Chromium's background requests (updates, sync, safe browsing), which would
# only fill the log with refused connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium: install Debian's chromium package (.ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    # Waits in the tests are for real workers and real streams on two shared cores;
    # Playwright's default of 5 s is short when the machine is busy.
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page in its own context: empty localStorage and sessionStorage."""
    context = chromium.new_context(viewport={"width": 960, "height": 720})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
