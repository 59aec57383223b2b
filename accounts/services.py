"""Every write to accounts, memberships, invitations and the audit trail."""

import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urljoin

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account, AuditEvent, Invitation, Membership, Role, User
from accounts.signals import account_created
from core import crypto
from core.mail import send_text_mail


class TeamError(Exception):
    """A change to a team that the rules forbid; the message is shown to the user."""


class LastOwnerError(TeamError):
    def __init__(self):
        super().__init__("An account needs at least one owner. Make someone else owner first.")


class InvitationError(TeamError):
    pass


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- Audit -----------------------------------------------------------------------------------


def audit_record(
    *,
    account: Account | None,
    actor: User | None,
    action: str,
    target: str = "",
    actor_label: str = "",
    **details,
) -> AuditEvent:
    return AuditEvent.objects.create(
        account=account,
        actor=actor,
        actor_label=actor_label or (actor.email if actor else "system"),
        action=action,
        target=target,
        details=details,
    )


# --- Accounts --------------------------------------------------------------------------------


def account_create(*, owner: User, name: str) -> Account:
    """A new account with ``owner`` as its first owner."""
    with transaction.atomic():
        account = Account.objects.create(name=name.strip() or "My account")
        Membership.objects.create(account=account, user=owner, role=Role.OWNER)
        account_created.send(sender=Account, account=account)
        audit_record(account=account, actor=owner, action="account.create", target=account.name)
    return account


def account_rename(*, account: Account, actor: User, name: str) -> Account:
    old = account.name
    account.name = name.strip()
    with transaction.atomic():
        account.save(update_fields=["name"])
        audit_record(
            account=account, actor=actor, action="account.rename", target=account.name, old=old
        )
    return account


def account_set_time_zone(*, account: Account, actor: User, time_zone: str) -> Account:
    """Reports of the account read days, "today" and months in ``time_zone`` (an IANA name
    the form has checked)."""
    old = account.time_zone
    account.time_zone = time_zone
    with transaction.atomic():
        account.save(update_fields=["time_zone"])
        audit_record(
            account=account, actor=actor, action="account.time_zone", target=time_zone, old=old
        )
    return account


# --- Memberships -----------------------------------------------------------------------------


def _lock_owners(account: Account) -> list[Membership]:
    """Lock the account's owner rows so two owners can't demote each other at once."""
    return list(Membership.objects.select_for_update().filter(account=account, role=Role.OWNER))


def membership_change_role(*, actor: User, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise TeamError("Choose one of the listed roles.")
    with transaction.atomic():
        owners = _lock_owners(membership.account)
        membership.refresh_from_db()
        if membership.role == role:
            return membership
        if membership.role == Role.OWNER and len(owners) <= 1:
            raise LastOwnerError()
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            account=membership.account,
            actor=actor,
            action="member.role_change",
            target=membership.user.email,
            old=old,
            new=role,
        )
    return membership


def membership_remove(*, actor: User, membership: Membership) -> None:
    """Remove a member (or let one leave, when ``actor`` is the member)."""
    with transaction.atomic():
        owners = _lock_owners(membership.account)
        membership.refresh_from_db()
        if membership.role == Role.OWNER and len(owners) <= 1:
            raise LastOwnerError()
        membership.delete()
        leaving = actor.pk == membership.user_id
        audit_record(
            account=membership.account,
            actor=actor,
            action="member.leave" if leaving else "member.remove",
            target=membership.user.email,
            role=membership.role,
        )


# --- Invitations -----------------------------------------------------------------------------


def _invitation_issue_token(invitation: Invitation) -> None:
    """A new link token: its digest finds the invitation, its ciphertext lets a worker email it."""
    token = secrets.token_urlsafe(32)
    invitation.token_digest = token_digest(token)
    invitation.token_ciphertext = crypto.encrypt(token)
    invitation.expires_at = timezone.now() + timedelta(days=settings.BYTESPIKE_INVITATION_DAYS)
    invitation.sent_at = None


def _invitation_enqueue(invitation: Invitation, base_url: str) -> None:
    from accounts.jobs import invitation_email_send

    # The digest names this version of the link, so a send queued before a resend sends nothing.
    invitation_email_send.delay_on_commit(invitation.pk, invitation.token_digest, base_url)


