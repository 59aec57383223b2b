"""Console billing pages: the dashboard, the wallet (ledger, redemption codes, the low-balance
threshold), the low-balance banner, and spend on the key pages. Every page for each role."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from billing import holds, redemption, services
from billing.models import LedgerEntry, LedgerKind, Wallet
from billing.usage import UsageFacts
from tests.factories import AIModelFactory, RoutingGroupFactory, fund, issue_key

pytestmark = pytest.mark.django_db

M = 1_000_000
HTMX = {"HTTP_HX_REQUEST": "true"}
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


# --- Helpers shared with test_usage_page ---------------------------------------------------


@pytest.fixture(autouse=True)
def _wallets(world):
    """Accounts made by the factory have no wallet row yet; account_create would open one."""
    services.wallet_open(account=world.account)
    services.wallet_open(account=world.outsider_account)


@pytest.fixture
def group(db):
    return RoutingGroupFactory(slug="default", name="Default")


@pytest.fixture
def model(group):
    return AIModelFactory(slug="gpt-4.1", display_name="GPT-4.1", groups=[group])


_counter = iter(range(10**9))


def bill(key, model, charge: int, *, at=None, **usage) -> str:
    """A billed call through the real path: hold, then settle (optionally at a past time)."""
    reference = f"req_test_{next(_counter)}"
    holds.hold_place(
        account_id=key.account_id, reference=reference, amount=charge, api_key_id=key.pk
    )
    usage.setdefault("input_tokens", 100)
    usage.setdefault("output_tokens", 20)
    holds.hold_settle(
        reference=reference,
        charge=charge,
        usage=UsageFacts(
            model_id=model.pk,
            family=model.family,
            protocol="openai",
            api_key_id=key.pk,
            group_id=key.group_id,
            **usage,
        ),
        at=at,
    )
    return reference


def text_of(html: str) -> str:
    """The visible text of some HTML, whitespace collapsed (for "1.20 of 25.00" checks)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def section(html: str, element_id: str) -> str:
    """The element with ``element_id`` up to the end of the document (enough to search in)."""
    start = html.index(f'id="{element_id}"')
    return html[start:]


def ledger_rows(html: str) -> str:
    ledger = section(html, "ledger")
    return text_of(ledger[ledger.index("<tbody>") : ledger.index("</tbody>")])


ROLES = list(Role)


# --- Dashboard -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_member_sees_balance_spend_and_the_daily_chart(world, client_for, group, model, role):
    fund(world.account, 100)
    key, _ = issue_key(world.account, group, name="Checkout")
    bill(key, model, 1_250_000)
    bill(key, model, 2 * M, at=timezone.now() - timedelta(days=3))
    response = client_for(world.member(role)).get(reverse("console:dashboard"))
    assert response.status_code == 200
    html = response.text
    assert 'id="dashboard-available">96.75' in html
    assert 'id="spend-today">1.25<' in html
    assert 'id="spend-week">3.25<' in html and 'id="spend-month">3.25<' in html
    chart = section(html, "spend-chart")
    assert 'role="img"' in chart and "<title" in chart
    assert 'class="visually-hidden"' in chart and "<caption>" in chart
    assert "Checkout" in chart and "series-0" in chart
    assert 'style="' not in html  # the CSP forbids inline styles
    assert "Recent requests" in html and "gpt-4.1" in html
    assert "Welcome to ByteSpike" not in html


def test_dashboard_shows_first_steps_until_the_first_billed_call(world, client_for, group):
    client = client_for(world.owner)
    html = client.get(reverse("console:dashboard")).text
    assert "Welcome to ByteSpike" in html and "No spend in the last 30 days" in html
    assert html.count("is-done") == 0
    issue_key(world.account, group, name="First")
    fund(world.account, 5)
    html = client.get(reverse("console:dashboard")).text
    assert html.count('class="is-done"') == 2


def test_dashboard_is_about_the_current_account_only(world, client_for, group, model):
    fund(world.account, 100)
    key, _ = issue_key(world.account, group, name="Acme secret project")
    bill(key, model, 3 * M)
    fund(world.outsider_account, 7)
    html = client_for(world.outsider).get(reverse("console:dashboard")).text
    assert 'id="dashboard-available">7.00' in html
    assert "Acme secret project" not in html


