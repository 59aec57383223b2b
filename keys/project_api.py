"""Management API resources for projects: /api/v1/projects and their members.

A management key acts as the account (as for keys): it sees and changes every project. Errors
are the project services' ``ProjectError`` (status, code, field), rendered by console/api.py.
Budgets are credits in and out, ``null`` for none; a hard one refuses the project's calls past
it (402 ``budget_exceeded``), a soft one only alerts (billing/budgets.py).
"""

from datetime import datetime
from typing import Literal

from django.db.models import Count, Q
from ninja import Field, Query, Router, Schema, Status
from pydantic import ConfigDict

from accounts.models import Membership, Project, ProjectMembership
from accounts.selectors import project_get_for_account, project_members, projects_for_account
from accounts.services import (
    MAX_PROJECT_NAME,
    ProjectError,
    project_create,
    project_delete,
    project_member_remove,
    project_member_set,
    project_update,
)
from core.api import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE, CreditsOut, credits_in
from core.money import credits_json

router = Router(tags=["projects"])

Credits = credits_in(allow_zero=True)  # 0 reaches the service, which says what to do instead
MONTHLY = (
    "What the project's keys may spend in a calendar month (of the account's time zone), in "
    "credits. null: none."
)
LIFETIME = "What the project's keys may spend in all, in credits. null: none."
HARD = (
    "true: the project's calls past a budget are refused (402 budget_exceeded); false: soft "
    "budgets, which only alert (at 50, 80 and 100%)."
)


class ProjectOut(Schema):
    id: str = Field(examples=["proj_01JD0000000000000000000000"])
    name: str
    is_default: bool = Field(description="New keys and members go to the default project.")
    monthly_budget: CreditsOut | None = Field(description=MONTHLY)
    budget: CreditsOut | None = Field(description=LIFETIME)
    budget_hard: bool = Field(description=HARD)
    keys: int = Field(description="Keys in the project (deleted ones aside).")
    members: int = Field(
        description="Members with a project role (owners, admins and finance reach every "
        "project without one)."
    )
    created_at: datetime


class ProjectPage(Schema):
    items: list[ProjectOut]
    total: int
    page: int
    page_size: int


class ProjectCreateIn(Schema):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Mobile app", "monthly_budget": "250"}]},
    )

    name: str = Field(max_length=MAX_PROJECT_NAME)
    monthly_budget: Credits | None = Field(None, description=MONTHLY)
    budget: Credits | None = Field(None, description=LIFETIME)
    budget_hard: bool = Field(True, description=HARD)


class ProjectUpdateIn(Schema):
    """Only the fields sent change; null removes a budget."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"monthly_budget": None}]}
    )

    name: str = Field(None, max_length=MAX_PROJECT_NAME)
    monthly_budget: Credits | None = Field(None, description=MONTHLY)
    budget: Credits | None = Field(None, description=LIFETIME)
    budget_hard: bool = Field(None, description=HARD)


class MemberOut(Schema):
    member_id: str = Field(examples=["mem_01JD0000000000000000000000"])
    email: str
    account_role: Literal["developer", "viewer"]
    role: Literal["admin", "member"] = Field(
        description='"admin" manages the project\'s keys and members; "member" makes keys '
        "in it and uses the keys they made."
    )
    added_at: datetime


class MemberPage(Schema):
    items: list[MemberOut]
    total: int
    page: int
    page_size: int


class MemberIn(Schema):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "dev@example.com", "role": "member"}]},
    )

    member_id: str | None = Field(None, description="A member of the account (mem_...).")
    email: str | None = Field(None, max_length=254, description="Or the member's email address.")
    role: Literal["admin", "member"] = "member"


def _credits(micros: int | None):
    return None if micros is None else credits_json(micros)


def _counted(projects):
    return projects.annotate(
        key_count=Count("api_keys", filter=Q(api_keys__deleted_at=None), distinct=True),
        member_count=Count("memberships", distinct=True),
    )


def project_json(project: Project) -> dict:
    if not hasattr(project, "key_count"):
        project = _counted(Project.objects.filter(pk=project.pk)).get()
    return {
        "id": project.public_id,
        "name": project.name,
        "is_default": project.is_default,
        "monthly_budget": _credits(project.monthly_budget),
        "budget": _credits(project.budget),
        "budget_hard": project.budget_hard,
        "keys": project.key_count,
        "members": project.member_count,
        "created_at": project.created_at,
    }


def member_json(row: ProjectMembership) -> dict:
    return {
        "member_id": row.membership.public_id,
        "email": row.membership.user.email,
        "account_role": row.membership.role,
        "role": row.role,
        "added_at": row.created_at,
    }


def _actor(request) -> dict:
    key = request.auth
    return {"actor_label": f"management key {key.name} ({key.masked})"}


def _project(request, project_id: str) -> Project:
    return project_get_for_account(account=request.auth.account, public_id=project_id)


@router.get(
    "/projects", response=ProjectPage, operation_id="projects_list", summary="List projects"
)
def projects_list(
    request,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    page_size: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
):
    """Your account's projects, the default one first, then by name."""
    projects = _counted(projects_for_account(request.auth.account))
    start = (page - 1) * page_size
    return {
        "items": [project_json(p) for p in projects[start : start + page_size]],
        "total": projects.count(),
        "page": page,
        "page_size": page_size,
    }


