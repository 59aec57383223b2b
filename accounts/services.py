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

from accounts.models import (
    Account,
    AuditEvent,
    Invitation,
    Membership,
    Project,
    ProjectMembership,
    ProjectRole,
    Role,
    User,
)
from accounts.permissions import ALL_PROJECTS
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


class ProjectError(TeamError):
    """A change to a project that the rules forbid; ``field`` names the offending input,
    ``status`` and ``code`` are what the management API answers."""

    CODES = {400: "invalid_param", 404: "not_found", 409: "conflict"}

    def __init__(self, message: str, field: str | None = None, status: int = 400, code: str = ""):
        super().__init__(message)
        self.field = field
        self.status = status
        self.code = code or self.CODES.get(status, "invalid_request")


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
        project_default(account)
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
        _join_default_project(membership)
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
            _join_default_project(membership)
            audit_record(
                account=invitation.account,
                actor=user,
                action="member.join",
                target=user.email,
                role=invitation.role,
            )
    return membership


# --- Projects --------------------------------------------------------------------------------

DEFAULT_PROJECT_NAME = "Default"
MAX_PROJECT_NAME = 100


def project_default(account: Account) -> Project:
    """The account's default project, created the first time it is needed (accounts made
    before projects got theirs from a migration; this covers any made another way)."""
    project = Project.objects.filter(account=account, is_default=True, deleted_at=None).first()
    if project is not None:
        return project
    try:
        with transaction.atomic():
            return Project.objects.create(
                account=account, name=_free_default_name(account), is_default=True
            )
    except IntegrityError:  # created meanwhile by a concurrent request
        return Project.objects.get(account=account, is_default=True, deleted_at=None)


def _free_default_name(account: Account) -> str:
    taken = {
        name.lower()
        for name in Project.objects.filter(account=account, deleted_at=None).values_list(
            "name", flat=True
        )
    }
    name, n = DEFAULT_PROJECT_NAME, 1
    while name.lower() in taken:
        n += 1
        name = f"{DEFAULT_PROJECT_NAME} {n}"
    return name


def _join_default_project(membership: Membership) -> None:
    """A developer or viewer who belongs to no project joins the default one as a member:
    new teammates can work at once, and nobody is left reaching nothing."""
    if membership.can(ALL_PROJECTS):
        return
    if ProjectMembership.objects.filter(membership=membership).exists():
        return
    ProjectMembership.objects.get_or_create(
        project=project_default(membership.account),
        membership=membership,
        defaults={"role": ProjectRole.MEMBER},
    )


def clean_project_name(name) -> str:
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise ProjectError("Give the project a name.", "name")
    if len(name) > MAX_PROJECT_NAME:
        raise ProjectError(f"Use at most {MAX_PROJECT_NAME} characters for the name.", "name")
    return name


