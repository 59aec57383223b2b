"""GET /api/v1/account: the management key's account, its wallet in credits and its team size."""

from datetime import datetime, timedelta

from billing import holds, services
from billing.models import Wallet
from billing.usage import UsageFacts
from tests.api.conftest import ApiClient, assert_error
from tests.factories import fund, issue_key

M = 1_000_000
PATH = "/api/v1/account"


def test_shows_the_account_and_its_wallet_in_credits(world, api):
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="req_open", amount=2_500_000)
    services.wallet_set_low_balance_threshold(
        account=world.account, amount=1_500_000, actor=world.owner
    )

    response = api.get(PATH)

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": world.account.public_id,
        "name": "Acme",
        "created_at": body["created_at"],
        "wallet": {
            "balance": 10,
            "held": 2.5,
            "available": 7.5,
            "low_balance_threshold": 1.5,
            "concurrency_limit": 25,
        },
        "members": 5,  # owner, admin, developer, viewer, finance
    }
    assert body["id"].startswith("acct_")
    created = datetime.fromisoformat(body["created_at"])
    assert abs(created - world.account.created_at) < timedelta(milliseconds=1)


def test_wallet_follows_settles_and_releases(world, api, group):
    key, _ = issue_key(world.account, group)
    fund(world.account, 10)
    holds.hold_place(account_id=world.account.pk, reference="req_1", amount=3 * M)
    holds.hold_settle(
        reference="req_1",
        charge=1_250_000,
        usage=UsageFacts(
            model_id=group.models.get().pk, family="text", protocol="openai", api_key_id=key.pk
        ),
    )

    wallet = api.get(PATH).json()["wallet"]

    assert (wallet["balance"], wallet["held"], wallet["available"]) == (8.75, 0, 8.75)


def test_an_account_without_a_wallet_row_reads_as_empty(world, api):
    Wallet.objects.filter(account=world.account).delete()
    wallet = api.get(PATH).json()["wallet"]
    assert wallet == {
        "balance": 0,
        "held": 0,
        "available": 0,
        "low_balance_threshold": 0,
        "concurrency_limit": 25,
    }
    assert not Wallet.objects.filter(account=world.account).exists()  # reading wrote nothing


def test_each_management_key_sees_its_own_account(world, api, outsider_api):
    fund(world.outsider_account, 3)

    theirs = outsider_api.get(PATH).json()

    assert theirs["id"] == world.outsider_account.public_id
    assert (theirs["name"], theirs["members"], theirs["wallet"]["balance"]) == ("Other Co", 1, 3)
    assert api.get(PATH).json()["id"] == world.account.public_id


def test_an_inference_key_is_refused(world, group, client):
    _, secret = issue_key(world.account, group)
    error = assert_error(ApiClient(client, secret).get(PATH), 401, "invalid_api_key")
    assert "Inference keys" in error["message"]


def test_no_key_is_refused(client, db):
    assert_error(client.get(PATH), 401, "invalid_api_key")


def test_is_read_only(api):
    response = api.post(PATH, {"name": "Renamed"})
    assert_error(response, 405, "method_not_allowed")
