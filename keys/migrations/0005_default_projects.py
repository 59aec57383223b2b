"""Every account gets its default project ("Default"), holding every key it has; its developers
and viewers join it as members, so nobody loses a key they could use before projects."""

from django.db import migrations
from django.utils import timezone
from ulid import ULID

SCOPED_ROLES = ("developer", "viewer")


def forwards(apps, schema_editor):
    Account = apps.get_model("accounts", "Account")
    Project = apps.get_model("accounts", "Project")
    ProjectMembership = apps.get_model("accounts", "ProjectMembership")
    Membership = apps.get_model("accounts", "Membership")
    ApiKey = apps.get_model("keys", "ApiKey")
    now = timezone.now()
    for account in Account.objects.all().iterator():
        project = Project.objects.filter(account=account, is_default=True).first()
        if project is None:
            project = Project.objects.create(
                account=account,
                public_id=f"proj_{ULID()}",
                name="Default",
                is_default=True,
                created_at=now,
            )
        ApiKey.objects.filter(account=account, project__isnull=True).update(project=project)
        members = Membership.objects.filter(account=account, role__in=SCOPED_ROLES)
        ProjectMembership.objects.bulk_create(
            [
                ProjectMembership(project=project, membership=m, role="member", created_at=now)
                for m in members
            ],
            ignore_conflicts=True,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_projects_and_finance_role"),
        ("keys", "0004_apikey_project"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
