"""/api/v1/budgets: the account's and its members' budgets, set, listed with their spend, and
removed; scoped to the management key's account; bad amounts refused in the API's envelope."""

from accounts.models import Membership
from billing.models import Budget
from tests.api.conftest import assert_error

M = 1_000_000


def test_set_and_list_the_accounts_budget(world, api):
    response = api.put("/api/v1/budgets/account", {"monthly": "500", "hard": True})
    assert response.status_code == 200, response.content
    (budget,) = response.json()["items"]
    assert budget["scope"] == "account" and budget["monthly"] == 500
    assert budget["lifetime"] is None and budget["hard"] is True
    assert budget["month_spent"] == 0 and len(budget["month"]) == 7
    assert Budget.objects.get(account=world.account).monthly == 500 * M
    listed = api.get("/api/v1/budgets").json()["items"]
    assert listed == [budget]


def test_a_members_budget_by_membership_id_and_its_removal(world, api):
    member = Membership.objects.get(account=world.account, user=world.developer)
    path = f"/api/v1/budgets/members/{member.public_id}"
    response = api.put(path, {"lifetime": 20.5, "hard": False})
    assert response.status_code == 200
    (budget,) = response.json()["items"]
    assert (
        budget["member_id"] == member.public_id and budget["member_email"] == world.developer.email
    )
    assert budget["lifetime"] == 20.5 and budget["hard"] is False
    assert api.delete(path).status_code == 204
    assert api.get("/api/v1/budgets").json()["items"] == []


def test_an_empty_budget_removes_it(world, api):
    api.put("/api/v1/budgets/account", {"monthly": 5})
    assert api.put("/api/v1/budgets/account", {}).json()["items"] == []


def test_zero_and_nonsense_amounts_are_refused(world, api):
    for amount in (0, -1, "lots", 0.0000001):
        response = api.put("/api/v1/budgets/account", {"monthly": amount})
        assert response.status_code in (400, 422), (amount, response.content)
        assert "error" in response.json()
    assert not Budget.objects.exists()


def test_another_accounts_member_is_a_404(world, api, outsider_api):
    theirs = Membership.objects.get(account=world.outsider_account)
    path = f"/api/v1/budgets/members/{theirs.public_id}"
    assert_error(api.put(path, {"monthly": 5}), 404, "not_found")
    api.put("/api/v1/budgets/account", {"monthly": 5})
    assert outsider_api.get("/api/v1/budgets").json()["items"] == []


def test_a_body_that_is_not_an_object_is_refused(world, api):
    for body in ("[]", '"x"', "null", '{"monthly": 5, "surprise": 1}'):
        response = api.put("/api/v1/budgets/account", body)
        assert response.status_code == 400, (body, response.content)
    assert not Budget.objects.exists()


def test_the_list_has_the_projects_budgets_too(world, api):
    from accounts.models import Project

    search = Project.objects.create(account=world.account, name="Search", monthly_budget=30 * M,
                                    budget_hard=False)  # fmt: skip
    (budget,) = api.get("/api/v1/budgets").json()["items"]
    assert budget["scope"] == "project" and budget["project_id"] == search.public_id
    assert budget["monthly"] == 30 and budget["hard"] is False and budget["member_id"] is None
    assert budget["month_spent"] == 0
