"""Getting started in Chromium: the dashboard's panel with the base URL and code, a key created
with its code shown once (copied, and run: curl against this very server), the keys list's pause
switch without a page load, and a playground chat whose "View code" gives the request just made
(run too, with the OpenAI SDK). Every call goes to the loopback server under test."""

import json
import os
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from billing.models import UsageRecord
from keys.models import ApiKey, KeyStatus
from tests.browser.test_playground_flow import open_playground, sign_in, site, team  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def run(command: list[str], **env) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_get_started_create_a_key_copy_its_code_pause_it_and_view_playground_code(
    site,  # noqa: F811
    page,
    shot,
    team,  # noqa: F811
):
    owner, _, _, studio_key = team
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site)
    errors = sign_in(page, site, owner.email)

    # A new account (no usage yet): the panel with the base URL, the newest key and the code.
    panel = page.locator("#get-started")
    expect(panel.get_by_role("heading", name="Get started")).to_be_visible()
    expect(panel.locator("#start-base-url")).to_have_text(site)
    expect(panel).to_contain_text(studio_key.masked)
    expect(panel.locator("#start-curl")).to_contain_text("$BYTESPIKE_API_KEY")
    expect(panel.get_by_role("link", name="API docs").first).to_have_attribute(
        "href", "/api/v1/docs"
    )
    shot(page, "start-01-dashboard")

    # Create a key: the dialog's code has the new secret in it; copy it, and it runs.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="API keys").click()
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("link", name="Create key").click()
    dialog = page.get_by_role("dialog", name="Create an API key")
    dialog.get_by_label("Name").fill("Checkout service")
    dialog.get_by_role("radio", name="Gemini").check()
    dialog.get_by_role("button", name="Create key").click()
    done = page.get_by_role("dialog", name="Key created")
    expect(done).to_be_visible()
    secret = done.get_by_label("Secret key").input_value()
    curl = done.locator("#new-key-curl")
    expect(curl).to_contain_text(f"Bearer {secret}")
    expect(done.locator("#new-key-base-url")).to_have_text(site)
    done.get_by_role("button", name="Copy the curl code").click()
    expect(done.get_by_role("button", name="Copied the curl code")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == curl.text_content().strip() and secret in copied
    shot(page, "start-02-key-created-code")
    answer = json.loads(run(["bash", "-c", copied]))
    assert answer["choices"][0]["message"]["content"]
    key = ApiKey.objects.get(name="Checkout service")
    assert UsageRecord.objects.filter(api_key=key).count() == 1
    done.get_by_role("button", name="Done").click()
    page.wait_for_function(
        "secret => !document.documentElement.outerHTML.includes(secret)", arg=secret, timeout=5000
    )

    # The pause switch, in the row, in place.
    row = page.locator(f"#key-row-{key.public_id}")
    switch = row.get_by_role("switch", name="Checkout service active")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(row.locator("[data-status]")).to_have_text("Paused")
    expect(row.get_by_role("switch")).to_have_attribute("aria-checked", "false")
    expect(page.locator("#live-region")).to_have_text("Paused Checkout service.")
    key.refresh_from_db()
    assert key.status == KeyStatus.PAUSED
    shot(page, "start-03-paused-in-place")
    row.get_by_role("switch").click()
    expect(row.locator("[data-status]")).to_have_text("Active")
    assert page.evaluate("window.__sameDocument") is True
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE

    # The playground: a chat, then "View code" shows that request; its Python runs as is.
    open_playground(page, site, key, "gemini-2.5-flash")
    view_code = page.get_by_role("button", name="View code")
    expect(view_code).to_be_hidden()
    page.get_by_label("Message", exact=True).fill("Hello there [sandbox:words=5]")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".chat-usage [data-usage]")).to_contain_text("credits")
    view_code.click()
    code = page.get_by_role("dialog", name="Code for this request")
    expect(code).to_be_visible()
    expect(code).to_contain_text(key.masked)
    expect(code.locator("#pg-curl")).to_contain_text("Hello there [sandbox:words=5]")
    expect(code.locator("#pg-curl")).to_contain_text("Bearer $BYTESPIKE_API_KEY")
    assert secret not in page.content()
    shot(page, "start-04-view-code")
    code.get_by_text("Python (OpenAI SDK)", exact=True).click()
    python = code.locator("#pg-python")
    expect(python).to_be_visible()
    printed = run([sys.executable, "-c", python.text_content()], BYTESPIKE_API_KEY=secret)
    assert len(printed.split()) >= 5
    code.get_by_role("button", name="Close").last.click()
    expect(code).to_be_hidden()
    assert errors == []
