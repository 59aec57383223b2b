"""An owner narrows the usage report to one key, reloads the URL as a bookmark, and downloads the
same report as CSV: in Chromium, through the real pages."""

import csv
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Role
from billing import holds
from billing.usage import UsageFacts
from catalogue.models import AIModel, RoutingGroup
from tests.factories import (
    PASSWORD,
    AccountFactory,
    AIModelFactory,
    MembershipFactory,
    RoutingGroupFactory,
    UserFactory,
    fund,
    issue_key,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def catalogue() -> tuple[RoutingGroup, AIModel]:
    group = RoutingGroupFactory(slug="default", name="Default", description="Every model.")
    model = AIModelFactory(slug="gpt-4.1", display_name="GPT-4.1", groups=[group])
    return group, model


def bill(key, model, reference: str, charge: int, *, days_ago: int = 0, tokens=(0, 0)):
    """A billed call through the real path: a hold, then its settlement at a past time."""
    holds.hold_place(
        account_id=key.account_id, reference=reference, amount=charge, api_key_id=key.pk
    )
    holds.hold_settle(
        reference=reference,
        charge=charge,
        usage=UsageFacts(
            model_id=model.pk,
            family="text",
            protocol="openai",
            api_key_id=key.pk,
            group_id=key.group_id,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            latency_ms=850,
        ),
        at=timezone.now() - timedelta(days=days_ago),
    )


def test_filter_usage_by_key_bookmark_it_and_download_the_same_csv(live_server, page, shot):
    group, model = catalogue()
    owner = UserFactory(email="owner@example.com", name="Olive Owner")
    account = AccountFactory(name="Usage Co")
    MembershipFactory(account=account, user=owner, role=Role.OWNER)
    fund(account, 50)
    checkout, _ = issue_key(account, group, name="Checkout service")
    batch, _ = issue_key(account, group, name="Nightly batch")
    bill(checkout, model, "req_1", 1_250_000, tokens=(1200, 300))
    bill(checkout, model, "req_2", 730_500, days_ago=1, tokens=(800, 120))
    bill(checkout, model, "req_3", 2_000_000, days_ago=4, tokens=(2500, 900))
    bill(batch, model, "req_4", 4_100_000, days_ago=1, tokens=(9000, 1500))
    bill(batch, model, "req_5", 600_000, days_ago=6, tokens=(700, 80))

    page.goto(f"{live_server.url}/")
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("#spend-month")).to_have_text("8.68")
    expect(page.locator("#spend-chart .chart-legend")).to_contain_text("Checkout service")
    shot(page, "usage-01-dashboard")

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    expect(page.locator("#usage-total-calls")).to_have_text("5")
    page.evaluate("window.__sameDocument = true")  # survives only if no page load happens
    shot(page, "usage-02-all-keys")

    # One key, applied in place; the address bar now holds the report.
    page.get_by_label("Key", exact=True).select_option(label="Checkout service")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(rf"[?&]api_key_id={checkout.public_id}(&|$)"))
    expect(page.locator("#usage-total-calls")).to_have_text("3")
    expect(page.locator("#usage-total-credits")).to_have_text("3.98")
    expect(page.get_by_role("button", name="Apply")).to_be_focused()
    log = page.locator("#usage-log")
    expect(log).to_contain_text("Checkout service")
    expect(log).not_to_contain_text("Nightly batch")
    assert page.evaluate("window.__sameDocument") is True
    totals = page.locator("#usage-totals td").all_inner_texts()
    assert totals[0] == "3" and totals[-1] == "3.98"
    exact = page.locator("#usage-totals data").get_attribute("value")
    assert exact == "3.9805"
    shot(page, "usage-03-one-key")

    # The URL is a bookmark: a fresh load shows the same filtered report.
    page.reload()
    assert page.evaluate("window.__sameDocument") is None
    expect(page.get_by_label("Key", exact=True)).to_have_value(checkout.public_id)
    expect(page.locator("#usage-total-calls")).to_have_text("3")
    assert page.locator("#usage-totals td").all_inner_texts() == totals
    shot(page, "usage-04-bookmark-reloaded")

    # The CSV is the same report: its totals row is the page's.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith("-by-day.csv")
    with open(download.path(), newline="", encoding="utf-8") as file:
        first, header, *days, total = list(csv.reader(file))
    assert first[0].startswith("# ByteSpike usage of Usage Co; key: Checkout service (")
    assert header[0] == "day" and header[-1] == "credits"
    assert len(days) == 3
    assert total == ["Total", *(cell.replace(",", "") for cell in totals[:-1]), exact]

    # Grouped by key, the other key is back, with its name in the chart.
    page.get_by_label("Key", exact=True).select_option(label="All keys")
    page.get_by_label("Group by").select_option(label="Key")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"group_by=api_key"))
    expect(page).not_to_have_url(re.compile("api_key_id="))
    expect(page.locator("#usage-chart svg")).to_contain_text("Nightly batch")
    expect(page.locator("#usage-total-calls")).to_have_text("5")
    shot(page, "usage-05-by-key")


