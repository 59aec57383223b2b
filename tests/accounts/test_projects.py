"""Projects: the default one, keys that belong to one project, members with a role in it, and
usage that stays with the project its key was in when the call was settled."""

import json

import pytest

from accounts.models import Project, ProjectMembership, ProjectRole, Role
from accounts.permissions import MANAGE_ALL_KEYS, USE_PLAYGROUND, VIEW, can_manage_key
from accounts.services import (
    ProjectError,
    account_create,
    invitation_accept,
    invitation_create,
    project_create,
    project_default,
    project_delete,
    project_member_remove,
    project_member_set,
    project_update,
)
from billing.models import UsageRecord, UsageRollup
from keys.selectors import api_keys_visible_to
from keys.services import KeyRuleError, api_key_issue, api_key_revoke, api_key_update
from tests.factories import UserFactory, funded_catalogue, issue_key, project

pytestmark = pytest.mark.django_db


def test_a_new_account_has_a_default_project():
    user = UserFactory()
    account = account_create(owner=user, name="Fresh")
    (only,) = Project.objects.filter(account=account)
    assert only.is_default and only.name == "Default" and only.public_id.startswith("proj_")
    assert project_default(account) == only


def test_a_key_goes_to_the_default_project_unless_given_one(world):
    groups = funded_catalogue(world.account)
    key, _ = issue_key(world.account, groups["default"], actor=world.owner)
    assert key.project == project_default(world.account)
    research = project(world.account, "Research")
    key, _ = issue_key(world.account, groups["default"], actor=world.owner, project=research)
    assert key.project == research


def test_a_key_cannot_go_to_another_accounts_project(world):
    groups = funded_catalogue(world.account)
    theirs = project_default(world.outsider_account)
    with pytest.raises(KeyRuleError) as refused:
        api_key_issue(account=world.account, group=groups["default"], name="k", project=theirs)
    assert refused.value.field == "project_id"


def test_project_names_are_unique_per_account_ignoring_case(world):
    project(world.account, "Research")
    with pytest.raises(ProjectError) as refused:
        project_create(account=world.account, name="research")
    assert refused.value.status == 409 and "already has a project" in str(refused.value)
    # Another account may use the name.
    assert project_create(account=world.outsider_account, name="Research")


@pytest.mark.parametrize("field", ["monthly_budget", "budget"])
def test_a_budget_is_none_or_positive(world, field):
    with pytest.raises(ProjectError) as refused:
        project_create(account=world.account, name="P", **{field: 0})
    assert refused.value.field == field and "pause its keys" in str(refused.value)
    created = project_create(account=world.account, name="P", **{field: 5_000_000})
    assert getattr(created, field) == 5_000_000
    project_update(project=created, **{field: None})
    created.refresh_from_db()
    assert getattr(created, field) is None


def test_the_default_project_cannot_be_deleted(world):
    with pytest.raises(ProjectError) as refused:
        project_delete(project=project_default(world.account))
    assert refused.value.status == 409


def test_a_project_with_keys_in_use_cannot_be_deleted_until_they_are_revoked(world):
    groups = funded_catalogue(world.account)
    research = project(world.account, "Research", world.developer)
    key, _ = issue_key(world.account, groups["default"], actor=world.owner, project=research)
    with pytest.raises(ProjectError) as refused:
        project_delete(project=research)
    assert "1 key in use" in str(refused.value)
    api_key_revoke(key=key)
    project_delete(project=research)
    research.refresh_from_db()
    assert research.deleted_at is not None
    assert not ProjectMembership.objects.filter(project=research).exists()
    # Its name is free again.
    assert project_create(account=world.account, name="Research")


def test_developers_and_viewers_start_in_the_default_project(world):
    default = project_default(world.account)
    for user in (world.developer, world.viewer):
        assert world.membership(user).project_role(default.pk) == ProjectRole.MEMBER
    # Owners, admins and finance reach every project without joining any.
    for user in (world.owner, world.admin, world.finance):
        assert not ProjectMembership.objects.filter(membership=world.membership(user)).exists()


def test_an_invited_developer_joins_the_default_project(world):
    newcomer = UserFactory(email="new@acme.test")
    invitation = invitation_create(
        account=world.account,
        actor=world.owner,
        email=newcomer.email,
        role=Role.DEVELOPER,
        base_url="http://testserver",
    )
    membership = invitation_accept(invitation=invitation, user=newcomer)
    assert membership.project_role(project_default(world.account).pk) == ProjectRole.MEMBER


