"""An owner reveals the signing secret and redelivers a callback, in Chromium, in place."""

import shutil

import pytest
from playwright.sync_api import expect

from accounts.models import Account, Role
from core import crypto
from generation.callbacks.services import callback_deliver, callback_schedule
from generation.models import CallbackAttempt
from tests.browser import conftest as browser_fixtures
from tests.callbacks.conftest import Answer, finished_task, task_data
from tests.factories import PASSWORD, AccountFactory, MembershipFactory, UserFactory

CHROMIUM = browser_fixtures.CHROMIUM
# The browser tests' fixtures, for this folder too.
browser = browser_fixtures.browser
page = browser_fixtures.page
shot = browser_fixtures.shot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.callbacks.urls"),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


def test_reveal_the_secret_and_redeliver_in_place(
    live_server,
    page,
    shot,
    image_model,
    receiver,
):
    owner = UserFactory(email="owner@example.com", name="Olive Owner")
    account = AccountFactory(name="Hooks Co")
    MembershipFactory(account=account, user=owner, role=Role.OWNER)
    receiver.answer(Answer(status=500, body=b"<script>alert(1)</script>"))
    task = finished_task(account, image_model, receiver.url)
    delivery = callback_schedule(task, task_data(task))
    callback_deliver(delivery.pk)

    page.goto(f"{live_server.url}/")
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.goto(f"{live_server.url}/settings/")
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Signing secret")).to_be_visible()
    # The first callback needed a secret, so one was made; nobody has seen it: rotate to see one.
    hint = Account.objects.get(pk=account.pk).webhook_secret_hint
    expect(page.locator("#webhook-secret-hint")).to_have_text(hint)
    page.evaluate("window.__sameDocument = true")
    shot(page, "webhooks-01-page")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate secret").click()
    secret_box = page.get_by_role("textbox", name="New signing secret")
    expect(secret_box).to_be_visible()
    secret = crypto.decrypt(Account.objects.get(pk=account.pk).webhook_secret_ciphertext)
    expect(secret_box).to_have_value(secret)
    expect(page.get_by_text("Copy this secret now")).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "webhooks-02-secret-shown")

    page.get_by_role("link", name=task.public_id).click()
    expect(page.get_by_role("heading", name=f"Callback for {task.public_id}")).to_be_visible()
    # The receiver's answer is text on the page, not markup that ran.
    expect(page.get_by_text("<script>alert(1)</script>")).to_be_visible()
    page.evaluate("window.__sameDocument = true")

    page.get_by_role("button", name="Redeliver").click()
    expect(page.locator("#delivery").get_by_text("Redelivered.")).to_be_visible()
    expect(page.locator("#delivery [data-status='delivered']").first).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "webhooks-03-redelivered")
    assert CallbackAttempt.objects.filter(delivery=delivery).count() == 2
    assert len(receiver.requests) == 2