def test_dashboard_chart_escapes_key_names(world, client_for, group, model):
    fund(world.account, 10)
    key, _ = issue_key(world.account, group, name=XSS)
    bill(key, model, M)
    html = client_for(world.owner).get(reverse("console:dashboard")).text
    assert XSS not in html
    chart = section(html, "spend-chart")
    assert chart.count(ESCAPED) >= 3  # bar title, legend, table header


# --- Wallet page -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_member_reads_the_wallet_but_only_owners_and_finance_get_the_forms(
    world, client_for, role
):
    fund(world.account, 40)
    holds.hold_place(account_id=world.account.pk, reference="req_open", amount=3 * M)
    response = client_for(world.member(role)).get(reverse("billing:wallet"))
    assert response.status_code == 200
    html = response.text
    assert 'id="wallet-available">37.00' in html
    assert 'id="wallet-balance">40.00' in html and 'id="wallet-held">3.00' in html
    assert "Top-up" in html and "+40.00" in html
    money = role in (Role.OWNER, Role.FINANCE)
    assert ("Redeem a code" in html) is money
    assert (reverse("billing:threshold") in html) is money
    assert ("Only owners and finance can redeem codes" in html) is not money
    assert 'style="' not in html


def test_the_wallet_of_another_account_is_never_shown(world, client_for):
    fund(world.account, 40, reference="acme-payment")
    html = client_for(world.outsider).get(reverse("billing:wallet")).text
    assert "acme-payment" not in html
    assert 'id="wallet-balance">0.00' in html


def test_an_account_without_a_wallet_row_shows_zeroes(world, client_for):
    Wallet.objects.filter(account=world.account).delete()
    response = client_for(world.viewer).get(reverse("billing:wallet"))
    assert response.status_code == 200
    assert 'id="wallet-available">0.00' in response.text


def test_ledger_rows_show_kind_reference_signed_amount_and_balance_after(
    world, client_for, group, model
):
    fund(world.account, 10, reference="pay_42")
    key, _ = issue_key(world.account, group)
    reference = bill(key, model, 1_250_000)
    html = client_for(world.viewer).get(reverse("billing:wallet")).text
    ledger = ledger_rows(html)
    assert "Charge" in ledger and reference in ledger and "\N{MINUS SIGN}1.2500 8.7500" in ledger
    assert "Top-up" in ledger and "pay_42" in ledger and "+10.0000 10.0000" in ledger
    # Every call holds before it settles: holds are in the ledger, shown on request.
    assert "Hold" not in ledger
    everything = client_for(world.viewer).get(reverse("billing:wallet"), {"kind": "all"}).text
    assert "Hold" in ledger_rows(everything) and "held +1.25" in ledger_rows(everything)


def test_ledger_filters_by_kind_and_dates_in_the_url(world, client_for):
    fund(world.account, 10, reference="pay_new")
    old = fund(world.account, 5, reference="pay_old")
    LedgerEntry.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    services.refund(account=world.account, amount=M, reference="refund_1")
    client = client_for(world.owner)
    url = reverse("billing:wallet")
    refunds = client.get(url, {"kind": "refund"}).text
    assert "refund_1" in refunds and "pay_new" not in refunds
    assert '<option value="refund" selected>' in refunds
    since = (timezone.now() - timedelta(days=7)).date().isoformat()
    recent = client.get(url, {"since": since}).text
    assert "pay_new" in recent and "pay_old" not in recent
    until = (timezone.now() - timedelta(days=30)).date().isoformat()
    older = client.get(url, {"until": until}).text
    assert "pay_old" in older and "pay_new" not in older


def test_a_date_as_until_includes_that_whole_day(world, client_for):
    fund(world.account, 10, reference="pay_today")
    today = timezone.now().date().isoformat()
    html = client_for(world.owner).get(reverse("billing:wallet"), {"until": today}).text
    assert "pay_today" in ledger_rows(html)


