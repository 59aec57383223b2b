"""Monthly statements (issue 16, item 5): they reconcile to the ledger to the micro-credit, with
a refund and a redemption in the month; pages and PDF for those who may read them; the e-mail on
the 1st goes out once to those who opted in."""

import json
from datetime import UTC as utc
from datetime import date, datetime, timedelta

import pytest
from django.core import mail
from django.db.models import Sum

from billing import notifications, redemption, services, statements
from billing.invariants import wallet_problems
from billing.models import LedgerEntry, UsageRecord, Wallet
from generation import routing
from tests.factories import funded_keys

pytestmark = pytest.mark.django_db
M = 1_000_000
CHAT = {"model": "gpt-4.1", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}


def call(client, key, model="gpt-4.1"):
    body = {**CHAT, "model": model}
    response = client.post("/v1/chat/completions", data=json.dumps(body),
                           content_type="application/json", headers={"x-api-key": key})  # fmt: skip
    assert response.status_code == 200, response.content[:300]


def move_everything_to(account, moment: datetime) -> None:
    """What happened so far happened at ``moment`` instead (ledger and usage alike)."""
    LedgerEntry.objects.filter(account=account).update(created_at=moment)
    UsageRecord.objects.filter(account=account).update(created_at=moment)


def ledger_sum(account, before: datetime | None = None) -> int:
    entries = LedgerEntry.objects.filter(account=account)
    if before is not None:
        entries = entries.filter(created_at__lt=before)
    return entries.aggregate(total=Sum("amount"))["total"] or 0


@pytest.fixture
def history(world, client):
    """Last month: a top-up, three calls on two models, a redeemed code and a refund. This month:
    one call and a top-up."""
    routing.forget()
    keys = funded_keys(world.account, world.owner, credits=20)
    for model in ("gpt-4.1", "gpt-4.1", "gpt-4.1-mini"):
        call(client, keys["default"], model)
    _, (code,) = redemption.redemption_batch_create(
        name="promo", amount=3 * M, count=1, expires_at=None, actor=world.owner
    )
    redemption.redeem_code(account=world.account, code=code, actor=world.owner)
    services.refund(account=world.account, amount=M // 2, reference="req_refunded",
                    description="Refund for a failed batch job")  # fmt: skip
    this_month = statements.current_month(world.account)
    last_month = statements.previous_month(this_month)
    move_everything_to(world.account, datetime(last_month.year, last_month.month, 15, tzinfo=utc))
    call(client, keys["default"])
    services.wallet_top_up(account=world.account, amount=5 * M, reference="pay_2")
    routing.forget()
    return last_month, this_month


def test_a_statement_with_a_refund_and_a_redemption_reconciles_to_the_ledger(world, history):
    last_month, this_month = history
    statement = statements.statement_for(world.account, last_month)
    lines = {kind: amount for kind, _, amount in statement.lines}
    assert statement.opening == 0
    assert lines["topup"] == 20 * M and lines["redeem"] == 3 * M and lines["refund"] == M // 2
    assert lines["charge"] < 0 and lines["admin_credit"] == lines["admin_debit"] == 0
    assert statement.closing == statement.opening + sum(lines.values())
    assert statement.closing == ledger_sum(world.account, before=statement.end)
    # Charges by model explain every charge: they come from the usage rows the entries charged.
    by_model = {row.model: (row.calls, row.credits) for row in statement.by_model}
    assert set(by_model) == {"gpt-4.1", "gpt-4.1-mini"} and by_model["gpt-4.1"][0] == 2
    assert sum(credits for _, credits in by_model.values()) == statement.charged
    assert statement.other_charges == 0
    assert [entry.kind for entry in statement.entries] == ["topup", "redeem", "refund"]
    assert statement.complete

    current = statements.statement_for(world.account, this_month)
    assert current.opening == statement.closing and not current.complete
    assert current.closing == Wallet.objects.get(account=world.account).balance
    assert sum(row.calls for row in current.by_model) == 1
    assert wallet_problems(world.account.pk) == []


