"""The usage page and its CSV export: filters in the URL, bucket table and totals that match
the report and the CSV, the request log, the charts, and every role and outsider."""

import csv
import io
import re
from datetime import date, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from billing import services
from billing.reports import usage_filter_from, usage_report
from core import charts
from tests.billing.test_pages import ESCAPED, HTMX, XSS, bill, section, text_of
from tests.factories import AIModelFactory, RoutingGroupFactory, fund, issue_key

pytestmark = pytest.mark.django_db

M = 1_000_000
USAGE = reverse("billing:usage")
EXPORT = reverse("billing:usage-export")


@pytest.fixture
def catalogue(db):
    group = RoutingGroupFactory(slug="default", name="Default")
    text = AIModelFactory(slug="gpt-4.1", display_name="GPT-4.1", groups=[group])
    image = AIModelFactory(
        slug="gpt-image-1", display_name="GPT Image 1", family="image", groups=[group]
    )
    return group, text, image


@pytest.fixture
def usage(world, catalogue):
    """Two keys of Acme with calls over the last days, one key of the outsider."""
    group, text, image = catalogue
    services.wallet_open(account=world.account)
    fund(world.account, 100)
    fund(world.outsider_account, 100)
    checkout, _ = issue_key(world.account, group, name="Checkout")
    batch, _ = issue_key(world.account, group, name="Nightly batch")
    foreign, _ = issue_key(world.outsider_account, group, name="Other Co key")
    now = timezone.now()
    bill(checkout, text, 1_250_000, input_tokens=1000, output_tokens=200)
    bill(checkout, text, 750_001, at=now - timedelta(days=2), input_tokens=500)
    bill(batch, image, 2 * M, at=now - timedelta(days=2), images=2, input_tokens=0)
    bill(batch, text, 3 * M, at=now - timedelta(days=40))  # outside the default 30 days
    bill(foreign, text, 9 * M)
    return {"checkout": checkout, "batch": batch, "foreign": foreign, "text": text}


