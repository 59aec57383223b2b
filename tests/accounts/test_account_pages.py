"""Account switcher, creating accounts, account settings and leaving an account."""

import pytest
from django.urls import reverse

from accounts.models import Account, Membership, Role
from accounts.selectors import SESSION_ACCOUNT_KEY
from billing.models import Wallet
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_switcher_lists_every_account_of_the_user(world, client_for):
    MembershipFactory(account=world.outsider_account, user=world.developer, role=Role.VIEWER)
    page = client_for(world.developer).get(reverse("console:dashboard")).text
    assert "Acme" in page and "Other Co" in page


def test_switching_account_changes_what_the_console_shows(world, client_for):
    MembershipFactory(account=world.outsider_account, user=world.developer, role=Role.VIEWER)
    client = client_for(world.developer)
    assert "owner@acme.test" in client.get(reverse("accounts:team")).text
    response = client.post(
        reverse("accounts:switch"), {"account": world.outsider_account.public_id}
    )
    assert response.status_code == 302
    assert client.session[SESSION_ACCOUNT_KEY] == world.outsider_account.public_id
    team = client.get(reverse("accounts:team")).text
    assert "outsider@other.test" in team and "owner@acme.test" not in team
    # As a viewer there, the invitation form is gone and inviting is refused.
    assert "Invite a teammate" not in team
    assert client.post(reverse("accounts:invitation-create"), {}).status_code == 403


def test_switching_to_an_account_you_are_not_in_is_404(world, client_for):
    client = client_for(world.developer)
    response = client.post(
        reverse("accounts:switch"), {"account": world.outsider_account.public_id}
    )
    assert response.status_code == 404
    client.get(reverse("console:dashboard"))
    assert client.session[SESSION_ACCOUNT_KEY] == world.account.public_id


def test_a_stale_session_account_falls_back_to_a_real_membership(world, client_for):
    client = client_for(world.developer)
    session = client.session
    session[SESSION_ACCOUNT_KEY] = world.outsider_account.public_id
    session.save()
    page = client.get(reverse("accounts:team")).text
    assert "owner@acme.test" in page and "outsider@other.test" not in page


def test_user_without_accounts_is_asked_to_create_one(db, client_for):
    client = client_for(UserFactory())
    response = client.get(reverse("console:dashboard"))
    assert response.url == reverse("accounts:welcome")
    page = client.get(reverse("accounts:welcome"))
    assert "Create your account" in page.text
    assert client.post(reverse("accounts:welcome"), {"name": "  "}).status_code == 422
    response = client.post(reverse("accounts:welcome"), {"name": "Solo Studio"})
    assert response.status_code == 302
    account = Account.objects.get(name="Solo Studio")
    assert account.memberships.get().role == Role.OWNER
    assert Wallet.objects.get(account=account).balance == 0  # opened with the account
    assert client.get(reverse("console:dashboard")).status_code == 200


def test_a_member_can_create_another_account_and_lands_in_it(world, client_for):
    client = client_for(world.viewer)
    client.post(reverse("accounts:welcome"), {"name": "Side Project"})
    assert client.session[SESSION_ACCOUNT_KEY] == Account.objects.get(name="Side Project").public_id
    assert Membership.objects.filter(user=world.viewer).count() == 2


def test_owner_renames_the_account(world, client_for):
    client = client_for(world.owner)
    response = client.post(reverse("accounts:settings"), {"name": "Acme Corp"})
    assert response.status_code == 302
    world.account.refresh_from_db()
    assert world.account.name == "Acme Corp"


def test_rename_with_an_invalid_name_shows_the_error(world, client_for):
    response = client_for(world.owner).post(reverse("accounts:settings"), {"name": "x" * 101})
    assert response.status_code == 422
    assert "at most 100 characters" in response.text


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.VIEWER])
def test_only_owners_rename(world, client_for, role):
    client = client_for(world.member(role))
    page = client.get(reverse("accounts:settings"))
    assert page.status_code == 200 and "Only owners can rename" in page.text
    assert client.post(reverse("accounts:settings"), {"name": "Mine"}).status_code == 403
    world.account.refresh_from_db()
    assert world.account.name == "Acme"


def test_a_member_leaves(world, client_for):
    client = client_for(world.developer)
    response = client.post(reverse("accounts:leave"))
    assert response.status_code == 302
    assert not Membership.objects.filter(user=world.developer).exists()
    assert client.get(reverse("console:dashboard")).url == reverse("accounts:welcome")


def test_the_last_owner_cannot_leave(world, client_for):
    client = client_for(world.owner)
    response = client.post(reverse("accounts:leave"), follow=True)
    assert "at least one owner" in response.text
    assert world.membership(world.owner).role == Role.OWNER


CONSOLE_PAGES = [
    "console:dashboard",
    "keys:keys",
    "keys:groups",
    "billing:usage",
    "billing:wallet",
    "generation:playground",
    "generation:tasks",
    "accounts:team",
    "accounts:settings",
]


@pytest.mark.parametrize("url_name", CONSOLE_PAGES)
def test_console_pages_need_login(db, client, url_name):
    response = client.get(reverse(url_name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


@pytest.mark.parametrize("role", list(Role))
def test_every_role_reaches_every_section(world, client_for, role):
    client = client_for(world.member(role))
    for url_name in CONSOLE_PAGES:
        assert client.get(reverse(url_name)).status_code == 200, url_name
