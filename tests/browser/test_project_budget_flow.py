"""Issue 16's flow in Chromium: an admin creates a project with a monthly budget and puts a
developer in it; the developer's key in that project is refused once the budget is spent (402
budget_exceeded, through the real gateway); the admin sees the spend by member and exports it."""

import csv

import httpx
import pytest
from playwright.sync_api import expect

from accounts.models import Project, Role
from keys.services import api_key_update
from tests.factories import (
    PASSWORD,
    AccountFactory,
    MembershipFactory,
    UserFactory,
    funded_catalogue,
    issue_key,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHAT = {"model": "gpt-4.1", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}


def test_a_project_budget_stops_a_developers_key_and_the_admin_exports_spend_by_member(
    live_server, page, shot, settings
):
    settings.BYTESPIKE_PUBLIC_URL = live_server.url
    account = AccountFactory(name="Budget Co")
    admin = UserFactory(email="admin@budget.test", name="Ada Admin")
    developer = UserFactory(email="dev@budget.test", name="Dev Eloper")
    MembershipFactory(account=account, user=admin, role=Role.ADMIN)
    MembershipFactory(account=account, user=developer, role=Role.DEVELOPER)
    groups = funded_catalogue(account, 50)
    key, secret = issue_key(account, groups["default"], actor=developer, name="Search bot")

    page.goto(f"{live_server.url}/")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Projects").first.click()
    page.get_by_label("Name").fill("Search")
    page.get_by_label("Monthly budget (credits)").fill("0.01")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Search", level=1)).to_be_visible()
    page.get_by_label("Member", exact=True).select_option(label="Dev Eloper (Developer)")
    page.get_by_role("button", name="Add to project").click()
    expect(page.locator("#project-members")).to_contain_text(developer.email)
    shot(page, "project-budget-01-project")

    project = Project.objects.get(account=account, name="Search")
    assert project.monthly_budget == 10_000
    api_key_update(key=key, actor=admin, project=project)  # the developer's key goes in it

    statuses, refusal = [], None
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        for _ in range(200):
            response = client.post("/v1/chat/completions", json=CHAT,
                                   headers={"x-api-key": secret})  # fmt: skip
            statuses.append(response.status_code)
            if response.status_code != 200:
                refusal = response
                break
    assert refusal is not None and refusal.status_code == 402, statuses
    assert refusal.json()["error"]["code"] == "budget_exceeded"
    assert "project Search" in refusal.json()["error"]["message"]
    assert statuses.count(200) >= 1

    page.get_by_role("link", name="Usage").first.click()
    page.goto(f"{live_server.url}/usage/?preset=today&group_by=member")
    expect(page.locator("#usage-table")).to_contain_text(developer.email)
    shot(page, "project-budget-02-usage-by-member")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    with open(download_info.value.path(), newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0][0].startswith("# ByteSpike usage of Budget Co")
    members = {row[0]: row for row in rows[2:-1]}
    assert set(members) == {developer.email}
    assert members[developer.email][1] == str(statuses.count(200))  # calls