def test_months_run_from_the_first_entry_to_now_and_the_future_has_none(world, history):
    last_month, this_month = history
    assert statements.statement_months(world.account) == [this_month, last_month]
    with pytest.raises(statements.MonthError):
        statements.statement_for(world.account, date(this_month.year + 1, 1, 1))
    with pytest.raises(statements.MonthError):
        statements.parse_month("2026-13")


def test_a_charge_no_usage_row_explains_is_shown_so_the_statement_still_adds_up(world, history):
    last_month, _ = history
    start, end = statements.month_bounds(last_month, world.account.zone)
    entry = LedgerEntry.objects.filter(
        account=world.account, kind="charge", created_at__gte=start, created_at__lt=end
    ).first()
    UsageRecord.objects.filter(batch=entry.reference).delete()
    UsageRecord.objects.filter(batch="", request_id=entry.reference).delete()
    statement = statements.statement_for(world.account, last_month)
    assert statement.other_charges == -entry.amount > 0
    assert sum(r.credits for r in statement.by_model) + statement.other_charges == statement.charged


# --- Pages ---------------------------------------------------------------------------------------


def test_owners_read_the_list_the_page_and_the_pdf(client_for, world, history):
    last_month, _ = history
    client = client_for(world.owner)
    listing = client.get("/wallet/statements/")
    assert listing.status_code == 200
    assert last_month.strftime("%B %Y") in listing.content.decode()
    slug = last_month.strftime("%Y-%m")
    page = client.get(f"/wallet/statements/{slug}/")
    assert page.status_code == 200
    statement = statements.statement_for(world.account, last_month)
    text = page.content.decode()
    assert "Opening balance" in text and "Refunds" in text and "gpt-4.1-mini" in text
    pdf = client.get(f"/wallet/statements/{slug}.pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert f"{world.account.public_id}-{slug}.pdf" in pdf["Content-Disposition"]
    assert statement.closing  # the page showed a real month


def test_finance_reads_statements(client_for, world):
    assert client_for(world.member("finance")).get("/wallet/statements/").status_code == 200


@pytest.mark.parametrize("role", ["admin", "developer", "viewer"])
def test_other_roles_cannot_read_statements(client_for, world, role):
    client = client_for(getattr(world, role))
    assert client.get("/wallet/statements/").status_code == 403
    assert (
        client.get(
            f"/wallet/statements/{statements.current_month(world.account):%Y-%m}.pdf"
        ).status_code
        == 403
    )


def test_a_month_that_is_not_one_is_a_404(client_for, world):
    client = client_for(world.owner)
    assert client.get("/wallet/statements/2026-13/").status_code == 404
    assert client.get("/wallet/statements/2999-01/").status_code == 404
    assert client.get("/wallet/statements/junk.pdf").status_code == 404


def test_an_outsider_sees_their_own_accounts_statement_only(client_for, world, history):
    last_month, _ = history
    page = client_for(world.outsider).get(f"/wallet/statements/{last_month:%Y-%m}/")
    assert page.status_code == 200
    assert world.account.name not in page.content.decode()
    assert "Other Co" in page.content.decode()


# --- E-mail on the 1st ---------------------------------------------------------------------------


def test_statements_are_emailed_once_on_the_first_to_those_who_opted_in(client_for, world):
    client = client_for(world.owner)
    response = client.post("/wallet/statements/emails/", {"statement_emails": "on"})
    assert response.status_code == 200
    assert Wallet.objects.get(account=world.account).statement_emails
    this_month = statements.current_month(world.account)
    assert notifications.statement_emails_send() == 0  # this month's goes out when it ends
    first = datetime(this_month.year, this_month.month, 1, tzinfo=utc) + timedelta(days=32)
    first = first.replace(day=1, hour=0, minute=5)
    assert notifications.statement_emails_send(now=first) == 1
    (message,) = mail.outbox
    assert sorted(message.to) == sorted([world.owner.email, world.member("finance").email])
    assert this_month.strftime("%B %Y") in message.subject
    ((filename, content, mimetype),) = message.attachments
    assert filename.endswith(f"{this_month:%Y-%m}.pdf") and content.startswith(b"%PDF")
    assert mimetype == "application/pdf"
    assert notifications.statement_emails_send(now=first) == 0  # once per month
    assert len(mail.outbox) == 1


def test_no_email_without_opting_in_and_none_after_opting_out(client_for, world):
    client = client_for(world.owner)
    client.post("/wallet/statements/emails/", {"statement_emails": "on"})
    client.post("/wallet/statements/emails/", {"statement_emails": "off"})
    later = datetime.now(utc) + timedelta(days=40)
    assert notifications.statement_emails_send(now=later) == 0
    assert mail.outbox == []
    assert client_for(world.admin).post(
        "/wallet/statements/emails/", {"statement_emails": "on"}
    ).status_code == 403  # fmt: skip


def test_a_failed_send_gives_the_month_back_for_the_next_run(client_for, world, monkeypatch):
    client_for(world.owner).post("/wallet/statements/emails/", {"statement_emails": "on"})
    later = datetime.now(utc) + timedelta(days=40)

    def refuse(self, fail_silently=False):
        raise ConnectionRefusedError("smtp down")

    with monkeypatch.context() as patched:
        patched.setattr("django.core.mail.EmailMessage.send", refuse)
        with pytest.raises(ConnectionRefusedError):
            notifications.statement_emails_send(now=later)
    assert notifications.statement_emails_send(now=later) == 1
    assert len(mail.outbox) == 1


def test_months_are_the_accounts_time_zones(world):
    world.account.time_zone = "Europe/Berlin"  # UTC+1 in winter
    world.account.save(update_fields=["time_zone"])
    entry = services.wallet_top_up(account=world.account, amount=7 * M, reference="pay_tz")
    # 31 October 23:30 UTC is 1 November 00:30 in Berlin: November's.
    LedgerEntry.objects.filter(pk=entry.pk).update(
        created_at=datetime(2026, 10, 31, 23, 30, tzinfo=utc)
    )
    november = statements.statement_for(world.account, date(2026, 11, 1))
    october = statements.statement_for(world.account, date(2026, 10, 1))
    assert [e.reference for e in november.entries] == ["pay_tz"]
    assert october.entries == [] and october.closing == 0 and november.opening == 0
    assert november.zone == "Europe/Berlin" and november.last_day == date(2026, 11, 30)


# --- Per project ---------------------------------------------------------------------------------


def test_project_statements_add_up_to_the_accounts_charges(client_for, world, history):
    from accounts.services import project_default

    last_month, _ = history
    statement = statements.statement_for(world.account, last_month)
    default = project_default(world.account)
    assert [(row.project_id, row.calls) for row in statement.by_project] == [(default.public_id, 3)]
    assert sum(row.credits for row in statement.by_project) == statement.charged
    share = statements.project_statement_for(default, last_month)
    assert share.charged == statement.charged
    assert sum(row.credits for row in share.by_key) == share.charged

    client = client_for(world.owner)
    slug = last_month.strftime("%Y-%m")
    page = client.get(f"/wallet/statements/{slug}/projects/{default.public_id}/")
    assert page.status_code == 200 and "By key" in page.text
    assert (
        f"/wallet/statements/{slug}/projects/{default.public_id}/"
        in client.get(f"/wallet/statements/{slug}/").text
    )  # the account's statement links to it
    pdf = client.get(f"/wallet/statements/{slug}/projects/{default.public_id}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert default.public_id in pdf["Content-Disposition"]


def test_another_accounts_project_statement_is_a_404_and_developers_get_a_403(client_for, world):
    from accounts.services import project_default

    theirs = project_default(world.outsider_account)
    month = f"{statements.current_month(world.account):%Y-%m}"
    path = f"/wallet/statements/{month}/projects/{theirs.public_id}/"
    assert client_for(world.owner).get(path).status_code == 404
    ours = project_default(world.account)
    mine = f"/wallet/statements/{month}/projects/{ours.public_id}/"
    assert client_for(world.developer).get(mine).status_code == 403