def test_ledger_filter_through_htmx_answers_the_fragment_and_a_clean_url(world, client_for):
    fund(world.account, 10)
    response = client_for(world.owner).get(
        reverse("billing:wallet"),
        {"kind": "topup", "since": "", "until": ""},
        HTTP_HX_TARGET="ledger",
        HTTP_HX_TRIGGER="ledger-filters",
        **HTMX,
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith("<section") and "<html" not in response.text
    assert response.headers["HX-Push-Url"] == reverse("billing:wallet") + "?kind=topup"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "bonus"}, "kind is one of"),
        ({"since": "last week"}, "Use a date"),
        ({"until": "2026-13-40"}, "Use a date"),
    ],
)
def test_bad_ledger_filters_are_refused_with_422(world, client_for, params, message):
    response = client_for(world.owner).get(reverse("billing:wallet"), params)
    assert response.status_code == 422
    assert message in response.text
    assert 'aria-invalid="true"' in response.text


def test_ledger_pages_by_25_and_keeps_the_filter_in_the_paging_links(world, client_for):
    for n in range(30):
        fund(world.account, 1, reference=f"pay_{n:02}")
    client = client_for(world.owner)
    first = client.get(reverse("billing:wallet"), {"kind": "topup"}).text
    assert "Page 1 of 2" in first
    assert first.count('class="ledger-topup"') == 25
    assert "?kind=topup&amp;page=2" in first
    second = client.get(reverse("billing:wallet"), {"kind": "topup", "page": 2}).text
    assert second.count('class="ledger-topup"') == 5 and "pay_00" in second


# --- Redemption codes ------------------------------------------------------------------------


@pytest.fixture
def codes(world):
    _, codes = redemption.redemption_batch_create(
        name="Launch promo", amount=25 * M, count=2, expires_at=None, actor=world.owner
    )
    return codes


def redeem(client, code, headers=HTMX):
    return client.post(reverse("billing:redeem"), {"code": code}, **headers)


def test_owner_redeems_a_code_once(world, client_for, codes):
    client = client_for(world.owner)
    response = redeem(client, codes[0].lower())  # codes are read case-insensitively
    assert response.status_code == 200
    html = response.text
    assert "Added 25.00 credits." in html
    assert 'id="wallet-summary"' in html and 'hx-swap-oob="true"' in html
    assert 'id="wallet-available">25.00' in html
    assert "wallet-changed" in response.headers["HX-Trigger"]
    assert Wallet.objects.get(account=world.account).balance == 25 * M
    again = redeem(client, codes[0])
    assert again.status_code == 422
    assert "already been used" in again.text
    assert Wallet.objects.get(account=world.account).balance == 25 * M
    assert LedgerEntry.objects.filter(account=world.account, kind=LedgerKind.REDEEM).count() == 1


def test_redeeming_without_javascript_redirects_with_a_message(world, client_for, codes):
    client = client_for(world.owner)
    response = redeem(client, codes[1], headers={})
    assert response.status_code == 302 and response.url == reverse("billing:wallet")
    page = client.get(response.url).text
    assert "Added 25.00 credits." in page and "Launch promo" in page
    refused = redeem(client, codes[1], headers={})
    assert refused.status_code == 422 and "already been used" in refused.text
    assert "<html" in refused.text  # the whole page, with the form's error


@pytest.mark.parametrize(
    ("code", "message"),
    [("BYTS-0000-0000-0000-0000", "not valid"), ("", "This field is required.")],
)
def test_unknown_or_empty_codes_are_refused_inline(world, client_for, code, message):
    response = redeem(client_for(world.owner), code)
    assert response.status_code == 422
    assert message in response.text and 'id="wallet-redeem"' in response.text
    assert "<html" not in response.text


def test_an_expired_code_is_refused(world, client_for):
    _, codes = redemption.redemption_batch_create(
        name="Old promo",
        amount=5 * M,
        count=1,
        expires_at=timezone.now() - timedelta(days=1),
        actor=world.owner,
    )
    response = redeem(client_for(world.owner), codes[0])
    assert response.status_code == 422 and "expired" in response.text


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.VIEWER])
def test_only_owners_redeem_codes(world, client_for, codes, role):
    response = redeem(client_for(world.member(role)), codes[0])
    assert response.status_code == 403
    assert Wallet.objects.get(account=world.account).balance == 0


