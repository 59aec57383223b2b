"""Team page: members, roles, removal and invitations, for each role and for an outsider."""

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, Invitation, Membership, Role
from accounts.selectors import SESSION_ACCOUNT_KEY
from accounts.services import token_digest
from tests.conftest import run_enqueued

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def invite(client, email="new@acme.test", role=Role.DEVELOPER, **extra):
    return client.post(
        reverse("accounts:invitation-create"), {"email": email, "role": role}, **extra
    )


@pytest.mark.parametrize("role", list(Role))
def test_every_member_sees_the_team(world, client_for, role):
    response = client_for(world.member(role)).get(reverse("accounts:team"))
    assert response.status_code == 200
    for email in ("owner@acme.test", "viewer@acme.test"):
        assert email in response.text
    assert ("Invite a teammate" in response.text) == (role == Role.OWNER)


def test_outsider_sees_only_their_own_team(world, client_for):
    response = client_for(world.outsider).get(reverse("accounts:team"))
    assert "owner@acme.test" not in response.text
    assert "outsider@other.test" in response.text


def test_owner_invites_and_the_worker_sends_the_email_after_commit(
    world, client_for, enqueued, django_capture_on_commit_callbacks
):
    client = client_for(world.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(client, "New@Acme.test", Role.ADMIN, **HTMX)
    assert response.status_code == 200
    assert 'id="invitations"' in response.text and "new@acme.test" in response.text
    assert "<html" not in response.text  # the fragment only
    invitation = Invitation.objects.get(account=world.account)
    assert invitation.email == "new@acme.test" and invitation.status == "sending"
    assert [job.name for job in enqueued] == ["accounts.jobs.invitation_email_send"]
    enqueued_args = enqueued[0].args

    assert run_enqueued(enqueued) == [True]
    invitation.refresh_from_db()
    assert invitation.status == "sent"
    (message,) = mail.outbox
    assert message.to == ["new@acme.test"]
    assert "Acme" in message.subject
    assert "/invitations/" in message.body
    # The token travels in the email only; the job carried the invitation's id, and the
    # database keeps a digest and a ciphertext.
    token = message.body.split("/invitations/")[1].split("/")[0]
    assert invitation.token_digest == token_digest(token)
    assert token not in invitation.token_ciphertext
    assert all(token not in str(arg) for arg in enqueued_args)
    assert AuditEvent.objects.filter(account=world.account, action="invitation.create").exists()


def test_nothing_is_enqueued_when_the_invitation_is_refused(
    world, client_for, enqueued, django_capture_on_commit_callbacks
):
    client = client_for(world.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(client, "developer@acme.test", **HTMX)
    assert response.status_code == 422
    assert "already a member" in response.text
    assert enqueued == []


@pytest.mark.parametrize(
    ("email", "role", "message"),
    [
        ("not-an-email", Role.DEVELOPER, "Enter a valid email address"),
        ("x@acme.test", "superuser", "Select a valid choice"),
        ("", Role.DEVELOPER, "This field is required"),
    ],
)
def test_invalid_invitation_rerenders_the_form_with_errors(world, client_for, email, role, message):
    response = invite(client_for(world.owner), email, role)
    assert response.status_code == 422
    assert message in response.text
    assert not Invitation.objects.exists()


def test_a_second_open_invitation_to_the_same_address_is_refused(world, client_for):
    client = client_for(world.owner)
    invite(client, "twice@acme.test")
    response = invite(client, "TWICE@acme.test")
    assert response.status_code == 422
    assert "already has an open invitation" in response.text
    assert Invitation.objects.count() == 1


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.VIEWER])
def test_only_owners_invite(world, client_for, role):
    response = invite(client_for(world.member(role)))
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def _sent_token(enqueued) -> str:
    """Run the queued email job as a worker would; the link's token is read from the email."""
    (job,) = [job for job in enqueued if job.name.endswith("invitation_email_send")]
    enqueued.remove(job)
    run_enqueued([job])
    return mail.outbox[-1].body.split("/invitations/")[1].split("/")[0]


