"""The staff operations page (console/operations.py) and the Grafana dashboard it mirrors
(docs/grafana/bytespike.json): who sees it, what real calls make it show, and that every metric
the dashboard queries is one /metrics serves."""

import json
import re
import time

import pytest
from asgiref.sync import async_to_sync
from prometheus_client.parser import text_string_to_metric_families

from catalogue.models import Deployment
from core import metrics
from generation import routing
from generation.breakers import breakers
from tests.factories import UserFactory, funded_keys
from tests.processes import ROOT

pytestmark = pytest.mark.django_db
PAGE = "/operations/"
DASHBOARD = ROOT / "docs" / "grafana" / "bytespike.json"


@pytest.fixture
def staff(client, world):
    client.force_login(UserFactory(email="ops@bytespike.test", is_staff=True))
    return client


@pytest.fixture
def keys(world):
    routing.forget()
    return funded_keys(world.account, world.owner, credits=20)


def chat(client, key, **extra):
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi"}], **extra}
    return client.post(
        "/v1/chat/completions", json.dumps(body), content_type="application/json",
        headers={"x-api-key": key},
    )  # fmt: skip


def figure(page: str, key: str) -> str:
    """The text of one headline figure's card."""
    start = page.index(f'data-figure="{key}"')
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page[start : page.index("</div>", start)]))


def test_only_staff_see_the_page_and_its_nav_entry(client, world):
    assert client.get(PAGE).status_code == 302  # to the log-in page
    client.force_login(world.owner)
    assert client.get(PAGE).status_code == 404
    assert 'href="/operations/"' not in client.get("/").content.decode()
    client.force_login(UserFactory(is_staff=True))
    page = client.get(PAGE)
    assert page.status_code == 200
    assert 'href="/operations/"' in page.content.decode()  # the staff nav entry


def test_the_figures_are_what_happened_since_the_last_refresh(
    staff, keys, django_capture_on_commit_callbacks
):
    first = staff.get(PAGE).content.decode()
    assert "Since the processes started" in first
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            assert chat(staff, keys["default"]).status_code == 200
        assert chat(staff, keys["default"], model="no-such-model").status_code == 400
    time.sleep(0.6)  # a refresh less than half a second after the last is no base for a rate
    refreshed = staff.get(PAGE, headers={"HX-Request": "true"}).content.decode()
    assert refreshed.lstrip().startswith('<div id="operations-headline"')  # the polled fragment
    assert 'hx-trigger="every 5s"' in refreshed
    assert re.search(r"Over the last \d+ seconds", refreshed)
    assert "4 answered" in figure(refreshed, "requests")
    assert "/s" in figure(refreshed, "requests")
    assert "0.0%" in figure(refreshed, "errors")
    assert "ms" in figure(refreshed, "gateway-added") and "ms" in figure(refreshed, "upstream")
    assert "half of them of at most 1 call" in figure(refreshed, "settlement-lag")
    charged = float(re.search(r"charged ([\d,.]+)", figure(refreshed, "credits"))[1])
    assert charged > 0
    # Nothing happened since: the next refresh says so.
    time.sleep(0.6)
    quiet = staff.get(PAGE, headers={"HX-Request": "true"}).content.decode()
    assert "0 answered" in figure(quiet, "requests")
    assert "0.00" in figure(quiet, "credits")


def test_holds_tasks_and_open_breakers_are_read_where_they_are_true(staff, keys, settings):
    page = staff.get(PAGE).content.decode()
    for kind in ("request", "task", "lease"):
        assert f'data-holds="{kind}"' in page
    assert 'data-tasks="pending"' in page and 'data-tasks="running"' in page
    assert "Every breaker is closed" in page

    primary = Deployment.objects.get(model__slug="gpt-4.1", channel__slug="openai")
    for _ in range(settings.BYTESPIKE_BREAKER_FAILURES):
        async_to_sync(breakers.failed)(primary.pk)
    page = staff.get(PAGE).content.decode()
    assert 'data-breaker="open"' in page and "gpt-4.1" in page


def test_quantiles_interpolate_inside_their_bucket_as_prometheus_does():
    buckets = [[0.1, 10.0], [0.5, 30.0], [1.0, 40.0], [float("inf"), 40.0]]
    assert metrics.quantile(0.25, buckets) == pytest.approx(0.1)
    assert metrics.quantile(0.5, buckets) == pytest.approx(0.3)  # halfway through (0.1, 0.5]
    assert metrics.quantile(1.0, buckets) == pytest.approx(1.0)
    assert metrics.quantile(0.5, [[0.1, 0.0], [float("inf"), 0.0]]) is None
    assert metrics.quantile(0.99, [[0.1, 1.0], [float("inf"), 10.0]]) == 0.1  # beyond the last
    # Counts (calls per batch) are read as the bucket's bound: eight one-call batches are "1".
    calls = [[1.0, 8.0], [2.0, 8.0], [float("inf"), 8.0]]
    assert metrics.quantile(0.5, calls) == pytest.approx(0.5)
    assert metrics.quantile(0.5, calls, interpolate=False) == 1.0


def test_a_difference_survives_a_process_restart():
    earlier = {"counters": {"requests": {"200": 10.0}}, "histograms": {"lag": [[1.0, 5.0]]}}
    later = {
        "counters": {"requests": {"200": 14.0, "500": 1.0}},
        "histograms": {"lag": [[1.0, 7.0]]},
    }
    assert metrics.difference(later, earlier) == {
        "counters": {"requests": {"200": 4.0, "500": 1.0}},
        "histograms": {"lag": [[1.0, 2.0]]},
    }
    restarted = {"counters": {"requests": {"200": 3.0}}, "histograms": {"lag": [[1.0, 1.0]]}}
    assert metrics.difference(restarted, earlier)["counters"]["requests"] == {"200": 3.0}


def test_every_metric_the_dashboard_queries_is_served(client, keys, settings):
    settings.BYTESPIKE_METRICS_TOKEN = "token-0123456789"
    assert chat(client, keys["default"]).status_code == 200
    scrape = client.get("/metrics", headers={"Authorization": "Bearer token-0123456789"})
    served = {
        sample.name
        for family in text_string_to_metric_families(scrape.content.decode())
        for sample in family.samples
    }
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    assert len(queries) > 20
    named = {name for query in queries for name in re.findall(r"\bbytespike_[a-z_]+", query)}
    # Histograms are queried by their buckets and counts; a family that no call has touched
    # yet still has its samples declared in the scrape's metadata (see ``# TYPE`` lines).
    declared = set(re.findall(r"^# TYPE (\S+)", scrape.content.decode(), re.MULTILINE))
    missing = {
        name
        for name in named
        if name not in served
        and name.removesuffix("_bucket").removesuffix("_count") not in declared
        and name.removesuffix("_total") not in declared
    }
    assert not missing, missing
    assert all(panel.get("datasource", {}).get("uid", "${DS_PROMETHEUS}") == "${DS_PROMETHEUS}"
               for panel in dashboard["panels"])  # fmt: skip
