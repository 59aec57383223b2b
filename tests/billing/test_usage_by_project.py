"""Usage grouped by project and by member (the key's creator), in the API and on the usage page:
a key moved between projects leaves its past calls where they were (issue 16, item 4)."""

import json

import pytest

from accounts.services import project_default
from keys.services import api_key_update, management_key_issue
from tests.factories import funded_catalogue, issue_key, project

pytestmark = pytest.mark.django_db
CHAT = {"model": "gpt-4.1", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}


def chat(client, secret):
    response = client.post(
        "/v1/chat/completions", data=json.dumps(CHAT), content_type="application/json",
        headers={"x-api-key": secret},
    )  # fmt: skip
    assert response.status_code == 200


def test_usage_by_project_and_by_member(client, world, client_for,
                                        django_capture_on_commit_callbacks):  # fmt: skip
    groups = funded_catalogue(world.account)
    default = project_default(world.account)
    search = project(world.account, "Search", world.developer)
    mine, my_secret = issue_key(world.account, groups["default"], actor=world.developer)
    _, owner_secret = issue_key(world.account, groups["default"], actor=world.owner)
    chat(client, my_secret)  # in the default project
    with django_capture_on_commit_callbacks(execute=True):
        api_key_update(key=mine, actor=world.owner, project=search)
    chat(client, my_secret)  # in Search
    chat(client, owner_secret)
    _, secret = management_key_issue(account=world.account, actor=world.admin, name="CI")
    api = {"x-api-key": secret}

    by_project = client.get("/api/v1/usage", {"group_by": "project"}, headers=api).json()
    calls = {b["label"]: b["calls"] for b in by_project["buckets"]}
    assert calls == {default.name: 2, "Search": 1}
    by_member = client.get("/api/v1/usage", {"group_by": "member"}, headers=api).json()
    assert {b["bucket"]: b["calls"] for b in by_member["buckets"]} == {
        world.developer.email: 2, world.owner.email: 1,
    }  # fmt: skip
    only_search = client.get("/api/v1/usage", {"project_id": search.public_id}, headers=api)
    assert only_search.json()["totals"]["calls"] == 1

    page = client_for(world.owner).get("/usage/", {"group_by": "project", "preset": "today"})
    assert page.status_code == 200 and "Search" in page.text
    assert f"project_id={search.public_id}" in page.text  # the row drills down to the project
    csv_text = (
        client_for(world.owner)
        .get(
            "/usage/export.csv",
            {"group_by": "member", "project_id": search.public_id, "preset": "today"},
        )
        .text
    )
    assert "project: Search" in csv_text.splitlines()[0]
    assert world.developer.email in csv_text and world.owner.email not in csv_text.split("\n", 2)[2]


def test_a_view_by_a_dimension_stacks_its_spend_over_the_days_with_the_rest_as_other(
    client, world, client_for
):
    from core import charts

    groups = funded_catalogue(world.account)
    secrets = [issue_key(world.account, groups["default"], actor=world.owner)[1] for _ in range(9)]
    for secret in secrets:
        chat(client, secret)
    page = client_for(world.owner).get("/usage/", {"group_by": "api_key", "preset": "7d"})
    assert page.status_code == 200
    assert 'id="usage-over-time"' in page.text and "Daily spend by key" in page.text
    assert f"{9 - charts.TOP_SERIES} other keys" in page.text  # the biggest keep their own
    by_day = client_for(world.owner).get("/usage/", {"preset": "7d"})
    assert 'id="usage-over-time"' not in by_day.text  # a view by day is over time already


def test_usage_filtered_by_member_in_the_api_and_on_the_page(client, world, client_for):
    groups = funded_catalogue(world.account)
    _, my_secret = issue_key(world.account, groups["default"], actor=world.developer)
    _, owner_secret = issue_key(world.account, groups["default"], actor=world.owner)
    chat(client, my_secret)
    chat(client, my_secret)
    chat(client, owner_secret)
    _, secret = management_key_issue(account=world.account, actor=world.admin, name="CI")
    api = {"x-api-key": secret}

    mine = client.get("/api/v1/usage", {"member": world.developer.email.upper()}, headers=api)
    body = mine.json()
    assert body["totals"]["calls"] == 2 and body["filter"]["member"] == world.developer.email
    records = client.get("/api/v1/usage/records", {"member": world.owner.email}, headers=api)
    assert records.json()["total"] == 1
    unknown = client.get("/api/v1/usage", {"member": "nobody@example.com"}, headers=api)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "member"

    client = client_for(world.owner)
    by_member = client.get("/usage/", {"group_by": "member", "preset": "today"}).text
    assert f"member={world.developer.email.replace('@', '%40')}" in by_member  # drill-down
    page = client.get("/usage/", {"member": world.developer.email, "preset": "today"})
    assert page.status_code == 200 and f"Keys of {world.developer.email}" in page.text
    assert '<option value="' + world.developer.email + '" selected' in page.text
    csv_text = client.get("/usage/export.csv", {"member": world.developer.email}).text
    assert f"member: {world.developer.email}" in csv_text.splitlines()[0]


def test_the_page_says_how_projects_and_tags_count(world, client_for):
    client = client_for(world.owner)
    by_project = client.get("/usage/", {"group_by": "project"}).text
    assert 'id="usage-project-note"' in by_project and "moving a key moves" in by_project
    assert 'id="usage-project-note"' not in client.get("/usage/").text
    assert 'id="usage-tag-note"' in client.get("/usage/", {"group_by": "tag"}).text