def _check_name_free(account: Account, name: str, exclude: Project | None = None) -> None:
    taken = Project.objects.filter(account=account, deleted_at=None, name__iexact=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
        raise ProjectError(
            f"This account already has a project named “{name}”.", "name", 409, "name_taken"
        )


BUDGET_FIELDS = ("monthly_budget", "budget")


def _check_budgets(budgets: dict) -> None:
    """A budget is None (none) or a positive number of micro-credits; 0 would stop every key
    of the project, which is what pausing the keys is for."""
    for field, value in budgets.items():
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProjectError("Give an amount of credits, or null for no budget.", field)
        if value <= 0:
            raise ProjectError(
                "A budget is more than 0 credits; leave it empty (null) for no budget. "
                "To stop a project's calls, pause its keys.",
                field,
            )


def project_create(
    *,
    account: Account,
    name: str,
    actor: User | None = None,
    actor_label: str = "",
    monthly_budget: int | None = None,
    budget: int | None = None,
    budget_hard: bool = True,
) -> Project:
    name = clean_project_name(name)
    _check_budgets({"monthly_budget": monthly_budget, "budget": budget})
    _check_name_free(account, name)
    project = Project(account=account, name=name, monthly_budget=monthly_budget, budget=budget,
                      budget_hard=bool(budget_hard))  # fmt: skip
    try:
        with transaction.atomic():
            project.save()
            audit_record(
                account=account,
                actor=actor,
                actor_label=actor_label,
                action="project.create",
                target=name,
                project=project.public_id,
            )
    except IntegrityError:  # the same name, created meanwhile
        raise ProjectError(
            f"This account already has a project named “{name}”.", "name", 409, "name_taken"
        ) from None
    return project


def project_update(
    *, project: Project, actor: User | None = None, actor_label: str = "", **changes
) -> Project:
    """Rename the project or change its budgets, or whether they are hard (only the fields
    given)."""
    unknown = set(changes) - {"name", "budget_hard", *BUDGET_FIELDS}
    if unknown:
        field = sorted(unknown)[0]
        raise ProjectError(f"“{field}” cannot be changed.", field)
    if "name" in changes:
        changes["name"] = clean_project_name(changes["name"])
        _check_name_free(project.account, changes["name"], exclude=project)
    _check_budgets({f: v for f, v in changes.items() if f in BUDGET_FIELDS})
    if changes.get("budget_hard") is None:
        changes.pop("budget_hard", None)  # not given: as it is
    changes = {f: v for f, v in changes.items() if getattr(project, f) != v}
    if not changes:
        return project
    before = {field: getattr(project, field) for field in changes}
    if set(changes) & {"budget_hard", *BUDGET_FIELDS}:
        changes["budget_set_at"] = timezone.now()
    for field, value in changes.items():
        setattr(project, field, value)
    try:
        with transaction.atomic():
            project.save(update_fields=list(changes))
            audit_record(
                account=project.account,
                actor=actor,
                actor_label=actor_label,
                action="project.update",
                target=project.name,
                project=project.public_id,
                fields=sorted(changes),
                before={f: None if v is None else str(v) for f, v in before.items()},
            )
    except IntegrityError:
        raise ProjectError(
            f"This account already has a project named “{project.name}”.", "name", 409, "name_taken"
        ) from None
    return project


def project_delete(*, project: Project, actor: User | None = None, actor_label: str = "") -> None:
    """Hide the project for good. Refused for the default project and while it has keys that
    are not revoked: move or revoke them first. Its row stays so past usage keeps its name."""
    if project.is_default:
        raise ProjectError(
            "The default project cannot be deleted: new keys and members go there.",
            None,
            409,
            "project_is_default",
        )
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        if locked.deleted_at is not None:
            return
        live = project.api_keys.filter(deleted_at=None).exclude(status="revoked").count()
        if live:
            raise ProjectError(
                f"This project still has {live} key{'s' if live != 1 else ''} in use. "
                "Move them to another project or revoke them first.",
                None,
                409,
                "project_has_keys",
            )
        project.deleted_at = timezone.now()
        project.save(update_fields=["deleted_at"])
        ProjectMembership.objects.filter(project=project).delete()
        audit_record(
            account=project.account,
            actor=actor,
            actor_label=actor_label,
            action="project.delete",
            target=project.name,
            project=project.public_id,
        )


def project_member_set(
    *,
    project: Project,
    membership: Membership,
    role: str,
    actor: User | None = None,
    actor_label: str = "",
) -> ProjectMembership:
    """Add ``membership`` to the project with ``role``, or change their role there."""
    if role not in ProjectRole.values:
        raise ProjectError('Choose a project role: "admin" or "member".', "role")
    if membership.account_id != project.account_id:
        raise ProjectError("That person is not a member of this account.", "member_id", 404)
    if membership.can(ALL_PROJECTS):
        raise ProjectError(
            f"{membership.user.email} is {membership.get_role_display().lower()} of the "
            "account and already reaches every project.",
            "member_id",
        )
    with transaction.atomic():
        row, created = ProjectMembership.objects.get_or_create(
            project=project, membership=membership, defaults={"role": role}
        )
        if not created and row.role == role:
            return row
        old = None if created else row.role
        if not created:
            row.role = role
            row.save(update_fields=["role"])
        audit_record(
            account=project.account,
            actor=actor,
            actor_label=actor_label,
            action="project.member_add" if created else "project.member_role",
            target=membership.user.email,
            project=project.public_id,
            role=role,
            **({"old": old} if old else {}),
        )
    return row


def project_member_remove(
    *,
    project: Project,
    membership: Membership,
    actor: User | None = None,
    actor_label: str = "",
) -> None:
    """Take the member out of the project: from their next request they no longer see or use
    its keys (idempotent)."""
    with transaction.atomic():
        deleted, _ = ProjectMembership.objects.filter(
            project=project, membership=membership
        ).delete()
        if deleted:
            audit_record(
                account=project.account,
                actor=actor,
                actor_label=actor_label,
                action="project.member_remove",
                target=membership.user.email,
                project=project.public_id,
            )
