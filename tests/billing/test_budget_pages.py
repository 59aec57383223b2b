"""The Budgets page: everyone reads the account's and members' budgets with their spend; owners
set them, with errors in the form's words; another account's member is a 404."""

import pytest

from accounts.models import Membership
from billing.models import Budget

pytestmark = pytest.mark.django_db
M = 1_000_000


def test_owners_set_the_accounts_and_a_members_budget(client_for, world):
    client = client_for(world.owner)
    response = client.post("/wallet/budgets/account/",
                           {"account-monthly": "500", "account-hard": "on"})  # fmt: skip
    assert response.status_code == 200
    assert "Saved the budget of the account." in response.text
    assert Budget.objects.get(scope="account").monthly == 500 * M
    member = Membership.objects.get(account=world.account, user=world.developer)
    response = client.post(f"/wallet/budgets/{member.public_id}/",
                           {f"{member.public_id}-lifetime": "20"})  # fmt: skip
    budget = Budget.objects.get(scope="member")
    assert budget.member == world.developer and budget.lifetime == 20 * M and not budget.hard
    page = client.get("/wallet/budgets/").text
    assert "20.00 ever" in page and world.developer.email in page


def test_zero_is_refused_in_the_forms_words_and_nothing_is_saved(client_for, world):
    response = client_for(world.owner).post("/wallet/budgets/account/", {"account-monthly": "0"})
    assert response.status_code == 422
    assert "Leave it empty for no budget." in response.text
    assert not Budget.objects.exists()


def test_empty_amounts_remove_the_budget(client_for, world):
    client = client_for(world.owner)
    client.post("/wallet/budgets/account/", {"account-monthly": "5"})
    response = client.post("/wallet/budgets/account/", {"account-monthly": ""})
    assert "Removed the budget of the account." in response.text
    assert not Budget.objects.exists()


@pytest.mark.parametrize("role", ["admin", "developer", "viewer"])
def test_other_roles_read_but_cannot_set(client_for, world, role):
    client = client_for(getattr(world, role))
    assert client.get("/wallet/budgets/").status_code == 200
    assert "Save budget" not in client.get("/wallet/budgets/").text
    assert client.post("/wallet/budgets/account/", {"account-monthly": "5"}).status_code == 403


def test_another_accounts_member_is_a_404(client_for, world):
    theirs = Membership.objects.get(account=world.outsider_account)
    response = client_for(world.owner).post(f"/wallet/budgets/{theirs.public_id}/",
                                            {f"{theirs.public_id}-monthly": "5"})  # fmt: skip
    assert response.status_code == 404
    assert not Budget.objects.exists()


def test_the_page_lists_project_budgets_a_member_may_see(client_for, world):
    from accounts.models import Project, ProjectMembership, ProjectRole

    search = Project.objects.create(account=world.account, name="Search", monthly_budget=30 * M)
    Project.objects.create(account=world.account, name="Ads", budget=7 * M, budget_hard=False)
    Project.objects.create(account=world.account, name="Unbudgeted")
    page = client_for(world.finance).get("/wallet/budgets/").text
    assert "Search" in page and "30.00 a month" in page
    assert "Ads" in page and "7.00 ever" in page and "Soft" in page
    assert "Unbudgeted" not in page
    ProjectMembership.objects.create(project=search, membership=world.membership(world.developer),
                                     role=ProjectRole.MEMBER)  # fmt: skip
    page = client_for(world.developer).get("/wallet/budgets/").text
    assert "30.00 a month" in page and "Ads" not in page  # only the projects they are in
