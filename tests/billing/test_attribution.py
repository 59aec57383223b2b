"""Money as money and attribution (issue 17, items 2-4): the account's time zone and the reports
that read it, period presets, key x model views, drill-down links, money columns with a fixed
precision, a ledger that names what each charge paid for, and CSV files that say their filters
and reconcile with the page."""

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Role
from billing import holds
from billing import views as billing_views
from billing.batches import usage_batch_commit
from billing.models import LedgerEntry
from billing.reports import preset_days, usage_filter_from, usage_report
from billing.usage import Charge, UsageFacts
from tests.billing.test_pages import HTMX, bill, ledger_rows, section, text_of
from tests.factories import AIModelFactory, RoutingGroupFactory, fund, issue_key

pytestmark = pytest.mark.django_db

M = 1_000_000
USAGE = reverse("billing:usage")
EXPORT = reverse("billing:usage-export")
WALLET = reverse("billing:wallet")
LEDGER_CSV = reverse("billing:ledger-export")
SETTINGS = reverse("accounts:settings")
TIME_ZONE = reverse("accounts:time-zone")


@pytest.fixture
def catalogue(db):
    group = RoutingGroupFactory(slug="default", name="Default")
    gpt = AIModelFactory(slug="gpt-4.1", display_name="GPT-4.1", groups=[group])
    mini = AIModelFactory(slug="gpt-4.1-mini", display_name="GPT-4.1 mini", groups=[group])
    return group, gpt, mini


@pytest.fixture
def keys(world, catalogue):
    group, _gpt, _mini = catalogue
    fund(world.account, 100, reference="pay_1")
    checkout, _ = issue_key(world.account, group, name="Checkout")
    nightly, _ = issue_key(world.account, group, name="Nightly batch")
    return checkout, nightly


def rows_of(response) -> tuple[list[str], list[list[str]]]:
    """A CSV's first line (its filters in words) and the rows after it."""
    first, *rows = csv.reader(io.StringIO(response.content.decode()))
    return first, rows


def set_zone(account, name: str) -> None:
    account.time_zone = name
    account.save(update_fields=["time_zone"])


def yesterday_in(zone: str) -> date:
    return timezone.now().astimezone(ZoneInfo(zone)).date() - timedelta(days=1)


def at_local(day: date, hour: int, zone: str) -> datetime:
    return datetime(day.year, day.month, day.day, hour, 30, tzinfo=ZoneInfo(zone))


# --- The account's time zone -------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_set_the_time_zone_and_it_is_audited(world, client_for, role):
    client = client_for(world.member(role))
    page = client.get(SETTINGS).text
    assert 'name="time_zone"' in page and '<option value="Europe/Paris">' in page
    response = client.post(TIME_ZONE, {"time_zone": " Europe/Paris "})
    assert response.status_code == 302
    world.account.refresh_from_db()
    assert world.account.time_zone == "Europe/Paris"
    event = AuditEvent.objects.get(action="account.time_zone")
    assert event.target == "Europe/Paris"
    assert "Europe/Paris" in client.get(SETTINGS).text


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_developers_and_viewers_cannot_set_the_time_zone(world, client_for, role):
    client = client_for(world.member(role))
    assert 'name="time_zone"' not in client.get(SETTINGS).text
    assert client.post(TIME_ZONE, {"time_zone": "Europe/Paris"}).status_code == 403
    world.account.refresh_from_db()
    assert world.account.time_zone == "UTC"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "Europe"])
def test_a_name_that_is_not_an_iana_zone_is_refused_in_the_form(world, client_for, name):
    response = client_for(world.owner).post(TIME_ZONE, {"time_zone": name})
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.text
    assert "not a time zone" in response.text or "This field is required" in response.text
    world.account.refresh_from_db()
    assert world.account.time_zone == "UTC"


def test_usage_days_and_times_are_read_in_the_accounts_time_zone(world, client_for, keys):
    checkout, _ = keys
    zone = "Asia/Tokyo"  # UTC+9: 20:30 UTC is 05:30 the next day
    day = timezone.now().astimezone(UTC).date() - timedelta(days=3)
    bill(
        checkout,
        _model("gpt-4.1"),
        2 * M,
        at=datetime(day.year, day.month, day.day, 20, 30, tzinfo=UTC),
    )
    client = client_for(world.owner)
    _, utc_rows = rows_of(client.get(EXPORT, {"group_by": "day"}))
    assert utc_rows[1][0] == day.isoformat()
    set_zone(world.account, zone)
    _, tokyo_rows = rows_of(client.get(EXPORT, {"group_by": "day"}))
    assert tokyo_rows[1][0] == (day + timedelta(days=1)).isoformat()
    html = client.get(USAGE).text
    assert "Times in Asia/Tokyo" in html and "(Asia/Tokyo)" in html
    # The request log shows the call's time in the zone: 05:30 the next day.
    next_day = day + timedelta(days=1)
    assert f"{next_day.day} {next_day:%b %Y}, 05:30:00" in text_of(section(html, "usage-log"))
    # A date filter is a day of the zone: that day in Tokyo has the call, the UTC day has not.
    one_day = {"since": next_day.isoformat(), "until": next_day.isoformat()}
    assert 'id="usage-total-calls">1<' in client.get(USAGE, one_day).text
    same = {"since": day.isoformat(), "until": day.isoformat()}
    assert 'id="usage-total-calls">0<' in client.get(USAGE, same).text


