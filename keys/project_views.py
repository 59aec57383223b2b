"""Console pages for projects: the list, one project's page (its name, budgets, members and
keys), and the forms that change them.

Who sees what goes through ``Membership.can`` with the project: owners, admins and finance
reach every project; developers and viewers only those they belong to (any other project is a
404, like another account's). Creating and deleting projects and setting budgets is for
owners and admins; renaming and members also for the project's admins.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts import permissions
from accounts import selectors as accounts
from accounts import services as projects
from accounts.decorators import account_view
from accounts.models import Project, ProjectRole
from keys import selectors
from keys.forms import credits_text
from keys.project_forms import ProjectForm, ProjectMemberForm
from keys.views import present_keys_with_spend

PAGE = "keys/project_detail.html"
LIST_PAGE = "keys/projects.html"


def _budget_initial(project: Project) -> dict:
    return {
        "name": project.name,
        "monthly_budget": credits_text(project.monthly_budget),
        "budget": credits_text(project.budget),
        "budget_hard": project.budget_hard,
    }


def _list_context(request, form: ProjectForm | None = None) -> dict:
    membership = request.membership
    rows = list(projects_with_counts(membership))
    return {
        "projects": rows,
        "can_create": membership.can(permissions.MANAGE_PROJECTS),
        "form": form or ProjectForm(),
    }


def projects_with_counts(membership):
    return accounts.projects_visible_to(membership).annotate(
        key_count=Count("api_keys", filter=Q(api_keys__deleted_at=None), distinct=True),
        member_count=Count("memberships", distinct=True),
    )


@require_GET
@account_view()
def project_list(request):
    return render(request, LIST_PAGE, _list_context(request))


@require_POST
@account_view(permissions.MANAGE_PROJECTS)
def project_create(request):
    form = ProjectForm(request.POST)
    if form.is_valid():
        try:
            project = projects.project_create(
                account=request.account, actor=request.user, **form.cleaned_data
            )
        except projects.ProjectError as error:
            form.add_error(error.field if error.field in form.fields else None, str(error))
        else:
            messages.success(request, f"Created the project {project.name}.")
            url = reverse("keys:project-detail", args=[project.public_id])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    template = f"{LIST_PAGE}#project-create" if request.htmx else LIST_PAGE
    return render(request, template, _list_context(request, form), status=422)


def _project(request, public_id: str) -> Project:
    """A project the member may see, else 404."""
    return accounts.project_get_for_member(membership=request.membership, public_id=public_id)


def _may_manage(request, project: Project) -> None:
    if not request.membership.can(permissions.MANAGE_PROJECT, project=project):
        raise PermissionDenied("Only the project's admins and the account's admins can do this.")


def _detail_context(request, project: Project, **extra) -> dict:
    membership = request.membership
    can_manage = membership.can(permissions.MANAGE_PROJECT, project=project)
    can_budget = membership.can(permissions.MANAGE_PROJECTS)
    members = accounts.project_members(project)
    in_project = {row.membership_id for row in members}
    candidates = [
        m
        for m in accounts.memberships_for_account(request.account)
        if m.pk not in in_project and not m.can(permissions.ALL_PROJECTS)
    ]
    api_keys = list(selectors.api_keys_visible_to(membership).filter(project=project))
    context = {
        "project": project,
        "members": members,
        "account_wide": [
            m
            for m in accounts.memberships_for_account(request.account)
            if m.can(permissions.ALL_PROJECTS)
        ],
        "key_rows": present_keys_with_spend(request.account, api_keys, membership),
        "can_manage": can_manage,
        "can_budget": can_budget,
        "can_create_key": membership.can(permissions.MANAGE_OWN_KEYS, project=project),
        "project_form": ProjectForm(initial=_budget_initial(project), budgets=can_budget),
        "member_form": ProjectMemberForm(candidates=candidates),
        "candidates": candidates,
        "roles": ProjectRole.choices,
    }
    context.update(extra)
    return context


@require_GET
@account_view()
def project_detail(request, public_id):
    project = _project(request, public_id)
    return render(request, PAGE, _detail_context(request, project))


def _render(request, project, partial: str, status: int = 200, **extra):
    template = f"{PAGE}#{partial}" if request.htmx else PAGE
    return render(request, template, _detail_context(request, project, **extra), status=status)


@require_POST
@account_view()
def project_update(request, public_id):
    """Rename (project admins too) and set budgets (owners and admins)."""
    project = _project(request, public_id)
    _may_manage(request, project)
    can_budget = request.membership.can(permissions.MANAGE_PROJECTS)
    form = ProjectForm(request.POST, budgets=can_budget)
    if form.is_valid():
        try:
            projects.project_update(project=project, actor=request.user, **form.cleaned_data)
        except projects.ProjectError as error:
            form.add_error(error.field if error.field in form.fields else None, str(error))
        else:
            if not request.htmx:
                messages.success(request, "Project saved.")
                return redirect("keys:project-detail", public_id=project.public_id)
            return _render(request, project, "project-settings", settings_notice="Saved.")
    return _render(request, project, "project-settings", status=422, project_form=form)


@require_POST
@account_view(permissions.MANAGE_PROJECTS)
def project_delete(request, public_id):
    project = _project(request, public_id)
    try:
        projects.project_delete(project=project, actor=request.user)
    except projects.ProjectError as error:
        if not request.htmx:
            messages.error(request, str(error))
            return redirect("keys:project-detail", public_id=project.public_id)
        return _render(request, project, "project-danger", status=422, delete_error=str(error))
    messages.success(request, f"Deleted the project {project.name}. Its usage stays in reports.")
    url = reverse("keys:projects")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_POST
@account_view()
def project_member_add(request, public_id):
    """Add a member with a project role, or change the role of one already in it."""
    project = _project(request, public_id)
    _may_manage(request, project)
    candidates = accounts.memberships_for_account(request.account)
    form = ProjectMemberForm(request.POST, candidates=candidates)
    if form.is_valid():
        membership = accounts.membership_get_for_account(
            account=request.account, public_id=form.cleaned_data["member"]
        )
        try:
            projects.project_member_set(
                project=project,
                membership=membership,
                role=form.cleaned_data["role"],
                actor=request.user,
            )
        except projects.ProjectError as error:
            form.add_error("member", str(error))
        else:
            notice = f"{membership.user.email} is {form.cleaned_data['role']} of {project.name}."
            return _render(request, project, "project-members", members_notice=notice)
    return _render(request, project, "project-members", status=422, member_form=form)


@require_POST
@account_view()
def project_member_remove(request, public_id, member_id):
    project = _project(request, public_id)
    _may_manage(request, project)
    row = accounts.project_membership_get(project=project, member_public_id=member_id)
    projects.project_member_remove(project=project, membership=row.membership, actor=request.user)
    notice = f"{row.membership.user.email} was removed from {project.name}."
    if row.membership_id == request.membership.pk:
        # They took themself out: the project may no longer be theirs to see.
        messages.info(request, notice)
        url = reverse("keys:projects")
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return _render(request, project, "project-members", members_notice=notice)