def totals_cells(html: str) -> list[str]:
    row = section(html, "usage-totals").split("</tr>")[0]
    return [text_of(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def read_csv(response) -> list[list[str]]:
    """The CSV's rows after its first line, which names the filters."""
    first, *rows = csv.reader(io.StringIO(response.content.decode()))
    assert first[0].startswith("# ByteSpike usage of ")
    return rows


# --- Access ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_every_member_reads_the_usage_report(world, client_for, usage, role):
    response = client_for(world.member(role)).get(USAGE)
    assert response.status_code == 200
    html = response.text
    assert 'id="usage-total-credits">4.00' in html  # 1.25 + 0.750001 + 2, rounded
    assert "exactly 4.000001" in html
    assert 'id="usage-total-calls">3<' in html
    assert "Other Co key" not in html and "Download CSV" in html
    assert 'style="' not in html  # the CSP forbids inline styles: charts use classes


@pytest.mark.parametrize("role", list(Role))
def test_every_member_downloads_the_csv(world, client_for, usage, role):
    response = client_for(world.member(role)).get(EXPORT)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")


def test_the_outsider_sees_only_their_own_usage(world, client_for, usage):
    html = client_for(world.outsider).get(USAGE).text
    assert 'id="usage-total-credits">9.00' in html
    assert "Checkout" not in html and "Nightly batch" not in html


@pytest.mark.parametrize("url", [USAGE, EXPORT])
def test_a_key_of_another_account_is_404(world, client_for, usage, url):
    client = client_for(world.owner)
    response = client.get(url, {"api_key_id": usage["foreign"].public_id})
    assert response.status_code == 404
    assert client.get(url, {"api_key_id": "key_doesnotexist"}).status_code == 404
    # The key's owner reads it.
    own = client_for(world.outsider).get(url, {"api_key_id": usage["foreign"].public_id})
    assert own.status_code == 200


@pytest.mark.parametrize("url", [USAGE, EXPORT])
def test_usage_needs_login(db, client, url):
    response = client.get(url)
    assert response.status_code == 302 and response.url.startswith(reverse("account_login"))


# --- Filters ---------------------------------------------------------------------------------


def test_filtering_by_key_shows_only_that_keys_usage(world, client_for, usage):
    checkout = usage["checkout"]
    html = client_for(world.viewer).get(USAGE, {"api_key_id": checkout.public_id}).text
    assert 'id="usage-total-credits">2.00' in html and "exactly 2.000001" in html
    assert f'<option value="{checkout.public_id}" selected>Checkout</option>' in html
    assert "Key Checkout" in html
    log = section(html, "usage-log")
    assert "Checkout" in log and "Nightly batch" not in log


def test_the_form_shows_the_effective_period_and_grouping(world, client_for, usage):
    html = client_for(world.viewer).get(USAGE).text
    today = timezone.now().date()
    assert f'name="until" value="{today.isoformat()}"' in html
    assert f'name="since" value="{(today - timedelta(days=29)).isoformat()}"' in html
    assert '<option value="day" selected>Day</option>' in html
    for label in ("Key", "Model", "Family", "From", "To", "Group by"):
        assert re.search(rf'<label for="id_[a-z_]+">{label}</label>', html), label


def test_dates_model_and_family_narrow_the_report(world, client_for, usage):
    client = client_for(world.viewer)
    since = (timezone.now() - timedelta(days=45)).date().isoformat()
    wide = client.get(USAGE, {"since": since}).text
    assert 'id="usage-total-credits">7.00' in wide  # the 40-day-old call is in
    images = client.get(USAGE, {"family": "image"}).text
    assert 'id="usage-total-credits">2.00' in images
    text = client.get(USAGE, {"model": "gpt-4.1"}).text
    assert 'id="usage-total-credits">2.00' in text and "exactly 2.000001" in text


def test_a_date_as_until_includes_that_whole_day(world, client_for, usage):
    client = client_for(world.owner)
    today = timezone.now().date().isoformat()
    html = client.get(USAGE, {"until": today}).text
    assert 'id="usage-total-calls">3<' in html
    assert read_csv(client.get(EXPORT, {"until": today}))[-1][1] == "3"
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert 'id="usage-total-calls">2<' in client.get(USAGE, {"until": yesterday}).text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "Use a date"),
        ({"until": "2026-02-30"}, "Use a date"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "From must be on or before To."),
        ({"since": "2024-01-01", "until": "2026-01-01"}, "at most 400 days"),
        ({"group_by": "week"}, "group_by is one of"),
        ({"family": "audio"}, "family is one of"),
        ({"model": "no-such-model"}, "no model called"),
    ],
)
def test_bad_filters_answer_422_with_the_message(world, client_for, usage, params, message):
    client = client_for(world.owner)
    response = client.get(USAGE, params)
    assert response.status_code == 422
    assert message in response.text and 'class="field-errors"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert "<html" in response.text  # a bookmarked bad URL still shows the page
    fragment = client.get(USAGE, params, **HTMX)
    assert fragment.status_code == 422 and "<html" not in fragment.text
    assert message in fragment.text
    export = client.get(EXPORT, params)
    assert export.status_code == 422 and message in export.content.decode()