def invitation_create(
    *, account: Account, actor: User, email: str, role: str, base_url: str
) -> Invitation:
    """Invite ``email`` with ``role``; the email goes out from a worker once this commits."""
    email = email.strip().lower()
    if role not in Role.values:
        raise InvitationError("Choose one of the listed roles.")
    if Membership.objects.filter(account=account, user__email__iexact=email).exists():
        raise InvitationError(f"{email} is already a member of this account.")
    invitation = Invitation.objects.filter(
        account=account, email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).first()
    if invitation is not None and invitation.is_open:
        raise InvitationError(f"{email} already has an open invitation. Resend it instead.")
    if invitation is None:
        invitation = Invitation(account=account, email=email)
    # An expired invitation to the same address is renewed with the new role.
    invitation.role = role
    invitation.invited_by = actor
    invitation.created_at = timezone.now()
    _invitation_issue_token(invitation)
    try:
        with transaction.atomic():
            invitation.save()
            audit_record(
                account=account, actor=actor, action="invitation.create", target=email, role=role
            )
            _invitation_enqueue(invitation, base_url)
    except IntegrityError:  # a concurrent invitation to the same address won
        raise InvitationError(f"{email} already has an open invitation.") from None
    return invitation


def invitation_resend(*, invitation: Invitation, actor: User, base_url: str) -> Invitation:
    """A fresh link and expiry; the previous link stops working."""
    if invitation.accepted_at or invitation.revoked_at:
        raise InvitationError("This invitation is closed; send a new one.")
    _invitation_issue_token(invitation)
    with transaction.atomic():
        invitation.save(update_fields=["token_digest", "token_ciphertext", "expires_at", "sent_at"])
        audit_record(
            account=invitation.account,
            actor=actor,
            action="invitation.resend",
            target=invitation.email,
        )
        _invitation_enqueue(invitation, base_url)
    return invitation


def invitation_revoke(*, invitation: Invitation, actor: User) -> None:
    with transaction.atomic():
        updated = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now(), token_ciphertext="")
        if updated:
            audit_record(
                account=invitation.account,
                actor=actor,
                action="invitation.revoke",
                target=invitation.email,
            )


def invitation_email_deliver(*, invitation_id: int, digest: str, base_url: str) -> bool:
    """Send the invitation email if the invitation is still open with this version of its link.

    Returns False when there is nothing to send (revoked, accepted, or resent with a newer
    token), so a late or duplicate worker run sends nothing stale.
    """
    invitation = (
        Invitation.objects.select_related("account", "invited_by")
        .filter(pk=invitation_id, token_digest=digest)
        .first()
    )
    if invitation is None or not invitation.is_open or not invitation.token_ciphertext:
        return False
    token = crypto.decrypt(invitation.token_ciphertext)
    context = {
        "invitation": invitation,
        "accept_url": urljoin(base_url, reverse("accounts:invitation-accept", args=[token])),
    }
    send_text_mail(
        subject=render_to_string("accounts/email/invitation_subject.txt", context).strip(),
        message=render_to_string("accounts/email/invitation_body.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )
    Invitation.objects.filter(pk=invitation.pk, token_digest=invitation.token_digest).update(
        sent_at=timezone.now()
    )
    return True


def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """Join the account through an open invitation addressed to ``user``'s email."""
    closed = {
        "accepted": "This invitation has already been accepted.",
        "revoked": "This invitation was withdrawn.",
        "expired": "This invitation has expired.",
    }
    if invitation.status in closed:
        raise InvitationError(closed[invitation.status])
    if invitation.email.lower() != user.email.lower():
        raise InvitationError(
            f"This invitation was sent to {invitation.email}. "
            "Sign in with that address to accept it."
        )
    with transaction.atomic():
        claimed = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(accepted_at=timezone.now(), accepted_by=user, token_ciphertext="")
        if not claimed:
            raise InvitationError(closed["accepted"])
        membership, created = Membership.objects.get_or_create(
            account=invitation.account, user=user, defaults={"role": invitation.role}
        )
        if created:
            audit_record(
                account=invitation.account,
                actor=user,
                action="member.join",
                target=user.email,
                role=invitation.role,
            )
    return membership