@router.post(
    "/projects",
    response={201: ProjectOut},
    operation_id="projects_create",
    summary="Create a project",
    openapi_extra={
        "responses": {
            "409": {
                "description": "The account has a project of that name (code `name_taken`).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        }
    },
)
def projects_create(request, payload: ProjectCreateIn):
    project = project_create(
        account=request.auth.account, **payload.model_dump(), **_actor(request)
    )
    return Status(201, project_json(project))


@router.get(
    "/projects/{project_id}",
    response=ProjectOut,
    operation_id="projects_get",
    summary="Get a project",
)
def projects_get(request, project_id: str):
    return project_json(_project(request, project_id))


@router.patch(
    "/projects/{project_id}",
    response=ProjectOut,
    operation_id="projects_update",
    summary="Update a project",
)
def projects_update(request, project_id: str, payload: ProjectUpdateIn):
    """Rename the project or change its budgets; null removes a budget."""
    project = _project(request, project_id)
    changes = payload.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise ProjectError("Give the project a name.", "name")
    return project_json(project_update(project=project, **changes, **_actor(request)))


@router.delete(
    "/projects/{project_id}",
    response={204: None},
    operation_id="projects_delete",
    summary="Delete a project",
    openapi_extra={
        "responses": {
            "409": {
                "description": "The default project (code `project_is_default`), or one with keys "
                "that are not revoked (code `project_has_keys`): move or revoke them first.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        }
    },
)
def projects_delete(request, project_id: str):
    """Delete a project that has no key in use. Its past usage stays attributed to it."""
    project_delete(project=_project(request, project_id), **_actor(request))
    return Status(204, None)


@router.get(
    "/projects/{project_id}/members",
    response=MemberPage,
    operation_id="projects_members_list",
    summary="List a project's members",
)
def members_list(request, project_id: str):
    """Developers and viewers with a role in the project. Owners, admins and finance reach every
    project through their account role and are not listed."""
    items = [member_json(row) for row in project_members(_project(request, project_id))]
    return {"items": items, "total": len(items), "page": 1, "page_size": max(len(items), 1)}


def _membership(request, payload: MemberIn) -> Membership:
    account = request.auth.account
    if payload.member_id:
        found = Membership.objects.filter(account=account, public_id=payload.member_id)
        field = "member_id"
    elif payload.email:
        found = Membership.objects.filter(account=account, user__email__iexact=payload.email)
        field = "email"
    else:
        raise ProjectError("Give member_id or email.", "member_id")
    membership = found.select_related("user").first()
    if membership is None:
        raise ProjectError("No member of your account has this id or email.", field, 404)
    return membership


@router.post(
    "/projects/{project_id}/members",
    response={200: MemberOut, 201: MemberOut},
    operation_id="projects_members_add",
    summary="Add a member to a project, or change their role",
)
def members_add(request, project_id: str, payload: MemberIn):
    """Add a developer or viewer of the account with a project role (201), or change the role
    of one already in it (200)."""
    project = _project(request, project_id)
    membership = _membership(request, payload)
    existed = ProjectMembership.objects.filter(project=project, membership=membership).exists()
    row = project_member_set(
        project=project, membership=membership, role=payload.role, **_actor(request)
    )
    row.membership = membership
    return Status(200 if existed else 201, member_json(row))


@router.delete(
    "/projects/{project_id}/members/{member_id}",
    response={204: None},
    operation_id="projects_members_remove",
    summary="Remove a member from a project",
)
def members_remove(request, project_id: str, member_id: str):
    """They lose access to the project's keys from their next request."""
    project = _project(request, project_id)
    row = (
        ProjectMembership.objects.filter(project=project, membership__public_id=member_id)
        .select_related("membership__user")
        .first()
    )
    if row is None:
        raise ProjectError("No such member in this project.", "member_id", 404)
    project_member_remove(project=project, membership=row.membership, **_actor(request))
    return Status(204, None)
