"""Console pages for the team, invitations, account settings, the audit log and the account
switcher."""

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts import onboarding, permissions, selectors, services
from accounts.decorators import account_view
from accounts.forms import (
    AccountNameForm,
    InvitationForm,
    RoleForm,
    TimeZoneForm,
    time_zone_names,
)
from accounts.models import AuditEvent, Role

AUDIT_PAGE_SIZE = 50


def _base_url(request) -> str:
    return request.build_absolute_uri("/")


def _team_context(request, **extra) -> dict:
    account = request.account
    context = {
        "members": selectors.memberships_for_account(account),
        "invitations": selectors.invitations_pending_for_account(account),
        "invitation_form": InvitationForm(),
        "roles": Role.choices,
        "can_manage": request.membership.can(permissions.MANAGE_MEMBERS),
        "audit_events": (
            selectors.audit_events_for_account(account)[:20]
            if request.membership.can(permissions.VIEW_AUDIT)
            else []
        ),
    }
    context.update(extra)
    return context


@account_view()
def team(request):
    return render(request, "accounts/team.html", _team_context(request))


def _render_invitations(request, **extra):
    template = "accounts/team.html#invitations" if request.htmx else "accounts/team.html"
    return render(request, template, _team_context(request, **extra))


def _render_members(request, **extra):
    template = "accounts/team.html#members" if request.htmx else "accounts/team.html"
    return render(request, template, _team_context(request, **extra))


@require_POST
@account_view(permissions.MANAGE_MEMBERS)
def invitation_create(request):
    form = InvitationForm(request.POST)
    if form.is_valid():
        try:
            invitation = services.invitation_create(
                account=request.account,
                actor=request.user,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                base_url=_base_url(request),
            )
        except services.InvitationError as error:
            form.add_error("email", str(error))
        else:
            if not request.htmx:
                messages.success(request, f"Invitation sent to {invitation.email}.")
                return redirect("accounts:team")
            return _render_invitations(
                request, invitations_notice=f"Invitation sent to {invitation.email}."
            )
    response = _render_invitations(request, invitation_form=form)
    response.status_code = 422
    return response


@require_POST
@account_view(permissions.MANAGE_MEMBERS)
def invitation_resend(request, public_id):
    invitation = selectors.invitation_get_for_account(account=request.account, public_id=public_id)
    try:
        services.invitation_resend(
            invitation=invitation, actor=request.user, base_url=_base_url(request)
        )
    except services.InvitationError as error:
        return _render_invitations(request, invitations_error=str(error))
    return _render_invitations(
        request, invitations_notice=f"A new link was sent to {invitation.email}."
    )


@require_POST
@account_view(permissions.MANAGE_MEMBERS)
def invitation_revoke(request, public_id):
    invitation = selectors.invitation_get_for_account(account=request.account, public_id=public_id)
    services.invitation_revoke(invitation=invitation, actor=request.user)
    return _render_invitations(
        request, invitations_notice=f"Invitation to {invitation.email} withdrawn."
    )


