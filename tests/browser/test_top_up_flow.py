"""An owner whose wallet runs low follows the banner's Top up, pays with the sandbox provider and
sees the credits land in the wallet and its ledger, with the runway recomputed: in Chromium,
through the real pages and the sandbox's signed webhook. Screenshots of the top-up page at 390
and 1440 px wide go to var/screenshots."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing.models import LedgerEntry, Payment, Wallet
from tests.billing.test_pages import bill
from tests.factories import PASSWORD, AIModelFactory, RoutingGroupFactory, fund, issue_key

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
M = 1_000_000


def test_an_owner_tops_up_with_the_sandbox_and_sees_the_credits_land(
    live_server, page, world, shot, settings
):
    settings.BYTESPIKE_PAYMENT_PROVIDER = "sandbox"
    group = RoutingGroupFactory(slug="default", name="Default")
    model = AIModelFactory(slug="gpt-4.1", display_name="GPT-4.1", groups=[group])
    fund(world.account, 16)
    key, _ = issue_key(world.account, group, name="Checkout")
    bill(key, model, 14 * M, at=timezone.now() - timedelta(days=3))  # 2 a day over the week
    Wallet.objects.filter(account=world.account).update(low_balance_threshold=5 * M)

    page.goto(f"{live_server.url}/")
    page.get_by_label("Email").fill(world.owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    banner = page.locator("#low-balance-banner")
    expect(banner).to_contain_text("Available balance is below your alert threshold.")
    banner.get_by_role("link", name="Top up").click()

    expect(page.get_by_role("heading", name="Top up", exact=True)).to_be_visible()
    expect(page.locator("#top-up-available")).to_contain_text("2.00")
    expect(page.locator("#top-up-runway")).to_have_text("About 1 day at the last 7 days' spend.")
    page.set_viewport_size({"width": 1440, "height": 900})
    shot(page, "top-up-1440")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "top-up-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_label("Amount (credits)").fill("4")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.locator("#id_amount_error")).to_have_text(
        "Top up between 5.00 and 10,000.00 credits."
    )
    page.get_by_label("Amount (credits)").fill("25")
    page.get_by_role("button", name="Continue to payment").click()

    expect(page.get_by_role("heading", name="Sandbox checkout")).to_be_visible()
    page.get_by_role("button", name="Pay 25.00").click()

    status = page.locator("#payment-status")
    expect(status).to_contain_text("Paid. 25.00 credits were added to the wallet")
    expect(page.locator("#payment-available")).to_have_text("27.00")
    expect(page.locator("#low-balance-banner")).not_to_contain_text("below your alert")
    shot(page, "top-up-paid")
    status.get_by_role("link", name="See it in the wallet").click()

    expect(page.locator("#wallet-available")).to_contain_text("27.00")
    expect(page.locator("#wallet-runway")).to_have_text("About 13 days at the last 7 days' spend.")
    payment = Payment.objects.get()
    row = page.locator("#ledger tbody tr").filter(has_text=payment.provider_payment_id)
    expect(row).to_contain_text("Top-up")
    expect(row).to_contain_text(re.compile(r"\+25\.0000\s+27\.0000"))
    assert (
        LedgerEntry.objects.filter(kind="topup", reference=payment.provider_payment_id).count() == 1
    )
    assert payment.status == "paid"
