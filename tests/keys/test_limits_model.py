"""The database keeps every key limit NULL (none) or positive. (The migration that turned the
old 0 into NULL went when migrations were regenerated from scratch, issue 13.)"""

import pytest
from django.db import IntegrityError, transaction

from keys.models import LIMIT_FIELDS, ApiKey, KeyStatus, ManagementKey
from keys.services import management_key_issue
from tests.factories import AccountFactory, RoutingGroupFactory, issue_key


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