def test_the_filter_form_pushes_a_clean_url_and_answers_the_report_fragment(
    world, client_for, usage
):
    key = usage["checkout"]
    params = {"api_key_id": key.public_id, "model": "", "family": "", "group_by": "day"}
    response = client_for(world.owner).get(
        USAGE, params, HTTP_HX_TARGET="usage-report", HTTP_HX_TRIGGER="usage-filters", **HTMX
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="usage-report"')
    assert response.headers["HX-Push-Url"] == f"{USAGE}?api_key_id={key.public_id}&group_by=day"


def test_a_bookmarked_url_renders_the_same_report_as_the_form(world, client_for, usage):
    client = client_for(world.owner)
    params = {"api_key_id": usage["checkout"].public_id, "group_by": "model"}
    page = client.get(USAGE, params).text
    fragment = client.get(USAGE, params, HTTP_HX_TRIGGER="usage-filters", **HTMX).text
    # The same markup, but for the focus the fragment asks for after a swap.
    assert fragment.replace(" data-autofocus", "").strip() in page
    assert totals_cells(page) == totals_cells(fragment) != []


# --- Table, totals and CSV -------------------------------------------------------------------


@pytest.mark.parametrize("group_by", ["day", "hour", "model", "api_key"])
def test_table_totals_match_the_report_and_the_csv(world, client_for, usage, group_by):
    client = client_for(world.owner)
    params = {"group_by": group_by}
    html = client.get(USAGE, params).text
    report = usage_report(world.account, usage_filter_from(world.account, params))
    cells = totals_cells(html)
    assert cells == [
        "3",
        "1,500",
        "240",
        "0",
        "0",
        "2",
        "0",
        "4.00",
    ]
    assert int(cells[0]) == report.totals["calls"]
    # The column's two decimals, the exact amount in the cell's data value and title.
    exact = section(html, "usage-totals").split("</tr>")[0]
    assert (
        '<data class="amount" value="4.000001" title="Exactly 4.000001 credits" tabindex="0">'
        in exact
    )
    assert report.totals["credits"] == 4_000_001
    rows = read_csv(client.get(EXPORT, params))
    header, *buckets, total = rows
    assert header[-8:] == [
        "calls",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "images",
        "seconds",
        "credits",
    ]
    assert total[0] == "Total"
    assert total[-8:] == [cell.replace(",", "") for cell in cells[:-1]] + ["4.000001"]
    assert len(buckets) == len(report.buckets)
    assert sum(int(row[-8]) for row in buckets) == report.totals["calls"]


def test_csv_exports_exactly_the_current_filter(world, client_for, usage):
    client = client_for(world.owner)
    checkout = usage["checkout"]
    html = client.get(USAGE, {"api_key_id": checkout.public_id, "group_by": "day"}).text
    link = re.search(r'href="(/usage/export\.csv\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"api_key_id={checkout.public_id}" in link and "group_by=day" in link
    response = client.get(link)
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response["Content-Disposition"].endswith('-by-day.csv"')
    header, *days, total = read_csv(response)
    assert header[0] == "day"
    today = timezone.now().date()
    assert [row[0] for row in days] == [(today - timedelta(days=2)).isoformat(), today.isoformat()]
    assert total[-1] == "2.000001" and total[1] == "2"
    assert totals_cells(html)[-1] == "2.00"
    assert 'value="2.000001"' in section(html, "usage-totals")


def test_csv_by_key_has_ids_and_names_and_defuses_formulas(world, client_for, catalogue):
    group, text, _ = catalogue
    fund(world.account, 10)
    key, _ = issue_key(world.account, group, name='=HYPERLINK("http://evil")')
    bill(key, text, M)
    rows = read_csv(client_for(world.owner).get(EXPORT, {"group_by": "api_key"}))
    assert rows[0][:2] == ["api_key_id", "key_name"]
    assert rows[1][:2] == [key.public_id, '\'=HYPERLINK("http://evil")']
    assert rows[-1][:2] == ["Total", ""]


def test_buckets_by_model_link_to_the_model_report(world, client_for, usage):
    html = client_for(world.owner).get(USAGE, {"group_by": "model"}).text
    table = section(html, "usage-table")
    assert "GPT Image 1" in table and "gpt-image-1" in table
    assert "model=gpt-image-1" in table
    assert 'class="chart chart-rows"' in html


# --- Escaping --------------------------------------------------------------------------------


def test_key_names_are_escaped_in_the_chart_table_select_and_log(world, client_for, catalogue):
    group, text, _ = catalogue
    fund(world.account, 10)
    key, _ = issue_key(world.account, group, name=XSS)
    bill(key, text, M)
    client = client_for(world.owner)
    for params in ({"group_by": "api_key"}, {"api_key_id": key.public_id}):
        html = client.get(USAGE, params).text
        assert XSS not in html
        assert ESCAPED in section(html, "id_api_key_id")  # the select
        assert ESCAPED in section(html, "usage-log")
    by_key = client.get(USAGE, {"group_by": "api_key"}).text
    assert ESCAPED in section(by_key, "usage-chart").split("</svg>")[0]
    assert ESCAPED in section(by_key, "usage-table")


# --- The request log -------------------------------------------------------------------------


def test_request_log_shows_each_call(world, client_for, usage):
    html = client_for(world.owner).get(USAGE).text
    log = text_of(section(html, "usage-log"))
    assert "Requests 3" in log
    assert "gpt-image-1" in log and "2 images" in log
    assert "1,000 / 200" in log and "1.25" in log and "openai" in log


def test_request_log_pages_by_50_with_the_filter_kept(world, client_for, catalogue):
    group, text, _ = catalogue
    fund(world.account, 100)
    key, _ = issue_key(world.account, group, name="Busy")
    for _ in range(55):
        bill(key, text, 10_000)
    client = client_for(world.owner)
    params = {"api_key_id": key.public_id}
    first = client.get(USAGE, params).text
    log = section(first, "usage-log")
    assert log.count("<time ") == 50 and "1\N{EN DASH}50 of 55" in log
    next_url = f"{USAGE}?api_key_id={key.public_id}&amp;page=2"
    assert f'href="{next_url}"' in log
    second = client.get(USAGE, {**params, "page": "2"}, HTTP_HX_TARGET="usage-log", **HTMX)
    assert second.status_code == 200
    assert second.text.lstrip().startswith('<section class="card card-flush" id="usage-log"')
    assert second.text.count("<time ") == 5 and "51\N{EN DASH}55 of 55" in second.text
    # A page past the end shows the last one; a nonsense page the first.
    assert "51\N{EN DASH}55 of 55" in client.get(USAGE, {**params, "page": "9"}).text
    assert "1\N{EN DASH}50 of 55" in client.get(USAGE, {**params, "page": "x"}).text


# --- Charts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peak", "step"),
    [(1, 1), (7, 2), (1_000_000, 250_000), (3_200_000, 1_000_000), (11_650_000, 5_000_000)],
)
def test_value_axis_steps_are_round(peak, step):
    assert charts.nice_step(peak) == step


def test_stacked_days_stack_each_days_keys_and_group_the_smallest():
    days = [date(2026, 5, 1) + timedelta(days=i) for i in range(3)]
    series = [
        {"name": f"Key {n}", "values": [n * M, 0, M], "total": n * M + M} for n in range(1, 10)
    ]
    chart = charts.stacked_days(days, series, id="c", title="Spend")
    assert [item.name for item in chart.legend][-1] == "2 other keys"
    assert len(chart.legend) == 8
    slot = (chart.right - chart.left) / 3
    first_day = [rect for rect in chart.rects if rect.x < chart.left + slot]
    assert len(first_day) == 8  # seven keys and "other"
    # 45 credits on an axis of three steps of 20: the stack fills three quarters of the plot.
    assert chart.y_ticks[-1].label == "60.00"
    stacked = sum(rect.height for rect in first_day)
    assert abs(stacked - (chart.bottom - chart.top) * 45 / 60) < 0.1
    assert chart.table_rows[0][2] == 45 * M and chart.table_rows[1][2] == 0


def test_charts_without_spend_are_empty():
    days = [date(2026, 5, 1)]
    assert charts.stacked_days(days, [], id="c", title="Spend").empty
    since = datetime(2026, 5, 1, tzinfo=timezone.UTC)
    assert charts.time_columns(
        [], since=since, until=since + timedelta(days=1), hourly=False, id="c", title="Spend"
    ).empty
    assert charts.ranked_rows([], id="c", title="Spend").empty


def test_hourly_columns_sit_at_their_hour():
    since = datetime(2026, 5, 1, tzinfo=timezone.UTC)
    buckets = [{"bucket": (since + timedelta(hours=5)).isoformat(), "credits": M, "calls": 1}]
    chart = charts.time_columns(
        buckets, since=since, until=since + timedelta(days=1), hourly=True, id="c", title="t"
    )
    slot = (chart.right - chart.left) / 24
    (rect,) = chart.rects
    assert chart.left + 5 * slot <= rect.x < chart.left + 6 * slot
    assert [tick.label for tick in chart.x_ticks] == ["1 May", "06:00", "12:00", "18:00"]
