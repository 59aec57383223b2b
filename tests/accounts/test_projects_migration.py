"""The data migration that brings projects to accounts made before them: a default project per
account holding every key, with the developers and viewers in it, and past usage its own."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("accounts", "0004_projects_and_finance_role"),
    ("keys", "0004_apikey_project"),
    ("billing", "0006_payment"),
    ("catalogue", "0005_attempt_timeout"),
]
AFTER = [("keys", "0006_apikey_project_required"), ("billing", "0007_usage_project")]


@pytest.mark.django_db(transaction=True)
def test_existing_keys_members_and_usage_go_to_a_default_project():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        _check_the_migration(executor)
    finally:  # the next tests of this worker need every migration
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _check_the_migration(executor):
    apps = executor.loader.project_state(BEFORE).apps
    User = apps.get_model("accounts", "User")
    Account = apps.get_model("accounts", "Account")
    Membership = apps.get_model("accounts", "Membership")
    RoutingGroup = apps.get_model("catalogue", "RoutingGroup")
    AIModel = apps.get_model("catalogue", "AIModel")
    ApiKey = apps.get_model("keys", "ApiKey")
    UsageRecord = apps.get_model("billing", "UsageRecord")

    account = Account.objects.create(name="Old", public_id="acct_old")
    other = Account.objects.create(name="Other", public_id="acct_other")
    roles = {}
    for role in ("owner", "developer", "viewer"):
        user = User.objects.create(email=f"{role}@old.test")
        roles[role] = Membership.objects.create(
            account=account, user=user, role=role, public_id=f"mem_{role}"
        )
    group = RoutingGroup.objects.create(slug="g", name="G")
    model = AIModel.objects.create(slug="m", display_name="M", family="text")
    key = ApiKey.objects.create(
        account=account, group=group, name="k", digest="d1", prefix="p", last4="1234",
        public_id="key_old",
    )  # fmt: skip
    ApiKey.objects.create(
        account=other, group=group, name="o", digest="d2", prefix="p", last4="5678",
        public_id="key_other",
    )  # fmt: skip
    UsageRecord.objects.create(
        request_id="req_old", account=account, api_key=key, model=model, family="text",
        protocol="openai", credits=5,
    )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    Project = apps.get_model("accounts", "Project")
    ProjectMembership = apps.get_model("accounts", "ProjectMembership")
    ApiKey = apps.get_model("keys", "ApiKey")
    UsageRecord = apps.get_model("billing", "UsageRecord")

    default = Project.objects.get(account__public_id="acct_old")
    assert default.is_default and default.name == "Default"
    assert default.public_id.startswith("proj_")
    assert ApiKey.objects.get(public_id="key_old").project_id == default.pk
    assert ApiKey.objects.get(public_id="key_other").project.account.public_id == "acct_other"
    members = set(
        ProjectMembership.objects.filter(project=default).values_list(
            "membership__public_id", "role"
        )
    )
    assert members == {("mem_developer", "member"), ("mem_viewer", "member")}
    assert UsageRecord.objects.get(request_id="req_old").project_id == default.pk