@require_POST
@account_view(permissions.MANAGE_MEMBERS)
def member_role(request, public_id):
    membership = selectors.membership_get_for_account(account=request.account, public_id=public_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _render_members(request, members_error="Choose one of the listed roles.")
    try:
        services.membership_change_role(
            actor=request.user, membership=membership, role=form.cleaned_data["role"]
        )
    except services.TeamError as error:
        return _render_members(request, members_error=str(error))
    if membership.user_id == request.user.pk and not membership.can(permissions.MANAGE_MEMBERS):
        # The owner demoted themself: the team page they are on is no longer theirs to manage.
        messages.info(request, f"You are now {membership.get_role_display().lower()}.")
        return _redirect(request, "accounts:team")
    return _render_members(
        request, members_notice=f"{membership.user.email} is now {membership.get_role_display()}."
    )


@require_POST
@account_view(permissions.MANAGE_MEMBERS)
def member_remove(request, public_id):
    membership = selectors.membership_get_for_account(account=request.account, public_id=public_id)
    if membership.user_id == request.user.pk:
        return _render_members(request, members_error="To leave the account, use Settings.")
    try:
        services.membership_remove(actor=request.user, membership=membership)
    except services.TeamError as error:
        return _render_members(request, members_error=str(error))
    return _render_members(request, members_notice=f"{membership.user.email} was removed.")


def _redirect(request, to: str):
    """A redirect that also works for HTMX requests (full navigation)."""
    url = reverse(to)
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _settings_page(request, *, form=None, zone_form=None, status=200):
    can_manage = request.membership.can(permissions.MANAGE_ACCOUNT)
    can_set_zone = request.membership.can(permissions.SET_TIME_ZONE)
    context = {
        "form": form or AccountNameForm(initial={"name": request.account.name}),
        "can_manage": can_manage,
        "can_set_zone": can_set_zone,
        "zone_form": zone_form or TimeZoneForm(initial={"time_zone": request.account.time_zone}),
        "time_zones": time_zone_names() if can_set_zone else [],
    }
    return render(request, "accounts/settings.html", context, status=status)


@account_view()
def account_settings(request):
    if request.method == "POST":
        if not request.membership.can(permissions.MANAGE_ACCOUNT):
            raise PermissionDenied("Only owners can change the account's settings.")
        form = AccountNameForm(request.POST)
        if form.is_valid():
            services.account_rename(
                account=request.account, actor=request.user, name=form.cleaned_data["name"]
            )
            messages.success(request, "Account name saved.")
            return redirect("accounts:settings")
        return _settings_page(request, form=form, status=422)
    return _settings_page(request)


@require_POST
@account_view(permissions.SET_TIME_ZONE)
def account_time_zone(request):
    form = TimeZoneForm(request.POST)
    if form.is_valid():
        services.account_set_time_zone(
            account=request.account, actor=request.user, time_zone=form.cleaned_data["time_zone"]
        )
        messages.success(
            request,
            f"Time zone saved: reports now read days in {form.cleaned_data['time_zone']}.",
        )
        return redirect("accounts:settings")
    return _settings_page(request, zone_form=form, status=422)


@require_POST
@account_view()
def account_leave(request):
    try:
        services.membership_remove(actor=request.user, membership=request.membership)
    except services.TeamError as error:
        messages.error(request, str(error))
        return redirect("accounts:settings")
    request.session.pop(selectors.SESSION_ACCOUNT_KEY, None)
    messages.success(request, f"You left {request.account.name}.")
    return redirect("console:dashboard")


@require_POST
@login_required
def account_switch(request):
    public_id = request.POST.get("account", "")
    membership = next(
        (
            m
            for m in selectors.memberships_for_user(request.user)
            if m.account.public_id == public_id
        ),
        None,
    )
    if membership is None:
        raise Http404("No such account.")
    request.session[selectors.SESSION_ACCOUNT_KEY] = public_id
    messages.success(request, f"Switched to {membership.account.name}.")
    return redirect("console:dashboard")


@login_required
def welcome(request):
    """Create an account: for users without one, and from the switcher for another one."""
    form = AccountNameForm()
    if request.method == "POST":
        form = AccountNameForm(request.POST)
        if form.is_valid():
            account = services.account_create(owner=request.user, name=form.cleaned_data["name"])
            request.session[selectors.SESSION_ACCOUNT_KEY] = account.public_id
            messages.success(request, f"Created {account.name}. You are its owner.")
            return redirect("console:dashboard")
    has_accounts = bool(selectors.memberships_for_user(request.user))
    return render(
        request,
        "accounts/welcome.html",
        {"form": form, "has_accounts": has_accounts},
        status=422 if form.errors else 200,
    )


def invitation_accept(request, token):
    """The link in the invitation email; anyone holding it may look, the invitee may accept."""
    invitation = selectors.invitation_get_by_token(token)
    error = None
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('account_login')}?next={request.path}")
        try:
            membership = services.invitation_accept(invitation=invitation, user=request.user)
        except services.InvitationError as exc:
            error = str(exc)
        else:
            request.session[selectors.SESSION_ACCOUNT_KEY] = membership.account.public_id
            messages.success(request, f"Welcome to {membership.account.name}.")
            return redirect("console:dashboard")
    elif not request.user.is_authenticated and invitation.is_open:
        onboarding.remember_invitation(request, token, invitation)
    return render(
        request,
        "accounts/invitation_accept.html",
        {
            "invitation": invitation,
            "error": error,
            "email_matches": request.user.is_authenticated
            and request.user.email.lower() == invitation.email.lower(),
        },
        status=400 if error else 200,
    )


# --- Audit log ---------------------------------------------------------------------------------

ACTION_LABELS = {
    "webhook_secret.create": "Created the webhook signing secret",
    "webhook_secret.rotate": "Rotated the webhook signing secret",
    "callback.redeliver": "Redelivered a task callback",
    "account.create": "Created the account",
    "account.rename": "Renamed the account",
    "account.time_zone": "Changed the time zone",
    "invitation.create": "Invited a teammate",
    "invitation.resend": "Resent an invitation",
    "invitation.revoke": "Withdrew an invitation",
    "member.join": "Joined",
    "member.leave": "Left",
    "member.role_change": "Changed a role",
    "member.remove": "Removed a member",
    "api_key.create": "Created an API key",
    "api_key.update": "Changed an API key",
    "api_key.pause": "Paused an API key",
    "api_key.resume": "Resumed an API key",
    "api_key.roll": "Rolled an API key",
    "api_key.revoke": "Revoked an API key",
    "api_key.delete": "Deleted an API key",
    "management_key.create": "Created a management key",
    "management_key.revoke": "Revoked a management key",
    "wallet.topup": "Topped up the wallet",
    "wallet.statement_emails": "Changed statement e-mails",
    "budget.set": "Set a budget",
    "project.create": "Created a project",
    "project.update": "Changed a project",
    "project.delete": "Deleted a project",
    "project.member_add": "Added a member to a project",
    "project.member_role": "Changed a project role",
    "project.member_remove": "Removed a member from a project",
}


@dataclass(frozen=True)
class AuditRow:
    """An audit event as the audit log shows it: what happened in words, and its plain details."""

    event: AuditEvent
    label: str
    detail_items: tuple[tuple[str, object], ...]  # (name, value), nested details left out


def _audit_row(event: AuditEvent) -> AuditRow:
    return AuditRow(
        event,
        label=ACTION_LABELS.get(event.action, event.action),
        detail_items=tuple(
            (
                name.replace("_", " "),
                ", ".join(map(str, value)) if isinstance(value, list) else value,
            )
            for name, value in sorted(event.details.items())
            if not isinstance(value, dict) and value not in ("", None, [])
        ),
    )


@require_GET
@account_view(permissions.VIEW_AUDIT)
def audit_log(request):
    page = Paginator(selectors.audit_events_for_account(request.account), AUDIT_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    template = "accounts/audit.html#audit-events" if request.htmx else "accounts/audit.html"
    return render(
        request,
        template,
        {
            "page": page,
            "rows": [_audit_row(event) for event in page],
            "previous_url": f"?page={page.previous_page_number()}" if page.has_previous() else "",
            "next_url": f"?page={page.next_page_number()}" if page.has_next() else "",
        },
    )