def _model(slug):
    from catalogue.models import AIModel

    return AIModel.objects.get(slug=slug)


# --- Presets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "first", "last"),
    [
        ("today", date(2026, 3, 1), date(2026, 3, 1)),
        ("yesterday", date(2026, 2, 28), date(2026, 2, 28)),
        ("7d", date(2026, 2, 23), date(2026, 3, 1)),
        ("mtd", date(2026, 3, 1), date(2026, 3, 1)),
        ("last_month", date(2026, 2, 1), date(2026, 2, 28)),
    ],
)
def test_presets_are_days_of_the_time_zone(preset, first, last):
    # 1 March 00:30 in Paris is still 28 February in UTC.
    now = datetime(2026, 2, 28, 23, 30, tzinfo=UTC)
    assert preset_days(preset, ZoneInfo("Europe/Paris"), now=now) == (first, last)
    utc_today = preset_days("today", ZoneInfo("UTC"), now=now)
    assert utc_today == (date(2026, 2, 28), date(2026, 2, 28))


def test_the_yesterday_preset_on_usage_and_the_wallet(world, client_for, keys):
    checkout, _nightly = keys
    zone = "America/New_York"
    set_zone(world.account, zone)
    yesterday = yesterday_in(zone)
    bill(checkout, _model("gpt-4.1"), 1_500_000, at=at_local(yesterday, 22, zone))
    bill(checkout, _model("gpt-4.1"), 700_000, at=at_local(yesterday + timedelta(days=1), 1, zone))
    client = client_for(world.owner)
    html = client.get(USAGE, {"preset": "yesterday"}).text
    assert 'id="usage-total-credits">1.50' in html and 'id="usage-total-calls">1<' in html
    # The form shows the preset's dates; the preset is marked current; the CSV keeps the preset.
    assert f'value="{yesterday.isoformat()}"' in html
    assert re.search(r'aria-current="true"[^>]*>Yesterday<', html)
    assert "preset=yesterday" in re.search(r'href="(/usage/export\.csv\?[^"]+)"', html).group(1)
    wallet = client.get(WALLET, {"preset": "yesterday"}).text
    rows = ledger_rows(wallet)
    assert "\N{MINUS SIGN}1.5000" in rows and "\N{MINUS SIGN}0.7000" not in rows
    assert client.get(USAGE, {"preset": "fortnight"}).status_code == 422


# --- From and To -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [USAGE, WALLET])
def test_from_after_to_is_refused_alike_on_usage_and_the_wallet(world, client_for, url):
    client = client_for(world.owner)
    params = {"since": "2026-05-02", "until": "2026-05-01"}
    response = client.get(url, params)
    assert response.status_code == 422
    assert "From must be on or before To." in response.text
    assert "`since`" not in response.text and "must be after" not in response.text
    # The same day as From and To is one day, not an error.
    assert client.get(url, {"since": "2026-05-01", "until": "2026-05-01"}).status_code == 200


def test_the_api_keeps_its_own_words_for_the_same_mistake(world, client_for):
    from billing.reports import FilterError

    with pytest.raises(FilterError) as refused:
        usage_filter_from(world.account, {"since": "2026-05-02", "until": "2026-05-01"})
    assert str(refused.value) == "`since` must be on or before `until`."
    assert refused.value.console == "From must be on or before To."


# --- Money columns -----------------------------------------------------------------------------


