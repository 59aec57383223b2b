"""An owner sets up alerts in Chromium: an internal URL is refused under its field, a Slack
channel to a local receiver is added and tested (a real worker sends it, the button's answer
follows it to "Test delivered"), and a rule is added."""

import json

import pytest
from playwright.sync_api import expect

from tests.callbacks.conftest import Receiver
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_adds_a_channel_tests_it_and_adds_a_rule(
    live_server, page, world, celery_worker, shot, settings
):
    settings.BYTESPIKE_CALLBACK_ALLOW_HTTP = True
    settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    receiver = Receiver().start()
    try:
        page.goto(f"{live_server.url}/")
        page.get_by_label("Email").fill(world.owner.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign In").click()
        page.get_by_role("navigation", name="Sections").get_by_role("link", name="Alerts").click()
        expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()

        form = page.locator("#channel-new")
        form.get_by_label("Kind").select_option("webhook")
        form.get_by_label("Name").fill("Metadata")
        form.get_by_label("Send to").fill("https://169.254.169.254/latest")
        form.get_by_role("button", name="Add channel").click()
        expect(page.locator("#channel_target_error")).to_contain_text(
            "The URL is not a public address (link-local)."
        )

        form = page.locator("#channel-new")
        form.get_by_label("Kind").select_option("slack")
        form.get_by_label("Name").fill("#billing")
        form.get_by_label("Send to").fill(f"http://127.0.0.1:{receiver.port}/services/T/B/x")
        form.get_by_role("button", name="Add channel").click()
        row = page.locator("#channels tbody tr").filter(has_text="#billing")
        expect(row).to_be_visible()

        row.get_by_role("button", name="Send a test alert").click()
        expect(row.get_by_text("Test delivered")).to_be_visible()
        assert "Test alert for #billing" in json.loads(receiver.requests[0].body)["text"]

        rule = page.locator("#rule-new")
        rule.get_by_label("When").select_option("balance_below")
        rule.get_by_label("Threshold (credits)").fill("25")
        rule.get_by_label("#billing (Slack)").check()
        rule.get_by_role("button", name="Add rule").click()
        expect(page.locator("#rules")).to_contain_text("Available balance below 25.00 credits")
        page.reload()
        expect(page.locator("#alert-history")).to_contain_text("Test alert for #billing")
        shot(page, "alerts-01-page")
    finally:
        receiver.stop()