def test_an_account_wide_role_is_not_added_to_a_project(world):
    research = project(world.account, "Research")
    with pytest.raises(ProjectError) as refused:
        project_member_set(
            project=research, membership=world.membership(world.finance), role="member"
        )
    assert "already reaches every project" in str(refused.value)


def test_a_developer_sees_and_manages_only_keys_of_their_projects(world):
    groups = funded_catalogue(world.account)
    research = project(world.account, "Research")
    hidden, _ = issue_key(world.account, groups["default"], actor=world.owner, project=research)
    shared, _ = issue_key(world.account, groups["default"], actor=world.owner)
    own, _ = issue_key(world.account, groups["default"], actor=world.developer)
    developer = world.membership(world.developer)
    assert set(api_keys_visible_to(developer)) == {shared, own}
    assert can_manage_key(developer, own) and not can_manage_key(developer, shared)
    assert not developer.can(VIEW, project=research)
    # Owners, admins and finance see every key.
    for user in (world.owner, world.admin, world.finance):
        assert set(api_keys_visible_to(world.membership(user))) == {hidden, shared, own}


def test_a_project_admin_manages_every_key_of_that_project_only(world):
    groups = funded_catalogue(world.account)
    research = project(world.account, "Research", world.developer, role=ProjectRole.ADMIN)
    theirs, _ = issue_key(world.account, groups["default"], actor=world.owner, project=research)
    elsewhere, _ = issue_key(world.account, groups["default"], actor=world.owner)
    developer = world.membership(world.developer)
    assert developer.can(MANAGE_ALL_KEYS, project=research)
    assert not developer.can(MANAGE_ALL_KEYS)
    assert can_manage_key(developer, theirs) and not can_manage_key(developer, elsewhere)


def test_a_viewer_who_is_project_admin_still_cannot_touch_keys(world):
    research = project(world.account, "Research", world.viewer, role=ProjectRole.ADMIN)
    viewer = world.membership(world.viewer)
    assert viewer.can(VIEW, project=research)
    assert not viewer.can(MANAGE_ALL_KEYS, project=research)
    assert not viewer.can(USE_PLAYGROUND, project=research)


def test_a_member_removed_from_a_project_loses_its_keys_at_once(world):
    groups = funded_catalogue(world.account)
    research = project(world.account, "Research", world.developer)
    own, _ = issue_key(world.account, groups["default"], actor=world.developer, project=research)
    assert can_manage_key(world.membership(world.developer), own)
    project_member_remove(project=research, membership=world.membership(world.developer))
    developer = world.membership(world.developer)  # the next request's
    assert not can_manage_key(developer, own)
    assert own not in api_keys_visible_to(developer)


def _chat(client, secret):
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi"}]}
    response = client.post(
        "/v1/chat/completions",
        data=json.dumps(body),
        content_type="application/json",
        headers={"x-api-key": secret},
    )
    assert response.status_code == 200, response.content
    return response.headers["X-Request-ID"]


def test_moving_a_key_moves_its_future_spend_only(
    client, world, django_capture_on_commit_callbacks
):
    groups = funded_catalogue(world.account)
    default = project_default(world.account)
    research = project(world.account, "Research")
    key, secret = issue_key(world.account, groups["default"], actor=world.owner)
    before = _chat(client, secret)

    # Once the move commits, every process forgets the key, and its next call sees the move.
    with django_capture_on_commit_callbacks(execute=True):
        api_key_update(key=key, actor=world.owner, project=research)
    after = _chat(client, secret)

    assert UsageRecord.objects.get(request_id=before).project == default
    assert UsageRecord.objects.get(request_id=after).project == research
    by_project = {row.project_id: row.calls for row in UsageRollup.objects.filter(api_key=key)}
    assert by_project == {default.pk: 1, research.pk: 1}


def test_an_admin_demoted_to_developer_joins_the_default_project(world):
    from accounts.services import membership_change_role

    admin = world.membership(world.admin)
    membership_change_role(actor=world.owner, membership=admin, role=Role.DEVELOPER)
    fresh = world.membership(world.admin)
    assert fresh.project_role(project_default(world.account).pk) == ProjectRole.MEMBER
