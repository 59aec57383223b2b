"""Project pages and the project scoping of key pages: each page for the outsider (404), the
member of another project (404), the wrong role (403), and the roles that may."""

import json

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, Project, ProjectMembership, ProjectRole, Role
from accounts.services import project_default
from keys.models import ApiKey
from tests.factories import funded_catalogue, issue_key, project

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def groups(world):
    return funded_catalogue(world.account)


@pytest.fixture
def research(world):
    """A project the developer is not in (the default one holds the developer and viewer)."""
    return project(world.account, "Research")


def playground_chat(client, key):
    body = {
        "key": key.public_id,
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    return client.post(
        reverse("generation:playground-chat"), json.dumps(body), content_type="application/json"
    )


def url(name, *args):
    return reverse(f"keys:{name}", args=args)


# --- The list and a project's page -------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.FINANCE])
def test_account_wide_roles_see_every_project(world, client_for, research, role):
    text = client_for(world.member(role)).get(url("projects")).text
    assert "Research" in text and url("project-detail", research.public_id) in text
    assert "Default" in text
    page = client_for(world.member(role)).get(url("project-detail", research.public_id))
    assert page.status_code == 200


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_developers_and_viewers_see_only_their_projects(world, client_for, research, role):
    client = client_for(world.member(role))
    text = client.get(url("projects")).text
    assert "Research" not in text and "Default" in text
    assert client.get(url("project-detail", research.public_id)).status_code == 404


def test_a_project_page_is_a_404_for_an_outsider(world, client_for, research):
    client = client_for(world.outsider)
    assert client.get(url("project-detail", research.public_id)).status_code == 404
    for name in ("project-update", "project-delete", "project-member-add"):
        assert client.post(url(name, research.public_id), {"name": "x"}).status_code == 404, name


def test_a_project_page_lists_its_members_and_keys(world, client_for, research, groups):
    key, _ = issue_key(world.account, groups["default"], actor=world.owner, project=research)
    ProjectMembership.objects.create(project=research, membership=world.membership(world.viewer))
    text = client_for(world.viewer).get(url("project-detail", research.public_id)).text
    assert key.name in text and key.masked in text and "viewer@acme.test" in text
    # A viewer changes nothing.
    assert url("project-update", research.public_id) not in text
    assert url("project-member-add", research.public_id) not in text


# --- Create, rename, budgets, delete ---------------------------------------------------------


def test_an_admin_creates_a_project_with_a_monthly_budget(world, client_for):
    response = client_for(world.admin).post(
        url("project-create"), {"name": "Mobile", "monthly_budget": "25.5", "budget": ""}
    )
    created = Project.objects.get(account=world.account, name="Mobile")
    assert response.status_code == 302 and response.url == url("project-detail", created.public_id)
    assert created.monthly_budget == 25_500_000 and created.budget is None
    assert AuditEvent.objects.filter(action="project.create", target="Mobile").exists()


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER, Role.FINANCE])
def test_other_roles_cannot_create_projects(world, client_for, role):
    response = client_for(world.member(role)).post(url("project-create"), {"name": "Mine"})
    assert response.status_code == 403
    assert not Project.objects.filter(name="Mine").exists()


def test_a_duplicate_name_or_a_zero_budget_is_refused_in_the_form(world, client_for, research):
    client = client_for(world.owner)
    response = client.post(url("project-create"), {"name": "research"}, **HTMX)
    assert response.status_code == 422 and "already has a project named" in response.text
    response = client.post(url("project-create"), {"name": "New", "monthly_budget": "0"}, **HTMX)
    assert response.status_code == 422 and "A budget is more than 0 credits" in response.text
    assert not Project.objects.filter(name="New").exists()


def test_a_project_admin_renames_the_project_but_cannot_set_budgets(world, client_for, research):
    ProjectMembership.objects.create(
        project=research, membership=world.membership(world.developer), role=ProjectRole.ADMIN
    )
    client = client_for(world.developer)
    response = client.post(
        url("project-update", research.public_id),
        {"name": "Research 2", "monthly_budget": "99"},
        **HTMX,
    )
    assert response.status_code == 200 and "Saved." in response.text
    research.refresh_from_db()
    assert research.name == "Research 2" and research.monthly_budget is None
    # Deleting is the account admins'.
    assert client.post(url("project-delete", research.public_id)).status_code == 403


def test_a_project_member_cannot_rename_it(world, client_for):
    default = project_default(world.account)
    response = client_for(world.developer).post(
        url("project-update", default.public_id), {"name": "Mine"}
    )
    assert response.status_code == 403


def test_an_owner_sets_and_clears_budgets(world, client_for, research):
    client = client_for(world.owner)
    client.post(
        url("project-update", research.public_id),
        {"name": "Research", "monthly_budget": "10", "budget": "1,000"},
    )
    research.refresh_from_db()
    assert (research.monthly_budget, research.budget) == (10_000_000, 1_000_000_000)
    client.post(
        url("project-update", research.public_id),
        {"name": "Research", "monthly_budget": "", "budget": ""},
    )
    research.refresh_from_db()
    assert (research.monthly_budget, research.budget) == (None, None)


