"""Browser tests: Debian's Chromium driven by Playwright against a live server, with a real
in-process Celery worker consuming the (in-memory) broker."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("BYTESPIKE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config, items):
    if shutil.which(CHROMIUM):
        return
    if os.environ.get("BYTESPIKE_REQUIRE_BROWSER"):
        raise pytest.UsageError(f"BYTESPIKE_REQUIRE_BROWSER is set but {CHROMIUM} is missing")
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def browser(live_server, transactional_db, monkeypatch):
    """A fresh headless Chromium per test.

    Playwright's sync API runs an event loop in this thread for as long as it is started, so
    the ORM's async guard is lifted for exactly that span and no longer.
    """
    from django.db import connections
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # While the loop runs, Django keys connections by async context, not by thread: the
        # test's own queries used a connection that only this context can close.
        connections.close_all()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker in a thread, consuming what the live server enqueues."""
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connections

    from console.celery import app

    # A `celery worker` process closes its database connections after each task (Celery's
    # Django fixup); this in-thread worker must do the same, or the test database stays busy.
    def close_connections(**kwargs):
        connections.close_all()

    task_postrun.connect(close_connections, weak=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as w:
            yield w
    finally:
        task_postrun.disconnect(close_connections)


@pytest.fixture
def shot():
    """Save a screenshot of a step under var/screenshots (CI keeps them as artifacts)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str):
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

    return take
