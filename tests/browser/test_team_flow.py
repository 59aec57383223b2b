"""A founder signs up, logs in, invites a teammate who accepts, and the teammate switches
between accounts: in Chromium, through the real pages."""

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from accounts.models import Membership, Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "Founder-pass-2468"


def link_from(message) -> str:
    return re.search(r"https?://\S+", message.body.split("\n\n", 1)[1])[0]


def test_sign_up_invite_accept_and_switch(live_server, page, browser, celery_worker, shot):
    # Sign up; verification is mandatory, the link arrives by email.
    page.goto(f"{live_server.url}/auth/signup/")
    page.get_by_label("Email").fill("founder@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_label("Your name").fill("Fran Founder")
    page.get_by_label("Account name").fill("Founder Co")
    shot(page, "team-01-signup")
    page.get_by_role("button", name="Sign Up").click()
    expect(page.get_by_role("heading", name="Verify Your Email Address")).to_be_visible()
    confirm_link = re.search(r"https?://\S+/confirm-email/\S+/", mail.outbox[-1].body)[0]
    page.goto(confirm_link)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    # Sign out, then sign in through the form.
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{live_server.url}/")
    page.get_by_label("Email").fill("founder@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator(".switcher-name")).to_have_text("Founder Co")
    shot(page, "team-02-dashboard")

    # Invite a teammate; the row appears in place and the worker sends the email.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Team").click()
    page.get_by_label("Email address").fill("mate@example.com")
    page.get_by_label("Role", exact=True).select_option("developer")
    page.get_by_role("button", name="Send invitation").click()
    row = page.locator("#invitations tbody tr", has_text="mate@example.com")
    expect(row).to_be_visible()
    expect(page.get_by_text("Invitation sent to mate@example.com.")).to_be_visible()
    status = page.locator("#invitations [data-status]")
    for _ in range(50):  # the worker sends it within moments; reloading shows the new status
        if status.inner_text() == "Sent":
            break
        page.wait_for_timeout(200)
        page.reload()
    expect(status).to_have_text("Sent")
    invitation_mail = next(m for m in mail.outbox if m.to == ["mate@example.com"])
    shot(page, "team-03-invited")

    # The teammate opens the link in their own browser and creates a login.
    mate = browser.new_context().new_page()
    mate.goto(link_from(invitation_mail))
    expect(mate.get_by_role("heading", name="Join Founder Co")).to_be_visible()
    shot(mate, "team-04-invitation")
    mate.get_by_role("link", name="Create a login for mate@example.com").click()
    expect(mate.get_by_label("Email")).to_have_value("mate@example.com")
    mate.get_by_label("Password", exact=True).fill("Mate-pass-13579")
    mate.get_by_label("Password (again)").fill("Mate-pass-13579")
    mate.get_by_role("button", name="Sign Up").click()
    expect(mate.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(mate.locator(".switcher-name")).to_have_text("Founder Co")
    expect(mate.locator(".switcher-role")).to_have_text("Developer")
    membership = Membership.objects.get(user__email="mate@example.com")
    assert membership.role == Role.DEVELOPER and membership.account.name == "Founder Co"

    # The teammate creates an account of their own, then switches back.
    mate.locator(".switcher summary").click()
    mate.get_by_role("link", name="New account").click()
    mate.get_by_label("Account name").fill("Mate Labs")
    mate.get_by_role("button", name="Create account").click()
    expect(mate.locator(".switcher-name")).to_have_text("Mate Labs")
    mate.locator(".switcher summary").click()
    shot(mate, "team-05-switcher")
    mate.get_by_role("button", name=re.compile("Founder Co")).click()
    expect(mate.locator(".switcher-name")).to_have_text("Founder Co")
    expect(mate.get_by_text("Switched to Founder Co.")).to_be_visible()
    mate.get_by_role("navigation", name="Sections").get_by_role("link", name="Team").click()
    expect(mate.get_by_text("founder@example.com")).to_be_visible()
    expect(mate.get_by_text("Invite a teammate")).to_have_count(0)
    shot(mate, "team-06-team-as-developer")
