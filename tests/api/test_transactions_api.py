"""GET /api/v1/billing/transactions: the account's ledger, newest first, filtered by kind and
time, paged, in signed credits; never another account's entries."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from ulid import ULID

from billing import holds, services
from billing.models import LedgerEntry
from billing.usage import UsageFacts
from tests.api.conftest import ApiClient, assert_error
from tests.factories import fund, issue_key

M = 1_000_000
PATH = "/api/v1/billing/transactions"


@pytest.fixture
def ledger(world, group):
    """Acme: a top-up of 10, a call held at 3 and settled at 1.25, a call held at 2 and released
    (failed calls are free). Other Co: a top-up of 7."""
    key, _ = issue_key(world.account, group)
    model = group.models.get()
    fund(world.account, 10, reference="pay_1")
    holds.hold_place(account_id=world.account.pk, reference="req_ok", amount=3 * M)
    holds.hold_settle(
        reference="req_ok",
        charge=1_250_000,
        usage=UsageFacts(model_id=model.pk, family="text", protocol="openai", api_key_id=key.pk),
    )
    holds.hold_place(account_id=world.account.pk, reference="req_failed", amount=2 * M)
    holds.hold_release(reference="req_failed")
    fund(world.outsider_account, 7, reference="pay_theirs")
    # Spread the entries a minute apart, oldest first, so their order is unambiguous.
    now = timezone.now()
    entries = LedgerEntry.objects.filter(account=world.account).order_by("id")
    for age, entry in enumerate(reversed(entries)):
        LedgerEntry.objects.filter(pk=entry.pk).update(created_at=now - timedelta(minutes=age))
    return world


def test_lists_the_ledger_newest_first_in_signed_credits(api, ledger):
    response = api.get(PATH)

    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["page"], body["page_size"]) == (5, 1, 50)
    rows = [
        (
            item["kind"],
            item["amount"],
            item["held_change"],
            item["balance_after"],
            item["held_after"],
            item["reference"],
        )
        for item in body["items"]
    ]
    assert rows == [
        ("release", 0, -2, 8.75, 0, "req_failed"),
        ("hold", 0, 2, 8.75, 2, "req_failed"),
        ("charge", -1.25, -3, 8.75, 0, "req_ok"),
        ("hold", 0, 3, 10, 3, "req_ok"),
        ("topup", 10, 0, 10, 0, "pay_1"),
    ]
    newest = body["items"][0]
    assert set(newest) == {
        "id",
        "created_at",
        "kind",
        "amount",
        "held_change",
        "balance_after",
        "held_after",
        "reference",
        "description",
    }
    assert newest["created_at"].endswith("Z") and newest["description"] == ""


def test_ids_are_opaque_stable_and_unique(api, ledger):
    first = [item["id"] for item in api.get(PATH).json()["items"]]
    again = [item["id"] for item in api.get(PATH).json()["items"]]

    assert first == again
    assert len(set(first)) == 5
    assert all(id_.startswith("txn_") and len(id_) == 30 for id_ in first)
    # A ULID whose time is the entry's, like every other public id; not the row number.
    times = [item["created_at"] for item in api.get(PATH).json()["items"]]
    for id_, created_at in zip(first, times, strict=True):
        moment = datetime.fromisoformat(created_at)
        assert ULID.from_str(id_.removeprefix("txn_")).datetime == moment.replace(
            microsecond=moment.microsecond // 1000 * 1000
        )


@pytest.mark.parametrize(
    ("kind", "references"),
    [
        ("topup", ["pay_1"]),
        ("hold", ["req_failed", "req_ok"]),
        ("charge", ["req_ok"]),
        ("release", ["req_failed"]),
        ("refund", []),
    ],
)
def test_filters_by_kind(api, ledger, kind, references):
    body = api.get(PATH, {"kind": kind}).json()

    assert [item["reference"] for item in body["items"]] == references
    assert {item["kind"] for item in body["items"]} <= {kind}
    assert body["total"] == len(references)


def test_filters_by_time(world, api, ledger):
    topup = LedgerEntry.objects.get(account=world.account, kind="topup")
    LedgerEntry.objects.filter(pk=topup.pk).update(created_at=datetime(2026, 3, 2, 12, tzinfo=UTC))

    before = api.get(PATH, {"until": "2026-03-02"}).json()
    day = api.get(PATH, {"since": "2026-03-02", "until": "2026-03-02"}).json()
    after = api.get(PATH, {"since": "2026-03-02T12:00:01Z"}).json()

    assert [item["kind"] for item in before["items"]] == ["topup"]
    assert [item["kind"] for item in day["items"]] == ["topup"]
    assert after["total"] == 4 and "topup" not in [item["kind"] for item in after["items"]]


def test_kind_and_time_filters_combine(api, ledger):
    now = timezone.now()
    body = api.get(
        PATH, {"kind": "hold", "since": (now - timedelta(minutes=1, seconds=30)).isoformat()}
    ).json()
    assert [item["reference"] for item in body["items"]] == ["req_failed"]


def test_pages(api, ledger):
    pages = [api.get(PATH, {"page": page, "page_size": 2}).json() for page in (1, 2, 3, 4)]

    assert [[item["kind"] for item in page["items"]] for page in pages] == [
        ["release", "hold"],
        ["charge", "hold"],
        ["topup"],
        [],
    ]
    assert {page["total"] for page in pages} == {5}
    assert [page["page"] for page in pages] == [1, 2, 3, 4]


def test_page_size_of_200_is_the_maximum(api, ledger):
    assert api.get(PATH, {"page_size": 200}).json()["page_size"] == 200


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"page_size": 201}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"kind": "bonus"}, "kind"),
        ({"since": "last week"}, "since"),
        ({"until": "2026-02-30"}, "until"),
        ({"until": "9999-12-31"}, "until"),  # its next day overflowed: a 500 (fuzzing)
    ],
)
def test_bad_parameters_are_refused_naming_the_field(api, query, param):
    assert_error(api.get(PATH, query), 400, "invalid_param", param)


def test_never_shows_another_accounts_entries(api, outsider_api, ledger):
    ours = {item["reference"] for item in api.get(PATH).json()["items"]}
    theirs = outsider_api.get(PATH).json()

    assert "pay_theirs" not in ours
    assert [item["reference"] for item in theirs["items"]] == ["pay_theirs"]
    assert theirs["items"][0]["balance_after"] == 7


def test_empty_ledger(api):
    assert api.get(PATH).json() == {"items": [], "total": 0, "page": 1, "page_size": 50}


def test_an_inference_key_is_refused(world, group, client):
    _, secret = issue_key(world.account, group)
    error = assert_error(ApiClient(client, secret).get(PATH), 401, "invalid_api_key")
    assert "Inference keys" in error["message"]


def test_no_key_is_refused(client, db):
    assert_error(client.get(PATH), 401, "invalid_api_key")


def test_admin_credit_shows_its_note(world, api):
    services.wallet_admin_adjust(
        account=world.account, amount=5 * M, actor=world.owner, note="Goodwill"
    )
    item = api.get(PATH, {"kind": "admin_credit"}).json()["items"][0]
    assert (item["amount"], item["description"]) == (5, "Goodwill")
    assert item["reference"].startswith("admin:")


def test_reference_is_the_request_id_of_a_charge(world, api, group):
    # A billed call's ledger entries point at its request id, which GET /api/v1/usage/records
    # shows too, so a charge can be traced to its request.
    key, _ = issue_key(world.account, group)
    fund(world.account, 1)
    reference = f"req_{uuid.uuid4().hex}"
    holds.hold_place(account_id=world.account.pk, reference=reference, amount=M)
    holds.hold_settle(
        reference=reference,
        charge=1,
        usage=UsageFacts(
            model_id=group.models.get().pk, family="text", protocol="openai", api_key_id=key.pk
        ),
    )
    charge = api.get(PATH, {"kind": "charge"}).json()["items"][0]
    assert (charge["reference"], charge["amount"]) == (reference, -0.000001)
    record = api.get("/api/v1/usage/records").json()["items"][0]
    assert record["request_id"] == reference