def test_a_money_column_has_fixed_decimals_and_the_exact_amount_on_hover_and_focus():
    template = Template(
        "{% load money %}{% for m in amounts %}{% money_cell m places=4 %}{% endfor %}"
    )
    html = template.render(Context({"amounts": [160_000, 26_923, 8_050, 12_345_678_900]}))
    shown = re.findall(r"<data[^>]*>([^<]*)</data>", html)
    assert shown == ["0.1600", "0.0269", "0.0081", "12,345.6789"]
    # Rounded figures carry the exact amount, focusable; an exact one needs no title.
    assert 'value="0.026923" title="Exactly 0.026923 credits" tabindex="0"' in html
    assert 'value="0.00805" title="Exactly 0.008050 credits" tabindex="0"' in html
    assert re.search(r'value="0\.16"\s*>0\.1600<', html)
    assert html.count('class="num money"') == 4


def test_signed_cells_round_half_up_and_keep_the_sign():
    template = Template("{% load money %}{% money_cell m signed=True places=2 %}")
    html = template.render(Context({"m": -1_005_000}))
    assert "amount-out" in html and ">\N{MINUS SIGN}1.01<" in html
    assert 'title="Exactly \N{MINUS SIGN}1.005 credits"' in html


# --- The ledger ----------------------------------------------------------------------------


def test_each_charge_names_its_key_model_and_request_with_links(world, client_for, keys):
    checkout, _ = keys
    reference = bill(checkout, _model("gpt-4.1-mini"), 26_923)
    html = client_for(world.viewer).get(WALLET).text
    rows = ledger_rows(html)
    assert f"Checkout · GPT-4.1 mini Request {reference} · in usage" in rows
    ledger = section(html, "ledger")
    assert f'href="{reverse("keys:key-detail", args=[checkout.public_id])}"' in ledger
    day = timezone.now().date().isoformat()
    usage_link = re.search(r'href="(/usage/\?[^"]+)">in usage', ledger).group(1)
    assert f"api_key_id={checkout.public_id}" in usage_link and "model=gpt-4.1-mini" in usage_link
    assert f"since={day}" in usage_link
    # The usage page the link opens lists that request.
    assert reference in client_for(world.viewer).get(usage_link.replace("&amp;", "&")).text


def test_a_task_charge_links_to_the_task(world, client_for, keys):
    checkout, _ = keys
    task_id = "task_01M8TESTTESTTESTTESTTESTTE"
    holds.hold_place(
        account_id=world.account.pk, reference=task_id, amount=M, api_key_id=checkout.pk
    )
    holds.hold_settle(
        reference=task_id,
        charge=M,
        usage=UsageFacts(
            model_id=_model("gpt-4.1").pk, family="video", protocol="tasks",
            api_key_id=checkout.pk, group_id=checkout.group_id, seconds=5,
        ),
    )  # fmt: skip
    ledger = section(client_for(world.owner).get(WALLET).text, "ledger")
    assert f'href="{reverse("generation:task-detail", args=[task_id])}"' in ledger
    assert "Checkout · GPT-4.1" in text_of(ledger)


def test_a_batch_charge_lists_the_keys_and_models_it_paid_for(world, client_for, keys):
    checkout, nightly = keys
    gpt, mini = _model("gpt-4.1"), _model("gpt-4.1-mini")
    lease = "lease_test_1"
    assert holds.lease_grow(account_id=world.account.pk, reference=lease, amount=5 * M, step="0")
    now = timezone.now()

    def facts(key, model):
        return UsageFacts(
            model_id=model.pk, family="text", protocol="openai", api_key_id=key.pk,
            group_id=key.group_id,
        )  # fmt: skip

    usage_batch_commit(
        batch="batch_test_1",
        charges=[
            Charge("req_b1", world.account.pk, M, facts(checkout, gpt), now, lease),
            Charge("req_b2", world.account.pk, M, facts(checkout, gpt), now, lease),
            Charge("req_b3", world.account.pk, 500_000, facts(nightly, mini), now, lease),
        ],
        releases=[],
    )
    rows = ledger_rows(client_for(world.owner).get(WALLET).text)
    assert "3 calls: Checkout · GPT-4.1 (2); Nightly batch · GPT-4.1 mini (1)" in rows
    assert "Settled together" in rows and "batch_test_1" not in rows
    _, csv_rows = rows_of(client_for(world.owner).get(LEDGER_CSV))
    batch_row = next(row for row in csv_rows if row[1] == "Charge")
    assert batch_row[4] == "Checkout; Nightly batch" and batch_row[7] == "3"
    assert batch_row[8] == "-2.50"


def test_a_filter_that_matches_nothing_keeps_the_table_with_an_empty_state(world, client_for, keys):
    client = client_for(world.owner)
    for response in (
        client.get(WALLET, {"kind": "refund"}),
        client.get(WALLET, {"kind": "refund"}, **HTMX),
    ):
        ledger = section(response.text, "ledger")
        assert "<table" in ledger and "No entries match these filters" in ledger
        assert 'class="empty-state"' in ledger and 'id="ledger-csv"' in ledger


