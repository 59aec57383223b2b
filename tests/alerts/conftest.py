"""Alert test helpers: channels to local receivers, spending through the books, deliveries run
as a worker would. The receiver and the fake resolver are the callback tests' own."""

import pytest

from alerts import services
from alerts.models import AlertDelivery, ChannelKind
from billing import holds
from billing.usage import UsageFacts
from tests.callbacks.conftest import (  # noqa: F401 (fixtures)
    Receiver,
    connections,
    dns,
    local_callbacks,
    receiver,
    strict_callbacks,
)
from tests.conftest import run_enqueued
from tests.factories import AIModelFactory

M = 1_000_000


@pytest.fixture
def slack_receiver(local_callbacks):  # noqa: F811 (the imported fixture)
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def model(db):
    return AIModelFactory(slug="gpt-4.1")


@pytest.fixture
def spend(world, model):
    """Charge the world's account ``credits`` through a hold and its settlement (optionally on
    a key, at a moment)."""
    counter = iter(range(10**6))

    def charge(credits: float, *, key=None, at=None, account=None):
        account = account or world.account
        reference = f"req_{next(counter)}"
        amount = round(credits * M)
        holds.hold_place(account_id=account.pk, reference=reference, amount=amount)
        usage = UsageFacts(
            model_id=model.pk, family="text", protocol="openai",
            api_key_id=key.pk if key else None,
        )  # fmt: skip
        holds.hold_settle(reference=reference, charge=amount, usage=usage, at=at)

    return charge


@pytest.fixture
def channels(world, receiver, slack_receiver):  # noqa: F811 (the imported fixture)
    """A webhook, a Slack and an email channel of the world's account: (channels, secret)."""
    webhook, secret = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.WEBHOOK, name="Ops hook",
        target=receiver.url,
    )  # fmt: skip
    slack, _ = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.SLACK, name="#billing",
        target=slack_receiver.url.replace("/hooks/bytespike", "/services/T0/B0/xyz"),
    )  # fmt: skip
    email, _ = services.channel_create(
        account=world.account, actor=world.owner, kind=ChannelKind.EMAIL, name="Finance",
        target="finance@acme.test, owner@acme.test",
    )  # fmt: skip
    return [webhook, slack, email], secret


def deliver_all(enqueued) -> list:
    """Run the recorded jobs (evaluations, then the deliveries they queue) as workers would."""
    return run_enqueued(enqueued)


def delivered(alert) -> set[str]:
    return set(
        AlertDelivery.objects.filter(alert=alert, status="delivered").values_list(
            "channel_kind", flat=True
        )
    )