def test_redeeming_needs_login(db, client, codes):
    response = client.post(reverse("billing:redeem"), {"code": codes[0]})
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


# --- Low-balance threshold -------------------------------------------------------------------


def set_threshold(client, value, headers=HTMX):
    return client.post(reverse("billing:threshold"), {"threshold": value}, **headers)


def test_owner_sets_and_turns_off_the_threshold(world, client_for):
    fund(world.account, 20)
    client = client_for(world.owner)
    response = set_threshold(client, "12.5")
    assert response.status_code == 200
    assert "falls below 12.50 credits" in response.text
    assert Wallet.objects.get(account=world.account).low_balance_threshold == 12_500_000
    assert 'id="wallet-threshold-value">12.50' in response.text  # the summary, out of band
    assert client.get(reverse("billing:wallet")).text.count('value="12.5"') == 1
    response = set_threshold(client, "0")
    assert response.status_code == 200 and "alerts are off" in response.text
    assert Wallet.objects.get(account=world.account).low_balance_threshold == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "cannot be negative"),
        ("1.0000001", "at most six decimal places"),
        ("1e12", "too large"),
        ("99999999999999", "too large"),
        ("ten", "Enter an amount in credits"),
        ("NaN", "finite"),
        ("", "Enter an amount in credits"),
    ],
)
def test_threshold_values_are_validated(world, client_for, value, message):
    response = set_threshold(client_for(world.owner), value)
    assert response.status_code == 422
    assert message in response.text and 'aria-invalid="true"' in response.text
    assert Wallet.objects.get(account=world.account).low_balance_threshold == 0


def test_threshold_accepts_thousands_separators(world, client_for):
    set_threshold(client_for(world.owner), "1,000")
    assert Wallet.objects.get(account=world.account).low_balance_threshold == 1000 * M


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.VIEWER])
def test_only_owners_change_the_threshold(world, client_for, role):
    response = set_threshold(client_for(world.member(role)), "5")
    assert response.status_code == 403
    assert Wallet.objects.get(account=world.account).low_balance_threshold == 0


def test_billing_forms_enforce_csrf(world, codes):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)
    assert client.post(reverse("billing:redeem"), {"code": codes[0]}).status_code == 403
    assert client.post(reverse("billing:threshold"), {"threshold": "5"}).status_code == 403
    assert Wallet.objects.get(account=world.account).balance == 0
    # With the token from the page, the same post goes through.
    page = client.get(reverse("billing:wallet")).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        reverse("billing:threshold"), {"threshold": "5", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302


# --- The low-balance banner ------------------------------------------------------------------

BANNER = "Available balance is below your alert threshold"


def make_low(world):
    fund(world.account, 3)
    Wallet.objects.filter(account=world.account).update(low_balance_threshold=5 * M)


@pytest.mark.parametrize(
    "url_name",
    ["console:dashboard", "keys:keys", "billing:usage", "billing:wallet", "accounts:team"],
)
def test_banner_shows_on_console_pages_while_the_wallet_is_low(world, client_for, url_name):
    make_low(world)
    html = client_for(world.viewer).get(reverse(url_name)).text
    assert BANNER in html
    banner = section(html, "low-balance-banner")[:1500]
    assert BANNER in banner and f'href="{reverse("billing:wallet")}"' in banner


@pytest.mark.parametrize(("balance", "threshold"), [(10, 5), (3, 0), (5, 5)])
def test_no_banner_when_the_wallet_is_not_low(world, client_for, balance, threshold):
    fund(world.account, balance)
    Wallet.objects.filter(account=world.account).update(low_balance_threshold=threshold * M)
    assert BANNER not in client_for(world.owner).get(reverse("console:dashboard")).text


def test_banner_is_about_the_current_account(world, client_for):
    make_low(world)
    assert BANNER not in client_for(world.outsider).get(reverse("console:dashboard")).text


def test_banner_costs_one_query_and_none_outside_the_console(world, client_for, group):
    make_low(world)
    client = client_for(world.owner)
    wallet_table = Wallet._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        assert BANNER in client.get(reverse("keys:keys")).text
    assert sum(wallet_table in q["sql"] for q in queries.captured_queries) == 1
    # A fragment for htmx draws no layout, so it asks nothing about the wallet.
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("keys:key-create"), **HTMX)
    assert response.status_code == 200 and BANNER not in response.text
    assert not any(wallet_table in q["sql"] for q in queries.captured_queries)
    client.logout()
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("account_login"))
    assert not any(wallet_table in q["sql"] for q in queries.captured_queries)


