"""An owner creates an API key through the dialog, copies the secret shown once, and revokes the
key from its row: in Chromium, through the real pages, without a full page load."""

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Role
from catalogue.models import RoutingGroup
from keys.models import ApiKey
from keys.services import key_digest
from tests.factories import (
    PASSWORD,
    AccountFactory,
    AIModelFactory,
    ChannelFactory,
    MembershipFactory,
    RoutingGroupFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def catalogue() -> RoutingGroup:
    group = RoutingGroupFactory(
        slug="claude-default",
        name="Claude",
        description="Anthropic's models, reachable over every protocol.",
    )
    AIModelFactory(
        slug="claude-sonnet-4-5",
        display_name="Claude Sonnet 4.5",
        channel=ChannelFactory(slug="sandbox-test", name="Sandbox", kind="anthropic"),
        input_price=3_000_000,
        output_price=15_000_000,
        groups=[group],
    )
    return group


def test_create_copy_close_and_revoke_a_key_in_place(live_server, page, shot):
    catalogue()
    owner = UserFactory(email="owner@example.com", name="Olive Owner")
    MembershipFactory(account=AccountFactory(name="Keys Co"), user=owner, role=Role.OWNER)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)

    page.goto(f"{live_server.url}/")
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    expect(page.get_by_text("No API keys yet")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # survives only if no page load happens
    shot(page, "keys-01-empty")

    # The dialog; the only group is preselected. Without a name the errors come back in place.
    page.get_by_role("link", name="Create key").click()
    dialog = page.get_by_role("dialog", name="Create an API key")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()
    expect(dialog.get_by_role("radio", name="Claude")).to_be_checked()
    dialog.get_by_role("button", name="Create key").click()
    expect(dialog.get_by_text("This field is required.")).to_be_visible()
    expect(dialog.get_by_label("Name")).to_be_focused()

    dialog.get_by_label("Name").fill("Checkout service")
    dialog.get_by_text("Limits and restrictions").click()
    dialog.get_by_label("Quota (credits)").fill("50")
    dialog.get_by_label("IP allowlist").fill("10.0.0.0/8")
    shot(page, "keys-02-dialog")
    dialog.get_by_role("button", name="Create key").click()

    # The secret, once, with a copy button that really copies it.
    done = page.get_by_role("dialog", name="Key created")
    expect(done).to_be_visible()
    expect(done.get_by_text("shown again")).to_be_visible()
    secret_input = done.get_by_label("Secret key")
    expect(secret_input).to_have_value(re.compile(r"^sk-byts-[A-Za-z0-9]{32,}$"))
    secret = secret_input.input_value()
    done.get_by_role("button", name="Copy secret").click()
    expect(done.get_by_role("button", name="Copied secret")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "keys-03-secret-once")
    key = ApiKey.objects.get(name="Checkout service")
    assert key.digest == key_digest(secret) and key.quota == 50_000_000

    # Closing forgets the secret; the new row is already in the table.
    done.get_by_role("button", name="Done").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    # The dialog's "close" event (queued just after it closes) clears the secret from the page.
    page.wait_for_function(
        "secret => !document.documentElement.outerHTML.includes(secret)", arg=secret, timeout=5000
    )
    assert secret not in page.content()
    row = page.locator(f"#key-row-{key.public_id}")
    expect(row).to_be_visible()
    expect(row.get_by_role("link", name="Checkout service")).to_be_visible()
    expect(row).to_contain_text(key.masked)
    expect(row).to_contain_text("50.00")
    expect(row.locator("[data-status]")).to_have_text("Active")
    expect(page.get_by_text("No API keys yet")).to_be_hidden()
    expect(page.locator("#keys-count")).to_have_text("1")
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "keys-04-new-row")

    # Revoke from the row: confirm, and the row changes where it is.
    page.once("dialog", lambda confirm: confirm.accept())
    row.get_by_role("button", name="Revoke Checkout service").click()
    expect(row.locator("[data-status]")).to_have_text("Revoked")
    expect(row.get_by_role("button", name=re.compile("Revoke"))).to_have_count(0)
    expect(page.locator("#live-region")).to_have_text("Revoked Checkout service.")
    assert page.evaluate("window.__sameDocument") is True
    key.refresh_from_db()
    assert key.status == "revoked"
    shot(page, "keys-05-revoked-in-place")

    # A fresh load shows the key, never its secret.
    page.reload()
    expect(page.locator(f"#key-row-{key.public_id} [data-status]")).to_have_text("Revoked")
    assert page.evaluate("window.__sameDocument") is None
    assert secret not in page.content()
    page.get_by_role("link", name="Checkout service").click()
    expect(page.get_by_role("heading", name="Checkout service")).to_be_visible()
    assert secret not in page.content()
    shot(page, "keys-06-detail")
