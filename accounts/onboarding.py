"""What happens around sign-up: a new account, or joining through a pending invitation.

This is the one place that reads the session for onboarding, so the services stay free of
requests.
"""

from accounts import services
from accounts.models import Invitation, User
from accounts.selectors import SESSION_ACCOUNT_KEY

SESSION_INVITATION_KEY = "bytespike_invitation"


def remember_invitation(request, token: str, invitation: Invitation) -> None:
    """Keep the invitation across sign-up; the link proves the invitee reads that mailbox."""
    from allauth.account.adapter import get_adapter

    request.session[SESSION_INVITATION_KEY] = token
    get_adapter().stash_verified_email(request, invitation.email)


def onboard_new_user(request, user: User, *, name: str, account_name: str) -> None:
    """Join the invited account when sign-up came from an invitation, else create one."""
    if name.strip():
        user.name = name.strip()
        user.save(update_fields=["name"])
    token = request.session.pop(SESSION_INVITATION_KEY, None)
    if token:
        invitation = Invitation.objects.filter(token_digest=services.token_digest(token)).first()
        if invitation is not None and invitation.email.lower() == user.email.lower():
            try:
                membership = services.invitation_accept(invitation=invitation, user=user)
            except services.InvitationError:
                pass
            else:
                request.session[SESSION_ACCOUNT_KEY] = membership.account.public_id
                return
    account = services.account_create(
        owner=user, name=account_name or f"{user.name or user.email.split('@')[0]}'s account"
    )
    request.session[SESSION_ACCOUNT_KEY] = account.public_id
