"""A deleted key's name is free again, so a report can hold two keys of one name: the usage
table, the charts and the request log add the end of each key's masked secret to its name
(the CSV has each key's id in a column of its own)."""

import html

import pytest
from django.urls import reverse

from billing import services
from keys.services import api_key_delete
from tests.billing.test_pages import bill, section
from tests.billing.test_usage_page import EXPORT, USAGE, catalogue, read_csv  # noqa: F401
from tests.factories import fund, issue_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def namesakes(world, catalogue):  # noqa: F811
    """A deleted "Backend" and the live "Backend" that replaced it, each with a billed call."""
    group, text, _ = catalogue
    services.wallet_open(account=world.account)
    fund(world.account, 100)
    old, _ = issue_key(world.account, group, name="Backend")
    bill(old, text, 2_000_000)
    api_key_delete(key=old)
    new, _ = issue_key(world.account, group, name="Backend")
    bill(new, text, 1_000_000)
    return old, new


def test_the_usage_table_and_chart_tell_namesakes_apart(world, client_for, namesakes):
    old, new = namesakes

    page = html.unescape(client_for(world.owner).get(USAGE, {"group_by": "api_key"}).text)

    table = section(page, "usage-table")
    chart = section(page, "usage-chart")
    for key in (old, new):
        assert f"Backend (…{key.last4})" in table
        assert f"Backend (…{key.last4})" in chart


def test_the_request_log_and_the_dashboard_show_each_keys_masked_end(world, client_for, namesakes):
    old, new = namesakes
    client = client_for(world.owner)

    log = html.unescape(section(client.get(USAGE).text, "usage-log"))
    dashboard = html.unescape(client.get(reverse("console:dashboard")).text)

    for key in (old, new):
        assert f"…{key.last4}" in log
        assert f"Backend (…{key.last4})" in dashboard  # the daily spend chart
        assert f'title="{key.masked}">…{key.last4}' in dashboard  # recent requests


def test_the_csv_keeps_the_name_and_the_id_apart(world, client_for, namesakes):
    old, new = namesakes

    rows = read_csv(client_for(world.owner).get(EXPORT, {"group_by": "api_key"}))

    assert {tuple(row[:2]) for row in rows[1:-1]} == {
        (old.public_id, "Backend"),
        (new.public_id, "Backend"),
    }