def test_a_project_with_a_key_in_use_is_not_deleted(world, client_for, research, groups):
    issue_key(world.account, groups["default"], actor=world.owner, project=research)
    response = client_for(world.owner).post(url("project-delete", research.public_id), **HTMX)
    assert response.status_code == 422 and "1 key in use" in response.text
    research.refresh_from_db()
    assert research.deleted_at is None


def test_an_empty_project_is_deleted_and_disappears(world, client_for, research):
    client = client_for(world.owner)
    response = client.post(url("project-delete", research.public_id))
    assert response.status_code == 302 and response.url == url("projects")
    assert url("project-detail", research.public_id) not in client.get(url("projects")).text
    assert client.get(url("project-detail", research.public_id)).status_code == 404


# --- Members ---------------------------------------------------------------------------------


def test_adding_a_developer_shows_them_the_project_and_its_keys(
    world, client_for, research, groups
):
    key, _ = issue_key(world.account, groups["default"], actor=world.owner, project=research)
    developer = world.membership(world.developer)
    response = client_for(world.owner).post(
        url("project-member-add", research.public_id),
        {"member": developer.public_id, "role": "member"},
        **HTMX,
    )
    assert response.status_code == 200 and "developer@acme.test" in response.text
    client = client_for(world.developer)
    assert client.get(url("project-detail", research.public_id)).status_code == 200
    assert key.name in client.get(url("keys")).text
    assert client.get(url("key-detail", key.public_id)).status_code == 200


def test_finance_cannot_be_added_to_a_project(world, client_for, research):
    response = client_for(world.owner).post(
        url("project-member-add", research.public_id),
        {"member": world.membership(world.finance).public_id, "role": "member"},
        **HTMX,
    )
    assert response.status_code == 422 and "already reaches every project" in response.text


def test_a_project_member_cannot_add_members(world, client_for):
    default = project_default(world.account)
    response = client_for(world.developer).post(
        url("project-member-add", default.public_id),
        {"member": world.membership(world.viewer).public_id, "role": "admin"},
    )
    assert response.status_code == 403


def test_a_removed_member_loses_the_projects_keys_at_once(world, client_for, research, groups):
    ProjectMembership.objects.create(project=research, membership=world.membership(world.developer))
    own, _ = issue_key(
        world.account, groups["default"], actor=world.developer, project=research, name="Lab key"
    )
    client = client_for(world.developer)
    assert own.name in client.get(url("keys")).text
    response = client_for(world.owner).post(
        url(
            "project-member-remove",
            research.public_id,
            world.membership(world.developer).public_id,
        ),
        **HTMX,
    )
    assert response.status_code == 200
    client = client_for(world.developer)
    assert own.name not in client.get(url("keys")).text
    assert client.get(url("key-detail", own.public_id)).status_code == 404
    assert client.post(url("key-roll", own.public_id)).status_code == 404
    assert playground_chat(client, own).status_code == 404
    picker = client.get(reverse("generation:playground")).text
    assert own.public_id not in picker


# --- Keys and projects -----------------------------------------------------------------------


def test_keys_list_filters_by_project(world, client_for, research, groups):
    issue_key(
        world.account, groups["default"], actor=world.owner, project=research, name="In research"
    )
    issue_key(world.account, groups["default"], actor=world.owner, name="Elsewhere")
    text = client_for(world.owner).get(url("keys"), {"project": research.public_id}).text
    assert "In research" in text and "Elsewhere" not in text


def test_a_key_is_created_in_the_chosen_project(world, client_for, research, groups):
    response = client_for(world.owner).post(
        url("key-create"),
        {"name": "R", "group": groups["default"].pk, "project": research.public_id},
        **HTMX,
    )
    assert response.status_code == 200
    assert ApiKey.objects.get(name="R").project == research


def test_a_developer_cannot_create_a_key_in_a_project_they_are_not_in(
    world, client_for, research, groups
):
    response = client_for(world.developer).post(
        url("key-create"),
        {"name": "R", "group": groups["default"].pk, "project": research.public_id},
        **HTMX,
    )
    assert response.status_code == 422 and "Choose one of your projects." in response.text
    assert not ApiKey.objects.filter(name="R").exists()


def test_a_key_without_a_project_goes_to_the_developers_only_project(world, client_for, groups):
    default = project_default(world.account)
    ProjectMembership.objects.filter(membership=world.membership(world.developer)).delete()
    mobile = project(world.account, "Mobile", world.developer)
    response = client_for(world.developer).post(
        url("key-create"), {"name": "M", "group": groups["default"].pk}, **HTMX
    )
    assert response.status_code == 200
    assert ApiKey.objects.get(name="M").project == mobile != default


