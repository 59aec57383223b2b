"""The API docs page in Chromium: Swagger UI renders every operation under the site's strict
Content Security Policy, and "Try it out" with a management key calls the API."""

import pytest
from playwright.sync_api import expect

from keys.services import management_key_issue
from tests.browser.conftest import browser, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_docs_render_and_try_it_out_works(live_server, page, world, shot):  # noqa: F811
    _, secret = management_key_issue(account=world.account, actor=world.admin, name="docs")
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{live_server.url}/api/v1/docs")

    expect(page.locator(".opblock")).to_have_count(36)
    expect(page.locator(".info .title")).to_contain_text("ByteSpike management API")

    page.locator("button.authorize").first.click()
    page.locator(".modal-ux input").fill(secret)
    page.locator(".modal-ux button.authorize").click()
    page.locator(".modal-ux button.close-modal").click()
    operation = page.locator("#operations-keys-keys_list")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    expect(status).to_have_text("200")
    expect(operation.locator(".live-responses-table .microlight").first).to_contain_text(
        '"page_size": 50'
    )
    shot(page, "api-docs")

    # Chromium reports every Content Security Policy violation as a console error.
    assert problems == []
