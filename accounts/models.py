"""Users, the accounts they belong to, their roles, invitations and the audit trail."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from catalogue.models import RoutingGroup
from core.ids import new_public_id


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """A person who signs in with an email address. Staff users run the platform (admin)."""

    username = None
    first_name = None
    last_name = None
    email = models.EmailField("email address", unique=True)
    name = models.CharField(max_length=150, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.name or self.email


def new_account_id() -> str:
    return new_public_id("acct")


class Account(models.Model):
    """The billing owner: owns the wallet, keys, tasks and usage. A team works inside it."""

    public_id = models.CharField(max_length=40, unique=True, default=new_account_id, editable=False)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)
    # The Standard Webhooks signing secret (whsec_...) for task callbacks: encrypted, since it
    # must be used to sign; shown once when created or rotated.
    webhook_secret_ciphertext = models.TextField(blank=True, editable=False)
    webhook_secret_hint = models.CharField(max_length=16, blank=True, editable=False)
    webhook_secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # The secret a rotation replaced, encrypted the same way: callbacks are signed with both
    # until ``webhook_previous_secret_expires_at`` (the overlap window), then it is erased.
    webhook_previous_secret_ciphertext = models.TextField(blank=True, editable=False)
    webhook_previous_secret_hint = models.CharField(max_length=16, blank=True, editable=False)
    webhook_previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # The IANA zone every report of the account reads days, "today" and months in.
    time_zone = models.CharField(max_length=64, default="UTC")

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # A previous secret always has the end of its window, and only it does.
            models.CheckConstraint(
                condition=(
                    models.Q(
                        webhook_previous_secret_ciphertext="",
                        webhook_previous_secret_expires_at__isnull=True,
                    )
                    | (
                        ~models.Q(webhook_previous_secret_ciphertext="")
                        & models.Q(webhook_previous_secret_expires_at__isnull=False)
                    )
                ),
                name="account_previous_webhook_secret_has_expiry",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> ZoneInfo:
        """The account's time zone (UTC if the stored name is not one this machine knows)."""
        return zone_named(self.time_zone)


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"
    FINANCE = "finance", "Finance"


def new_membership_id() -> str:
    return new_public_id("mem")


class Membership(models.Model):
    public_id = models.CharField(
        max_length=40, unique=True, default=new_membership_id, editable=False
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "user"], name="membership_unique_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.account} as {self.role}"

    def can(self, permission: str, project=None) -> bool:
        """Whether this member may do ``permission``; inside ``project`` (a Project or its
        id) when given, where the member's role in that project counts too."""
        from accounts.permissions import member_can

        if project is None:
            return member_can(self.role, permission)
        project_id = project if isinstance(project, int) else project.pk
        return member_can(
            self.role, permission, in_project=True, project_role=self.project_role(project_id)
        )

    def project_role(self, project_id: int) -> str | None:
        """This member's role in the project (``ProjectRole``), or None. Read once per
        membership object, which lives for one request: a removal counts from the next one."""
        roles = getattr(self, "_project_roles", None)
        if roles is None:
            roles = dict(
                ProjectMembership.objects.filter(membership=self).values_list("project_id", "role")
            )
            self._project_roles = roles
        return roles.get(project_id)

    def project_ids(self) -> set[int]:
        """The projects this member belongs to (not those their account role reaches)."""
        self.project_role(0)
        return set(self._project_roles)

    def project_scope(self) -> frozenset[int] | None:
        """What the member's reports cover: None (the whole account) for owners, admins and
        finance, else the ids of the projects they belong to."""
        from accounts.permissions import ALL_PROJECTS

        return None if self.can(ALL_PROJECTS) else frozenset(self.project_ids())


def new_project_id() -> str:
    return new_public_id("proj")


def _none_or_positive(*fields: str) -> models.Q:
    condition = models.Q()
    for field in fields:
        condition &= models.Q(**{f"{field}__isnull": True}) | models.Q(**{f"{field}__gt": 0})
    return condition


class Project(models.Model):
    """A workspace inside an account: a set of keys, the members who use them with a role each,
    and budgets. Every key belongs to one project; each account has one default project
    ("Default"), which new keys and new members join unless told otherwise.

    Budgets are micro-credits, NULL for none (a budget is never 0): ``monthly_budget`` per
    calendar month (of the account's time zone), ``budget`` for the project's lifetime. Hard
    budgets (``budget_hard``) refuse the project's calls past them; soft ones only alert.
    """

    public_id = models.CharField(max_length=40, unique=True, default=new_project_id, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    is_default = models.BooleanField(default=False)
    monthly_budget = models.BigIntegerField(null=True, blank=True)
    budget = models.BigIntegerField(null=True, blank=True)
    budget_hard = models.BooleanField(default=True)
    # When the budgets were last set or changed: a hard budget's counter is kept under it
    # (billing/budgets.py), so a budget set again starts from what was spent meanwhile.
    budget_set_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    # A deleted project keeps its row (hidden everywhere) so past usage stays attributed to it.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-is_default", "name", "id"]
        constraints = [
            models.UniqueConstraint(
                "account",
                Lower("name"),
                condition=models.Q(deleted_at__isnull=True),
                name="project_unique_name_per_account",
            ),
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(is_default=True, deleted_at__isnull=True),
                name="project_one_default_per_account",
            ),
            models.CheckConstraint(
                condition=_none_or_positive("monthly_budget", "budget"),
                name="project_budgets_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(is_default=False) | models.Q(deleted_at__isnull=True),
                name="project_default_not_deleted",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ProjectRole(models.TextChoices):
    ADMIN = "admin", "Admin"  # manages the project's members and all its keys
    MEMBER = "member", "Member"  # creates keys in it and uses the keys they created


class ProjectMembership(models.Model):
    """A member of the account in one project, with a role there. Owners, admins and finance
    reach every project through their account role and need none."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    membership = models.ForeignKey(
        Membership, on_delete=models.CASCADE, related_name="project_memberships"
    )
    role = models.CharField(max_length=16, choices=ProjectRole.choices, default=ProjectRole.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "membership"], name="project_membership_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=ProjectRole.values),
                name="project_membership_role_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.membership.user} in {self.project} as {self.role}"


def new_invitation_id() -> str:
    return new_public_id("inv")


class Invitation(models.Model):
    """An emailed invitation to join an account with a role, accepted once through its link.

    The link's token is stored as a SHA-256 digest (to find the invitation) and encrypted (so a
    worker can email it; cleared once the invitation closes). Resending issues a new token.
    """

    public_id = models.CharField(
        max_length=40, unique=True, default=new_invitation_id, editable=False
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_digest = models.CharField(max_length=64, unique=True)
    token_ciphertext = models.TextField(blank=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="invitation_role_valid"
            ),
            # At most one open invitation per address and account; resending reuses it.
            models.UniqueConstraint(
                Lower("email"),
                "account",
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.account}"

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "sent" if self.sent_at else "sending"


class AuditEvent(models.Model):
    """Who did what to an account's team, keys and settings, and when. Append-only.

    Events of no account are staff operations on what every account shares (``channel.*``: an
    upstream channel disabled, enabled or tripped); account pages never show them."""

    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, null=True, blank=True, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=254, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"], name="audit_account_recent")]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"


class GroupGrant(models.Model):
    """An exclusive group made available to one account."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="group_grants")
    group = models.ForeignKey(RoutingGroup, on_delete=models.CASCADE, related_name="grants")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "group"], name="group_grant_unique")
        ]

    def __str__(self) -> str:
        return f"{self.group} for {self.account}"
