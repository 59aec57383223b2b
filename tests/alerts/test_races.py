"""Once per crossing under concurrency, on PostgreSQL with real threads: evaluations racing over
the same crossing (two workers, beat and a top-up's re-arm...) fire one alert."""

import pytest

from alerts import services
from alerts.models import Alert, AlertDelivery, AlertState, ChannelKind, RuleKind
from billing import holds
from billing.usage import UsageFacts
from tests.alerts.conftest import M
from tests.factories import AIModelFactory, RoutingGroupFactory, fund, issue_key
from tests.races import race

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def channel(world):
    found, _ = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.EMAIL, name="Finance",
        target="finance@acme.test",
    )  # fmt: skip
    return found


def settle(world, reference, credits, key=None):
    model = AIModelFactory() if key is None else AIModelFactory(slug=f"m-{reference}")
    holds.hold_place(account_id=world.account.pk, reference=reference, amount=credits * M)
    usage = UsageFacts(
        model_id=model.pk, family="text", protocol="openai", api_key_id=key.pk if key else None
    )
    holds.hold_settle(reference=reference, charge=credits * M, usage=usage)


def test_eight_evaluations_of_one_crossing_fire_one_alert(world):
    fund(world.account, 10)
    services.rule_create(
        account=world.account, actor=world.owner, kind=RuleKind.BALANCE_BELOW,
        channels=[channel(world)], threshold=5 * M,
    )  # fmt: skip
    settle(world, "crossing", 6)

    results = race(lambda i: services.account_evaluate(account_id=world.account.pk), 8)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(len(fired) for fired in results) == 1
    assert Alert.objects.count() == 1 and AlertDelivery.objects.count() == 1
    assert AlertState.objects.get().crossings == 1


def test_settlements_in_many_threads_crossing_together_fire_once_per_level(world):
    """Calls settle in parallel, each evaluating right after: the key crosses 80% and 100%
    of its quota among them, and each level fires once (or 100% alone, when seen at once)."""
    fund(world.account, 100)
    key, _ = issue_key(world.account, RoutingGroupFactory(), quota=10 * M)
    services.rule_create(
        account=world.account, actor=world.owner, kind=RuleKind.KEY_QUOTA,
        channels=[channel(world)],
    )  # fmt: skip

    def call(i):
        settle(world, f"call_{i}", 1, key=key)
        return services.account_evaluate(account_id=world.account.pk)

    results = race(call, 10)

    assert not [r for r in results if isinstance(r, Exception)], results
    percents = sorted(alert.data["percent"] for fired in results for alert in fired)
    assert percents in ([80, 100], [100])
    assert Alert.objects.count() == len(percents)
    services.account_evaluate(account_id=world.account.pk)
    assert Alert.objects.count() == len(percents)