def test_moving_a_key_on_its_page(world, client_for, research, groups):
    key, _ = issue_key(world.account, groups["default"], actor=world.owner, name="Mover")
    response = client_for(world.owner).post(
        url("key-update", key.public_id), {"name": "Mover", "project": research.public_id}
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.project == research
    event = AuditEvent.objects.get(action="api_key.update")
    assert event.details["fields"] == ["project"]


# --- Finance ---------------------------------------------------------------------------------


def test_finance_reads_keys_but_cannot_create_roll_or_use_them(world, client_for, groups):
    key, _ = issue_key(world.account, groups["default"], actor=world.owner)
    client = client_for(world.finance)
    listing = client.get(url("keys")).text
    assert key.name in listing and 'id="key-create-dialog"' not in listing
    assert client.get(url("key-detail", key.public_id)).status_code == 200
    assert (
        client.post(url("key-create"), {"name": "F", "group": groups["default"].pk}).status_code
        == 403
    )
    assert client.post(url("key-roll", key.public_id)).status_code == 403
    assert client.post(url("key-revoke", key.public_id)).status_code == 403
    assert playground_chat(client, key).status_code == 403
    assert not ApiKey.objects.filter(name="F").exists()


def test_finance_reads_usage_and_exports_it(world, client_for):
    client = client_for(world.finance)
    assert client.get(reverse("billing:usage")).status_code == 200
    export = client.get(reverse("billing:usage-export"))
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    assert client.get(reverse("billing:wallet")).status_code == 200


def test_the_team_page_offers_and_explains_the_finance_role(world, client_for):
    text = client_for(world.owner).get(reverse("accounts:team")).text
    assert '<option value="finance"' in text
    assert "Finance" in text and "no keys or playground" in text.lower()


def _call(client, secret):
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi"}]}
    response = client.post(
        "/v1/chat/completions",
        json.dumps(body),
        content_type="application/json",
        headers={"x-api-key": secret},
    )
    assert response.status_code == 200, response.content


def test_a_developer_sees_the_usage_of_their_projects_only_on_usage_and_dashboard(
    client, world, client_for, research, groups
):
    _, shared = issue_key(world.account, groups["default"], actor=world.owner, name="Shared one")
    _, hidden = issue_key(
        world.account, groups["default"], actor=world.owner, project=research, name="Lab only"
    )
    _call(client, shared)
    _call(client, hidden)
    by_key = {"group_by": "api_key"}
    developer = client_for(world.developer).get(reverse("billing:usage-export"), by_key)
    text = developer.content.decode()
    assert "Shared one" in text and "Lab only" not in text
    page = client_for(world.developer).get(reverse("billing:usage"), by_key).text
    assert "Shared one" in page and "Lab only" not in page
    # The dashboard's chart by key and recent requests too.
    dashboard = client_for(world.developer).get(reverse("console:dashboard")).text
    assert "Shared one" in dashboard and "Lab only" not in dashboard
    assert "Lab only" in client_for(world.owner).get(reverse("console:dashboard")).text
    for role in (Role.OWNER, Role.FINANCE):
        text = client_for(world.member(role)).get(reverse("billing:usage-export"), by_key)
        assert "Shared one" in text.content.decode() and "Lab only" in text.content.decode()


def test_a_developer_sees_only_the_tasks_of_their_projects_keys(
    world, client_for, research, groups, settings
):
    from catalogue.models import AIModel
    from generation import services

    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    lab, _ = issue_key(world.account, groups["gemini-default"], actor=world.owner, project=research)
    shared, _ = issue_key(world.account, groups["gemini-default"], actor=world.owner)
    model = AIModel.objects.get(slug="veo-3-fast")

    def submit(key):
        return services.task_submit(
            account_id=world.account.pk,
            api_key_id=key.pk,
            model=model,
            multiplier=key.group.rate_multiplier,
            params={"prompt": "A lighthouse"},
        ).task

    hidden, visible = submit(lab), submit(shared)
    client = client_for(world.developer)
    listing = client.get(reverse("generation:tasks")).text
    assert visible.public_id in listing and hidden.public_id not in listing
    for name in ("task-detail", "task-card", "task-row"):
        assert client.get(reverse(f"generation:{name}", args=[hidden.public_id])).status_code == 404
        assert client.get(reverse(f"generation:{name}", args=[visible.public_id])).status_code in (
            200,
            286,
        )
    cancel = client.post(reverse("generation:task-cancel", args=[hidden.public_id]))
    assert cancel.status_code == 404
    dashboard = client.get(reverse("console:dashboard")).text
    assert hidden.public_id not in dashboard
    owner = client_for(world.owner).get(reverse("generation:tasks")).text
    assert hidden.public_id in owner and visible.public_id in owner


def test_project_changes_read_as_words_in_the_audit_log(world, client_for):
    client_for(world.owner).post(url("project-create"), {"name": "Mobile"})
    text = client_for(world.owner).get(reverse("accounts:audit")).text
    assert "Created a project" in text and "Mobile" in text


def test_an_owner_makes_the_projects_budgets_soft(world, client_for, research):
    client = client_for(world.owner)
    client.post(url("project-update", research.public_id),
                {"name": "Research", "monthly_budget": "10"})  # the box unticked  # fmt: skip
    research.refresh_from_db()
    assert research.monthly_budget == 10_000_000 and not research.budget_hard
    assert "Soft" in client.get(url("projects")).text
    client.post(url("project-update", research.public_id),
                {"name": "Research", "monthly_budget": "10", "budget_hard": "on"})  # fmt: skip
    research.refresh_from_db()
    assert research.budget_hard