@pytest.fixture
def invitation_token(world, client_for, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invite(client_for(world.owner), "new@acme.test", Role.ADMIN)
    return _sent_token(enqueued)


def test_new_user_signs_up_through_the_invitation_and_joins(world, invitation_token):
    client = Client()
    page = client.get(reverse("accounts:invitation-accept", args=[invitation_token]))
    assert page.status_code == 200
    assert "Join Acme" in page.text
    response = client.post(
        reverse("account_signup"),
        {
            "email": "new@acme.test",
            "password1": "a-Strong-pass-42",
            "password2": "a-Strong-pass-42",
        },
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user__email="new@acme.test")
    assert membership.account == world.account and membership.role == Role.ADMIN
    # The invitation proved the address: no separate verification, and no second account.
    assert membership.user.emailaddress_set.get().verified
    assert Membership.objects.filter(user=membership.user).count() == 1
    assert client.session[SESSION_ACCOUNT_KEY] == world.account.public_id
    assert client.get(reverse("console:dashboard")).status_code == 200
    assert Invitation.objects.get().accepted_by == membership.user


def test_existing_user_accepts_while_logged_in(world, invitation_token, client_for):
    from tests.factories import UserFactory

    user = UserFactory(email="new@acme.test")
    client = client_for(user)
    url = reverse("accounts:invitation-accept", args=[invitation_token])
    assert "Accept and join" in client.get(url).text
    response = client.post(url)
    assert response.status_code == 302
    assert Membership.objects.get(user=user, account=world.account).role == Role.ADMIN
    assert client.session[SESSION_ACCOUNT_KEY] == world.account.public_id
    # The link works once.
    again = client.post(url)
    assert again.status_code == 400
    assert "already been accepted" in again.text


def test_someone_else_cannot_accept_with_the_link(world, invitation_token, client_for):
    url = reverse("accounts:invitation-accept", args=[invitation_token])
    response = client_for(world.outsider).post(url)
    assert response.status_code == 400
    assert "sent to new@acme.test" in response.text
    assert not Membership.objects.filter(user=world.outsider, account=world.account).exists()


def test_anonymous_accept_asks_to_log_in(world, invitation_token):
    url = reverse("accounts:invitation-accept", args=[invitation_token])
    response = Client().post(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


def test_unknown_invitation_link_is_404(db):
    assert Client().get(reverse("accounts:invitation-accept", args=["nope"])).status_code == 404


def test_withdrawn_invitation_cannot_be_accepted(world, invitation_token, client_for):
    invitation = Invitation.objects.get()
    client_for(world.owner).post(
        reverse("accounts:invitation-revoke", args=[invitation.public_id]), **HTMX
    )
    from tests.factories import UserFactory

    user = UserFactory(email="new@acme.test")
    response = client_for(user).post(reverse("accounts:invitation-accept", args=[invitation_token]))
    assert response.status_code == 400
    assert not Membership.objects.filter(user=user).exists()


def test_expired_invitation_cannot_be_accepted(world, invitation_token, client_for):
    from django.utils import timezone

    from tests.factories import UserFactory

    Invitation.objects.update(expires_at=timezone.now())
    user = UserFactory(email="new@acme.test")
    url = reverse("accounts:invitation-accept", args=[invitation_token])
    assert "has expired" in client_for(user).get(url).text
    assert client_for(user).post(url).status_code == 400


def test_resend_replaces_the_link_and_a_stale_send_sends_nothing(
    world, invitation_token, client_for, enqueued, django_capture_on_commit_callbacks
):
    invitation = Invitation.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world.owner).post(
            reverse("accounts:invitation-resend", args=[invitation.public_id]), **HTMX
        )
    assert "A new link was sent" in response.text
    (resend_job,) = enqueued
    new_token = _sent_token(enqueued)
    assert new_token != invitation_token
    assert (
        Client().get(reverse("accounts:invitation-accept", args=[invitation_token])).status_code
        == 404
    )
    # A send queued for the first link, running late, sends nothing.
    from accounts.jobs import invitation_email_send

    stale_digest = token_digest(invitation_token)
    assert invitation_email_send(invitation.pk, stale_digest, "http://testserver/") is False
    assert resend_job.args[1] != stale_digest
    assert len(mail.outbox) == 2


def test_invitation_actions_of_another_account_are_404(world, client_for, enqueued):
    invite(client_for(world.owner))
    invitation = Invitation.objects.get()
    client = client_for(world.outsider)
    for name in ("accounts:invitation-resend", "accounts:invitation-revoke"):
        assert client.post(reverse(name, args=[invitation.public_id])).status_code == 404
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


# --- Roles and removal -----------------------------------------------------------------------


def change_role(client, membership, role):
    return client.post(
        reverse("accounts:member-role", args=[membership.public_id]), {"role": role}, **HTMX
    )


def test_owner_changes_a_role_in_place(world, client_for):
    membership = world.membership(world.developer)
    response = change_role(client_for(world.owner), membership, Role.ADMIN)
    assert response.status_code == 200
    assert 'id="members"' in response.text and "is now Admin" in response.text
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    event = AuditEvent.objects.get(action="member.role_change")
    assert event.details == {"old": "developer", "new": "admin"}
    assert event.actor == world.owner and event.target == "developer@acme.test"


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.VIEWER])
def test_members_below_owner_cannot_change_roles_not_even_their_own(world, client_for, role):
    user = world.member(role)
    membership = world.membership(user)
    response = change_role(client_for(user), membership, Role.OWNER)
    assert response.status_code == 403
    membership.refresh_from_db()
    assert membership.role == role