def test_changing_the_threshold_updates_the_banner_in_place(world, client_for):
    fund(world.account, 3)
    client = client_for(world.owner)
    response = set_threshold(client, "5")
    assert BANNER in response.text
    assert 'id="low-balance-banner" class="banner-slot" hx-swap-oob="true"' in response.text
    response = set_threshold(client, "1")
    assert BANNER not in response.text and 'id="low-balance-banner"' in response.text


def test_redeeming_above_the_threshold_clears_the_banner(world, client_for, codes):
    make_low(world)
    response = redeem(client_for(world.owner), codes[0])
    assert response.status_code == 200
    assert 'id="low-balance-banner"' in response.text and BANNER not in response.text


# --- Spend on the key pages ------------------------------------------------------------------


def test_keys_list_shows_spend_30_days_and_quota_used(world, client_for, group, model):
    fund(world.account, 100)
    capped, _ = issue_key(world.account, group, name="Capped", quota=25 * M)
    free, _ = issue_key(world.account, group, name="Free")
    bill(capped, model, 1_200_000)
    bill(capped, model, 3 * M, at=timezone.now() - timedelta(days=45))  # lifetime only
    bill(free, model, 500_000)
    html = client_for(world.viewer).get(reverse("keys:keys")).text
    assert "Spend 30 d" in html and "Quota used" in html
    capped_row = text_of(section(html, f"key-row-{capped.public_id}").split("</tr>")[0])
    assert "1.20 4.20 of 25.00" in capped_row
    free_row = text_of(section(html, f"key-row-{free.public_id}").split("</tr>")[0])
    assert "0.50 0.50 of Unlimited" in free_row


def test_keys_list_spend_costs_the_same_queries_whatever_the_number_of_keys(
    world, client_for, group, model
):
    for n in range(6):
        key, _ = issue_key(world.account, group, name=f"Key {n}")
        fund(world.account, 1)
        bill(key, model, 100_000)
    client = client_for(world.owner)
    client.get(reverse("keys:keys"))
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("keys:keys"))
    for n in range(6, 12):
        issue_key(world.account, group, name=f"Key {n}")
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("keys:keys"))
    assert len(many.captured_queries) == len(few.captured_queries)


def test_key_detail_shows_its_usage_and_links_to_the_report(world, client_for, group, model):
    fund(world.account, 100)
    key, _ = issue_key(world.account, group, name="Checkout", quota=10 * M)
    other, _ = issue_key(world.account, group, name="Other")
    bill(key, model, 2 * M)
    bill(key, model, M, at=timezone.now() - timedelta(days=2))
    bill(other, model, 7 * M)
    html = client_for(world.viewer).get(reverse("keys:key-detail", args=[key.public_id])).text
    usage = section(html, "key-usage")
    assert 'id="key-spend-30d">3.00' in usage and 'id="key-spend-total">3.00' in usage
    assert "3.00 of 10.00" in text_of(usage)
    assert f'href="{reverse("billing:usage")}?api_key_id={key.public_id}"' in usage
    assert 'role="img"' in usage and "7.00" not in usage


def test_revoking_on_the_key_page_keeps_its_usage_card(world, client_for, group, model):
    fund(world.account, 10)
    key, _ = issue_key(world.account, group, name="Checkout")
    bill(key, model, 2 * M)
    response = client_for(world.owner).post(
        reverse("keys:key-revoke", args=[key.public_id]), HTTP_HX_TARGET="key-detail", **HTMX
    )
    assert response.status_code == 200 and "Key revoked." in response.text
    assert 'id="key-spend-30d">2.00' in response.text


def test_key_detail_usage_is_scoped_to_the_account(world, client_for, group):
    key, _ = issue_key(world.account, group, name="Acme key")
    url = reverse("keys:key-detail", args=[key.public_id])
    assert client_for(world.outsider).get(url).status_code == 404