def test_key_x_yesterday_by_model_in_two_clicks(live_server, page, shot):
    """Opening Usage, "what did key X spend yesterday, by model" is two clicks: the Yesterday
    preset, then the key x model view; the numbers are those of the account's own day."""
    group, gpt = catalogue()
    mini = AIModelFactory(slug="gpt-4.1-mini", display_name="GPT-4.1 mini", groups=[group])
    owner = UserFactory(email="owner@example.com", name="Olive Owner")
    account = AccountFactory(name="Usage Co", time_zone="Europe/Paris")
    MembershipFactory(account=account, user=owner, role=Role.OWNER)
    fund(account, 50)
    checkout, _ = issue_key(account, group, name="Checkout service")
    batch, _ = issue_key(account, group, name="Nightly batch")
    paris = ZoneInfo("Europe/Paris")
    yesterday = timezone.now().astimezone(paris).date() - timedelta(days=1)
    noon = datetime(yesterday.year, yesterday.month, yesterday.day, 12, tzinfo=paris)
    bill_at(checkout, gpt, "req_y1", 1_250_000, noon)
    bill_at(checkout, gpt, "req_y2", 500_000, noon + timedelta(hours=1))
    bill_at(checkout, mini, "req_y3", 126_923, noon + timedelta(hours=2))
    bill_at(batch, gpt, "req_y4", 4_000_000, noon)
    # 23:30 the day before yesterday in Paris (22:30 UTC): not yesterday.
    bill_at(checkout, gpt, "req_old", 9_000_000, noon - timedelta(hours=12, minutes=30))
    bill_at(checkout, mini, "req_today", 7_000_000, noon + timedelta(days=1, hours=-11))

    page.goto(f"{live_server.url}/usage/")
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    shot(page, "attribution-01-usage")

    # One: the Yesterday preset.
    page.get_by_role("navigation", name="Period").get_by_role("link", name="Yesterday").click()
    expect(page).to_have_url(re.compile(r"preset=yesterday"))
    expect(page.locator("#usage-total-credits")).to_have_text("5.88")
    expect(page.locator("#usage-total-calls")).to_have_text("4")
    expect(page.get_by_label("From")).to_have_value(yesterday.isoformat())
    # Two: key x model.
    page.get_by_role("navigation", name="View").get_by_role(
        "link", name="Key \N{MULTIPLICATION SIGN} model"
    ).click()
    expect(page).to_have_url(re.compile(r"group_by=key_model"))
    rows = page.locator("#usage-table tbody tr")
    expect(rows).to_have_count(3)
    table = [
        [cell.strip() for cell in rows.nth(n).locator("td, th").all_inner_texts()] for n in range(3)
    ]
    # Nightly batch spent more, so it comes first; Checkout's models follow, biggest first.
    assert [row[0] for row in table[:2]] == ["Nightly batch", "Checkout service"]
    assert table[2][0] in ("", "Checkout service")  # the key heads its first row only
    assert [row[1].splitlines()[0] for row in table] == ["GPT-4.1", "GPT-4.1", "GPT-4.1 mini"]
    assert [row[2] for row in table] == ["1", "2", "1"]
    assert [row[-1] for row in table] == ["4.00", "1.75", "0.13"]
    mini_cell = rows.nth(2).locator("data")
    assert mini_cell.get_attribute("value") == "0.126923"
    assert mini_cell.get_attribute("title") == "Exactly 0.126923 credits"
    expect(page.locator("#usage-chart svg")).to_contain_text("Checkout service")
    shot(page, "attribution-02-key-by-model")

    # A row drills down to that key and model.
    rows.nth(2).get_by_role("link", name="GPT-4.1 mini").click()
    expect(page).to_have_url(re.compile(rf"api_key_id={checkout.public_id}"))
    expect(page.locator("#usage-total-credits")).to_have_text("0.13")
    expect(page.locator("#usage-log")).to_contain_text("req_y3")
    shot(page, "attribution-03-drilled")


def bill_at(key, model, reference: str, charge: int, at):
    holds.hold_place(
        account_id=key.account_id, reference=reference, amount=charge, api_key_id=key.pk
    )
    holds.hold_settle(
        reference=reference,
        charge=charge,
        usage=UsageFacts(
            model_id=model.pk, family="text", protocol="openai", api_key_id=key.pk,
            group_id=key.group_id, input_tokens=100, output_tokens=20,
        ),
        at=at,
    )  # fmt: skip