def test_the_ledger_csv_reconciles_with_the_page_and_names_its_filters(
    world, client_for, keys, monkeypatch
):
    monkeypatch.setattr(billing_views, "LEDGER_CSV_CHUNK", 7)  # charges looked up in chunks
    checkout, nightly = keys
    for n in range(30):  # more than a page of 25
        bill(checkout if n % 2 else nightly, _model("gpt-4.1"), 10_000 + n)
    client = client_for(world.owner)
    params = {"kind": "charge", "since": (timezone.now().date() - timedelta(days=1)).isoformat()}
    html = client.get(WALLET, params).text
    count = int(re.search(r'id="ledger-title">Ledger <span class="count">(\d+)<', html).group(1))
    net_text = text_of(re.search(r'id="ledger-net">(.*?)</strong>', html).group(1))
    csv_link = re.search(r'id="ledger-csv" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    response = client.get(csv_link)
    assert response.status_code == 200
    filename = re.search(r'filename="([^"]+)"', response["Content-Disposition"]).group(1)
    assert filename.startswith("bytespike-ledger-charge-") and filename.endswith("-to-now.csv")
    first, rows = rows_of(response)
    assert first[0].startswith("# ByteSpike ledger of Acme")
    assert "kind: Charge" in first[0] and f"dates: {params['since']} to now" in first[0]
    assert "time zone: UTC" in first[0]
    header, *entries, total = rows
    assert header[0] == "time" and header[-3] == "amount"
    assert len(entries) == count == 30
    # The same rows as the page, in the same order, and the same net change.
    shown = re.findall(r'<data class="amount amount-out" value="([^"]+)"', section(html, "ledger"))
    assert [Decimal(value) for value in shown] == [Decimal(row[8]) for row in entries[:25]]
    assert total[0] == "Total"
    assert sum(Decimal(row[8]) for row in entries) == Decimal(total[8])
    assert net_text == "\N{MINUS SIGN}" + total[8].lstrip("-")
    charged = LedgerEntry.objects.filter(account=world.account, kind="charge")
    assert sum(entry.amount for entry in charged) == int(Decimal(total[8]) * M)
    assert {row[4] for row in entries} == {"Checkout", "Nightly batch"}


def test_the_ledger_csv_is_scoped_and_refuses_bad_filters(world, client_for, keys):
    fund(world.outsider_account, 7, reference="pay_other")
    client = client_for(world.owner)
    _, rows = rows_of(client.get(LEDGER_CSV))
    assert "pay_other" not in str(rows)
    refused = client.get(LEDGER_CSV, {"since": "2026-05-02", "until": "2026-05-01"})
    assert refused.status_code == 422 and refused.text == "From must be on or before To."


# --- Views and drill-down ----------------------------------------------------------------------


@pytest.fixture
def spread(world, keys):
    checkout, nightly = keys
    gpt, mini = _model("gpt-4.1"), _model("gpt-4.1-mini")
    yesterday = timezone.now() - timedelta(days=1)
    bill(checkout, gpt, 3 * M, at=yesterday)
    bill(checkout, mini, 1 * M, at=yesterday)
    bill(nightly, gpt, 5 * M, at=yesterday)
    bill(checkout, gpt, 7 * M, at=timezone.now() - timedelta(days=3))
    return checkout, nightly


def table_rows(html: str) -> list[list[str]]:
    body = section(html, "usage-table")
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    return [
        [text_of(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


def test_key_by_model_groups_each_keys_models_under_it(world, client_for, spread):
    checkout, _ = spread
    html = client_for(world.owner).get(USAGE, {"preset": "yesterday", "group_by": "key_model"}).text
    rows = table_rows(html)
    # Nightly batch spent 5, Checkout 4: the bigger key first, its models biggest first.
    assert [row[0] for row in rows] == ["Nightly batch", "Checkout", "Checkout"]
    assert [row[1].split(" gpt")[0] for row in rows] == ["GPT-4.1", "GPT-4.1", "GPT-4.1 mini"]
    assert [row[-1] for row in rows] == ["5.00", "3.00", "1.00"]
    # Each row drills to its key and model, by day.
    table = section(html, "usage-table")
    link = re.search(r'<a class="row-link" href="([^"]+)">GPT-4.1 mini<', table).group(1)
    assert f"api_key_id={checkout.public_id}" in link and "model=gpt-4.1-mini" in link
    assert "group_by=day" in link and "preset=yesterday" in link
    model_first = client_for(world.owner).get(
        USAGE, {"preset": "yesterday", "group_by": "model_key"}
    )
    assert [row[0] for row in table_rows(model_first.text)] == [
        "GPT-4.1",
        "GPT-4.1",
        "GPT-4.1 mini",
    ]
    assert [row[1].split(" key_")[0] for row in table_rows(model_first.text)] == [
        "Nightly batch", "Checkout", "Checkout",
    ]  # fmt: skip


def test_the_pair_csv_states_its_filters_and_matches_the_table(world, client_for, spread):
    checkout, _ = spread
    client = client_for(world.owner)
    params = {"preset": "yesterday", "group_by": "key_model", "api_key_id": checkout.public_id}
    html = client.get(USAGE, params).text
    response = client.get(EXPORT, params)
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    filename = re.search(r'filename="([^"]+)"', response["Content-Disposition"]).group(1)
    assert filename == (
        f"bytespike-usage-key-checkout-{checkout.public_id}-{yesterday}-to-{yesterday}"
        "-by-key-model.csv"
    )
    first, (header, *rows, total) = rows_of(response)
    assert first[0] == (
        f"# ByteSpike usage of Acme; key: Checkout ({checkout.public_id}); model: all models; "
        f"dates: {yesterday} to {yesterday} (Yesterday); time zone: UTC; "
        "grouped: key \N{MULTIPLICATION SIGN} model"
    )
    assert header[:4] == ["api_key_id", "key_name", "model", "model_name"]
    assert [(row[1], row[2], row[-1]) for row in rows] == [
        ("Checkout", "gpt-4.1", "3.00"), ("Checkout", "gpt-4.1-mini", "1.00"),
    ]  # fmt: skip
    assert total[-1] == "4.00" and 'id="usage-total-credits">4.00' in html
    assert len(rows) == len(table_rows(html))


def test_rows_and_bars_drill_down_to_their_bucket(world, client_for, spread):
    checkout, _ = spread
    client = client_for(world.owner)
    by_key = client.get(USAGE, {"preset": "7d", "group_by": "api_key"}).text
    table = section(by_key, "usage-table")
    key_link = re.search(r'<a class="row-link" href="([^"]+)">Checkout \(…\w{4}\)<', table).group(1)
    assert f"api_key_id={checkout.public_id}" in key_link and "group_by=model" in key_link
    chart = section(by_key, "usage-chart")
    assert f'class="chart-link" href="{key_link}"' in chart
    by_day = client.get(USAGE, {"preset": "7d"}).text
    day = (timezone.now() - timedelta(days=1)).date().isoformat()
    day_link = re.search(
        rf'<a class="row-link" href="(/usage/\?[^"]*since={day}&amp;until={day}[^"]*)"',
        section(by_day, "usage-table"),
    ).group(1)
    assert "group_by=api_key" in day_link and "preset" not in day_link
    assert f'class="chart-link" href="{day_link}"' in section(by_day, "usage-chart")
    drilled = client.get(day_link.replace("&amp;", "&")).text
    assert 'id="usage-total-credits">9.00' in drilled
    by_model = client.get(USAGE, {"preset": "7d", "group_by": "model"}).text
    model_link = re.search(r'<a class="row-link" href="([^"]+)">GPT-4.1<', by_model).group(1)
    query = parse_qs(urlsplit(model_link.replace("&amp;", "&")).query)
    assert query["model"] == ["gpt-4.1"] and query["group_by"] == ["api_key"]


def test_the_api_keeps_its_groupings_and_utc(world, keys):
    from billing.reports import FilterError

    with pytest.raises(FilterError):
        usage_filter_from(world.account, {"group_by": "key_model"})
    set_zone(world.account, "Asia/Tokyo")
    flt = usage_filter_from(world.account, {"since": "2026-05-01", "until": "2026-05-01"})
    assert flt.since == datetime(2026, 5, 1, tzinfo=UTC)
    assert usage_report(world.account, flt).totals["calls"] == 0


def test_the_dashboards_today_is_the_accounts_day(world, client_for, keys):
    checkout, _ = keys
    zone = "Pacific/Auckland"
    set_zone(world.account, zone)
    local_today = timezone.now().astimezone(ZoneInfo(zone)).date()
    midnight = datetime(local_today.year, local_today.month, local_today.day, tzinfo=ZoneInfo(zone))
    bill(checkout, _model("gpt-4.1"), 2 * M, at=midnight + timedelta(minutes=1))
    bill(checkout, _model("gpt-4.1"), 5 * M, at=midnight - timedelta(hours=2))
    html = client_for(world.owner).get(reverse("console:dashboard")).text
    assert 'id="spend-today">2.00<' in html
    assert "since 00:00 Pacific/Auckland" in html