def test_the_last_owner_cannot_be_demoted(world, client_for):
    membership = world.membership(world.owner)
    response = change_role(client_for(world.owner), membership, Role.ADMIN)
    assert "at least one owner" in response.text
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_an_owner_can_step_down_when_another_owner_remains(world, client_for):
    Membership.objects.filter(user=world.admin).update(role=Role.OWNER)
    membership = world.membership(world.owner)
    response = change_role(client_for(world.owner), membership, Role.DEVELOPER)
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == reverse("accounts:team")
    membership.refresh_from_db()
    assert membership.role == Role.DEVELOPER


def test_unknown_role_is_refused(world, client_for):
    membership = world.membership(world.developer)
    response = change_role(client_for(world.owner), membership, "root")
    assert "Choose one of the listed roles" in response.text
    membership.refresh_from_db()
    assert membership.role == Role.DEVELOPER


def test_owner_removes_a_member(world, client_for):
    membership = world.membership(world.viewer)
    response = client_for(world.owner).post(
        reverse("accounts:member-remove", args=[membership.public_id]), **HTMX
    )
    assert "viewer@acme.test was removed" in response.text
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(action="member.remove", target="viewer@acme.test").exists()


def test_members_of_another_account_are_404(world, client_for):
    foreign = Membership.objects.get(user=world.outsider)
    client = client_for(world.owner)
    assert change_role(client, foreign, Role.VIEWER).status_code == 404
    remove = reverse("accounts:member-remove", args=[foreign.public_id])
    assert client.post(remove).status_code == 404
    assert Membership.objects.filter(pk=foreign.pk).exists()


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.VIEWER])
def test_members_below_owner_cannot_remove_anyone(world, client_for, role):
    target = world.membership(world.owner)
    response = client_for(world.member(role)).post(
        reverse("accounts:member-remove", args=[target.public_id])
    )
    assert response.status_code == 403


def test_team_forms_enforce_csrf(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)
    membership = world.membership(world.developer)
    for url, data in [
        (reverse("accounts:invitation-create"), {"email": "x@acme.test", "role": "viewer"}),
        (reverse("accounts:member-role", args=[membership.public_id]), {"role": "owner"}),
        (reverse("accounts:member-remove", args=[membership.public_id]), {}),
        (reverse("accounts:leave"), {}),
        (reverse("accounts:settings"), {"name": "Hacked"}),
        (reverse("accounts:switch"), {"account": world.account.public_id}),
    ]:
        assert client.post(url, data).status_code == 403, url
    membership.refresh_from_db()
    assert membership.role == Role.DEVELOPER and not Invitation.objects.exists()
