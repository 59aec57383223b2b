"""Staff credit and debit wallets (audited) and generate redemption codes as a CSV."""

import csv
import io

import pytest
from django.urls import reverse

from billing import errors, redemption, services
from billing.models import LedgerEntry, RedemptionCode, Wallet
from tests.factories import UserFactory, fund

pytestmark = pytest.mark.django_db
M = 1_000_000


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True, is_superuser=True, email="staff@bytespike.test")
    client.force_login(user)
    return client, user


def test_staff_credit_and_debit_are_audited(staff, world):
    client, user = staff
    fund(world.account, 5)
    wallet = Wallet.objects.get(account=world.account)
    url = reverse("admin:billing_wallet_adjust", args=[wallet.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"direction": "credit", "amount": "2.5", "note": "goodwill"})
    assert response.status_code == 302
    entry = LedgerEntry.objects.get(kind="admin_credit")
    assert (entry.amount, entry.created_by, entry.description) == (2_500_000, user, "goodwill")
    assert world.account.audit_events.filter(action="wallet.admin_credit", actor=user).exists()
    too_much = client.post(url, {"direction": "debit", "amount": "100", "note": "oops"})
    assert too_much.status_code == 200 and "available" in too_much.text
    for bad in ["-1", "0", "abc", "0.0000001"]:
        page = client.post(url, {"direction": "credit", "amount": bad, "note": "x"})
        assert page.status_code == 200, bad
    assert Wallet.objects.get(account=world.account).balance == 7_500_000


def test_wallet_adjust_needs_staff(client, world):
    client.force_login(world.owner)
    wallet = services.wallet_open(account=world.account)
    response = client.get(reverse("admin:billing_wallet_adjust", args=[wallet.pk]))
    assert response.status_code == 302


def test_a_batch_answers_with_its_codes_once_and_they_redeem(staff, world):
    client, _ = staff
    response = client.post(
        reverse("admin:billing_redemptionbatch_add"),
        {"name": "Launch promo", "amount_credits": "10", "count": "3", "expires_at_0": "",
         "expires_at_1": ""},
    )  # fmt: skip
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 3 and {row["credits"] for row in rows} == {"10.00"}
    stored = " ".join(RedemptionCode.objects.values_list("digest", flat=True))
    assert all(row["code"] not in stored for row in rows)
    redemption.redeem_code(account=world.account, code=rows[0]["code"].lower(), actor=world.owner)
    assert Wallet.objects.get(account=world.account).balance == 10 * M
    with pytest.raises(errors.RedemptionError, match="already been used"):
        redemption.redeem_code(account=world.account, code=rows[0]["code"], actor=world.owner)
    with pytest.raises(errors.RedemptionError, match="not valid"):
        redemption.redeem_code(account=world.account, code="BYTS-NOPE", actor=world.owner)


def test_expired_codes_do_not_redeem(world):
    from datetime import timedelta

    from django.utils import timezone

    _, (code,) = redemption.redemption_batch_create(
        name="old", amount=M, count=1, expires_at=timezone.now() - timedelta(days=1),
        actor=world.owner,
    )  # fmt: skip
    with pytest.raises(errors.RedemptionError, match="expired"):
        redemption.redeem_code(account=world.account, code=code, actor=world.owner)
