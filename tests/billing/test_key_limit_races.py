"""A key's limits under racing admissions, with real threads (each its own connection and
transaction), on SQLite and on PostgreSQL: issue 11 found the check and the hold in two
transactions, so a burst of calls all saw room that only some of them fitted in."""

import pytest

from accounts.keyauth import KeyPrincipal
from accounts.models import ApiKey
from billing.models import Hold
from billing.services import wallet_problems
from generation import metering
from generation.dataplane.errors import GatewayError
from tests.factories import RoutingGroupFactory, fund, issue_key
from tests.races import race

pytestmark = pytest.mark.django_db(transaction=True)
M = 1_000_000
CALLS = 30


def principal(world, **limits) -> KeyPrincipal:
    key, _ = issue_key(world.account, RoutingGroupFactory(), actor=world.owner)
    ApiKey.objects.filter(pk=key.pk).update(**limits)
    key.refresh_from_db()
    return KeyPrincipal.from_key(key)


@pytest.mark.parametrize(
    ("limit", "status"), [("quota", 402), ("rate_limit_5h", 429), ("rate_limit_7d", 429)]
)
def test_racing_admissions_stop_exactly_at_a_keys_limit(world, limit, status):
    fund(world.account, 100)
    key = principal(world, **{limit: 3 * M})
    results = race(lambda i: metering._admit(key, f"req_race_{i}", M, True), CALLS)
    admitted = [r for r in results if isinstance(r, metering.Admission)]
    refused = [r for r in results if isinstance(r, GatewayError)]
    # Spend counts what is held: 0, 1 and 2 credits are below the limit of 3; then it is reached.
    assert (len(admitted), len(refused)) == (3, CALLS - 3), [
        r for r in results if not isinstance(r, metering.Admission | GatewayError)
    ]
    assert {r.status for r in refused} == {status}
    assert Hold.objects.filter(api_key_id=key.key_id, status="open").count() == 3
    assert wallet_problems(world.account.pk) == []
