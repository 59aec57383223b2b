"""The database keeps every key limit NULL (none) or positive, and the migration that made
"no limit" NULL turns the old 0 into NULL (and back)."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from accounts.keys import management_key_issue
from accounts.models import LIMIT_FIELDS, ApiKey, KeyStatus, ManagementKey
from tests.factories import AccountFactory, RoutingGroupFactory, issue_key

BEFORE = [("accounts", "0003_webhook_previous_secret")]
AFTER = [("accounts", "0006_apikey_limits_positive")]


@pytest.mark.django_db
@pytest.mark.parametrize("field", LIMIT_FIELDS)
def test_a_limit_is_null_or_positive_never_zero_or_negative(field):
    key, _ = issue_key(AccountFactory(), RoutingGroupFactory())
    for value in (None, 1):
        ApiKey.objects.filter(pk=key.pk).update(**{field: value})
    for value in (0, -1):
        with pytest.raises(IntegrityError), transaction.atomic():
            ApiKey.objects.filter(pk=key.pk).update(**{field: value})


@pytest.mark.django_db
def test_an_inference_key_may_be_paused_a_management_key_may_not(world):
    key, _ = issue_key(world.account, RoutingGroupFactory())
    ApiKey.objects.filter(pk=key.pk).update(status=KeyStatus.PAUSED)
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.filter(pk=key.pk).update(status="frozen")
    mkey, _ = management_key_issue(account=world.account, actor=world.owner, name="CI")
    with pytest.raises(IntegrityError), transaction.atomic():
        ManagementKey.objects.filter(pk=mkey.pk).update(status=KeyStatus.PAUSED)


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_migration_turns_zero_into_null_and_back():
    old = _migrate(BEFORE)
    try:
        account = old.get_model("accounts", "Account").objects.create(name="Old")
        group = old.get_model("accounts", "RoutingGroup").objects.create(slug="g", name="G")
        OldKey = old.get_model("accounts", "ApiKey")
        common = {"account": account, "group": group, "prefix": "sk-byts-abcd", "last4": "wxyz"}
        OldKey.objects.create(
            name="unlimited", digest="1" * 64, public_id="key_unlimited", **common
        )
        OldKey.objects.create(
            name="limited",
            digest="2" * 64,
            public_id="key_limited",
            quota=5_000_000,
            rate_limit_5h=0,
            rate_limit_1d=1_000_000,
            rate_limit_7d=0,
            **common,
        )

        new = _migrate(AFTER)
        NewKey = new.get_model("accounts", "ApiKey")
        fields = ["quota", "rate_limit_5h", "rate_limit_1d", "rate_limit_7d", "rpm", "tpm"]
        assert NewKey.objects.filter(name="unlimited").values_list(*fields).get() == (None,) * 6
        assert NewKey.objects.filter(name="limited").values_list(*fields).get() == (
            5_000_000,
            None,
            1_000_000,
            None,
            None,
            None,
        )
        NewKey.objects.filter(name="unlimited").update(status="paused")

        old = _migrate(BEFORE)
        OldKey = old.get_model("accounts", "ApiKey")
        back = OldKey.objects.filter(name="limited").values_list(*fields[:4]).get()
        assert back == (5_000_000, 0, 1_000_000, 0)
        unlimited = OldKey.objects.get(name="unlimited")
        assert (unlimited.quota, unlimited.rate_limit_7d) == (0, 0)
        # The previous code has no pause: a paused key stays stopped, as revoked.
        assert unlimited.status == "revoked" and unlimited.revoked_at is not None
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
