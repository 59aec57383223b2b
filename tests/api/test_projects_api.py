"""/api/v1/projects and their members, and keys' project_id: a management key acts as its
account; another account's project is a 404; rules broken are a 400 or 409 naming the field."""

import pytest

from accounts.models import AuditEvent, Project, ProjectMembership
from accounts.services import project_default
from keys.models import ApiKey
from tests.api.conftest import assert_error
from tests.factories import issue_key, project

pytestmark = pytest.mark.django_db

URL = "/api/v1/projects"


def test_lists_the_default_project_first(world, api):
    project(world.account, "Alpha")
    body = api.get(URL).json()
    assert [p["name"] for p in body["items"]] == ["Default", "Alpha"]
    assert body["total"] == 2 and body["page"] == 1
    default = body["items"][0]
    assert default["is_default"] and default["id"].startswith("proj_")
    # The developer and the viewer joined it.
    assert default["members"] == 2 and default["monthly_budget"] is None


def test_creates_a_project_with_budgets_in_credits(world, api):
    response = api.post(URL, {"name": "Mobile", "monthly_budget": "25.5", "budget": 1000})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Mobile" and body["monthly_budget"] == 25.5 and body["budget"] == 1000
    created = Project.objects.get(public_id=body["id"])
    assert (created.monthly_budget, created.budget) == (25_500_000, 1_000_000_000)
    event = AuditEvent.objects.get(action="project.create")
    assert event.actor_label.startswith("management key CI")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "  "}, "name"),
        ({"name": "P", "monthly_budget": 0}, "monthly_budget"),
        ({"name": "P", "budget": -5}, "budget"),
        ({"name": "P", "colour": "red"}, "colour"),
        ({}, "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, body, param):
    assert_error(api.post(URL, body), 400, "invalid_param", param)
    assert not Project.objects.filter(name="P").exists()


def test_a_taken_name_is_a_409(world, api):
    project(world.account, "Research")
    assert_error(api.post(URL, {"name": "RESEARCH"}), 409, "name_taken", "name")


def test_gets_updates_and_clears_a_budget(world, api):
    research = project(world.account, "Research", monthly_budget=5_000_000)
    path = f"{URL}/{research.public_id}"
    assert api.get(path).json()["monthly_budget"] == 5
    body = api.patch(path, {"name": "R&D", "monthly_budget": None, "budget": "7"}).json()
    assert body["name"] == "R&D" and body["monthly_budget"] is None and body["budget"] == 7


def test_another_accounts_project_is_a_404(world, outsider_api):
    research = project(world.account, "Research")
    path = f"{URL}/{research.public_id}"
    assert_error(outsider_api.get(path), 404, "not_found")
    assert_error(outsider_api.patch(path, {"name": "Mine"}), 404, "not_found")
    assert_error(outsider_api.delete(path), 404, "not_found")
    assert_error(outsider_api.get(f"{path}/members"), 404, "not_found")
    assert_error(outsider_api.post(f"{path}/members", {"email": "x@y.z"}), 404, "not_found")
    research.refresh_from_db()
    assert research.name == "Research" and research.deleted_at is None


def test_delete_is_refused_while_a_key_is_in_use(world, api, group):
    research = project(world.account, "Research")
    issue_key(world.account, group, actor=world.owner, project=research)
    error = assert_error(api.delete(f"{URL}/{research.public_id}"), 409, "project_has_keys")
    assert "Move them to another project or revoke them" in error["message"]
    assert_error(
        api.delete(f"{URL}/{project_default(world.account).public_id}"), 409, "project_is_default"
    )


def test_delete_hides_an_empty_project(world, api):
    research = project(world.account, "Research")
    assert api.delete(f"{URL}/{research.public_id}").status_code == 204
    assert_error(api.get(f"{URL}/{research.public_id}"), 404, "not_found")
    assert [p["name"] for p in api.get(URL).json()["items"]] == ["Default"]


def test_members_are_added_by_email_listed_and_removed(world, api):
    research = project(world.account, "Research")
    path = f"{URL}/{research.public_id}/members"
    added = api.post(path, {"email": "DEVELOPER@acme.test", "role": "admin"})
    assert added.status_code == 201, added.content
    member_id = added.json()["member_id"]
    assert added.json() == {
        "member_id": member_id,
        "email": "developer@acme.test",
        "account_role": "developer",
        "role": "admin",
        "added_at": added.json()["added_at"],
    }
    again = api.post(path, {"member_id": member_id, "role": "member"})
    assert again.status_code == 200 and again.json()["role"] == "member"
    assert [m["email"] for m in api.get(path).json()["items"]] == ["developer@acme.test"]
    assert api.delete(f"{path}/{member_id}").status_code == 204
    assert not ProjectMembership.objects.filter(project=research).exists()
    assert_error(api.delete(f"{path}/{member_id}"), 404, "not_found", "member_id")


def test_an_unknown_or_account_wide_member_is_refused(world, api):
    research = project(world.account, "Research")
    path = f"{URL}/{research.public_id}/members"
    assert_error(api.post(path, {"email": "outsider@other.test"}), 404, "not_found", "email")
    assert_error(api.post(path, {"email": "finance@acme.test"}), 400, "invalid_param", "member_id")
    assert_error(api.post(path, {"role": "member"}), 400, "invalid_param", "member_id")
    assert_error(
        api.post(path, {"email": "viewer@acme.test", "role": "boss"}), 400, "invalid_param", "role"
    )


# --- Keys and projects -------------------------------------------------------------------------


def test_a_key_is_created_in_a_project_and_listed_by_it(world, api, group):
    research = project(world.account, "Research")
    body = api.post(
        "/api/v1/keys", {"name": "r", "group_id": group.pk, "project_id": research.public_id}
    ).json()
    assert body["project_id"] == research.public_id
    default_key = api.post("/api/v1/keys", {"name": "d", "group_id": group.pk}).json()
    assert default_key["project_id"] == project_default(world.account).public_id
    listed = api.get("/api/v1/keys", {"project_id": research.public_id}).json()
    assert [k["name"] for k in listed["items"]] == ["r"] and listed["total"] == 1


def test_another_accounts_project_is_refused_for_a_key(world, api, group):
    theirs = project_default(world.outsider_account)
    response = api.post(
        "/api/v1/keys", {"name": "x", "group_id": group.pk, "project_id": theirs.public_id}
    )
    assert_error(response, 400, "invalid_param", "project_id")
    assert not ApiKey.objects.filter(name="x").exists()
    listed = api.get("/api/v1/keys", {"project_id": theirs.public_id})
    assert_error(listed, 400, "invalid_param", "project_id")


def test_moving_a_key_through_the_api(world, api, group):
    research = project(world.account, "Research")
    key, _ = issue_key(world.account, group, actor=world.owner)
    body = api.patch(f"/api/v1/keys/{key.public_id}", {"project_id": research.public_id}).json()
    assert body["project_id"] == research.public_id
    key.refresh_from_db()
    assert key.project == research
    assert_error(
        api.patch(f"/api/v1/keys/{key.public_id}", {"project_id": "proj_nope"}),
        400,
        "invalid_param",
        "project_id",
    )


def test_usage_by_project_keeps_calls_where_they_were_settled(
    world, api, client, django_capture_on_commit_callbacks
):
    import json

    from keys.services import api_key_update
    from tests.factories import funded_catalogue

    groups = funded_catalogue(world.account)
    research = project(world.account, "Research")
    key, secret = issue_key(world.account, groups["default"], actor=world.owner)

    def call():
        body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi"}]}
        response = client.post(
            "/v1/chat/completions",
            json.dumps(body),
            content_type="application/json",
            headers={"x-api-key": secret},
        )
        assert response.status_code == 200

    call()
    with django_capture_on_commit_callbacks(execute=True):
        api_key_update(key=key, project=research)
    call()
    call()

    def calls(project_id):
        report = api.get("/api/v1/usage", {"project_id": project_id})
        assert report.status_code == 200, report.content
        return report.json()["totals"]["calls"]

    assert calls(project_default(world.account).public_id) == 1
    assert calls(research.public_id) == 2
    records = api.get("/api/v1/usage/records", {"project_id": research.public_id}).json()
    assert records["total"] == 2 and len(records["items"]) == 2
    theirs = project_default(world.outsider_account).public_id
    assert_error(
        api.get("/api/v1/usage", {"project_id": theirs}), 400, "invalid_param", "project_id"
    )


def test_budgets_are_hard_unless_made_soft(world, api):
    body = api.post(URL, {"name": "Hard", "monthly_budget": 5}).json()
    assert body["budget_hard"] is True
    body = api.post(URL, {"name": "Soft", "monthly_budget": 5, "budget_hard": False}).json()
    assert body["budget_hard"] is False
    path = f"{URL}/{body['id']}"
    assert api.patch(path, {"name": "Soft 2"}).json()["budget_hard"] is False  # left as it is
    assert api.patch(path, {"budget_hard": True}).json()["budget_hard"] is True
    assert Project.objects.get(public_id=body["id"]).budget_hard
    assert_error(api.patch(path, {"budget_hard": "sometimes"}), 400, "invalid_param",
                 "budget_hard")  # fmt: skip
