"""GET /api/v1/usage (JSON and CSV) and GET /api/v1/usage/records: the account's usage, billed
through the real hold and settle path, filtered, grouped and paged; never another account's."""

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import holds
from billing.usage import UsageFacts
from tests.api.conftest import ApiClient, assert_error
from tests.factories import AIModelFactory, fund, issue_key

M = 1_000_000
DAY = datetime(2026, 3, 2, tzinfo=UTC)
RANGE = {"since": "2026-03-02", "until": "2026-03-03"}
ENDPOINTS = ["/api/v1/usage", "/api/v1/usage/records"]


def bill(account, key, model, *, charge: int, at: datetime, **usage) -> str:
    """One billed call through hold_place + hold_settle, as the data plane makes it."""
    reference = f"req_{uuid.uuid4().hex}"
    holds.hold_place(account_id=account.pk, reference=reference, amount=charge, api_key_id=key.pk)
    facts = UsageFacts(
        model_id=model.pk,
        family=model.family,
        protocol="openai",
        api_key_id=key.pk,
        group_id=key.group_id,
        **usage,
    )
    holds.hold_settle(reference=reference, charge=charge, usage=facts, at=at)
    return reference


@pytest.fixture
def usage(world, group):
    """Acme: two text calls by `alpha` on day one (same hour), an image call by `beta` the next
    day. Other Co: a text call in the same hour as Acme's."""
    text = group.models.get(slug="text-small")
    image = AIModelFactory(slug="img-1", display_name="Image One", family="image", groups=[group])
    alpha, _ = issue_key(world.account, group, name="alpha")
    beta, _ = issue_key(world.account, group, name="beta")
    theirs, _ = issue_key(world.outsider_account, group, name="theirs")
    fund(world.account, 100)
    fund(world.outsider_account, 100)
    refs = {
        "first": bill(
            world.account,
            alpha,
            text,
            charge=1_250_000,
            at=DAY + timedelta(hours=10, minutes=5),
            input_tokens=1000,
            output_tokens=200,
            cache_read_tokens=50,
            cache_write_tokens=20,
            reasoning_tokens=30,
            latency_ms=900,
            ttft_ms=120,
        ),
        "second": bill(
            world.account,
            alpha,
            text,
            charge=500_000,
            at=DAY + timedelta(hours=10, minutes=40),
            input_tokens=10,
            output_tokens=5,
            stream=True,
        ),
        "image": bill(
            world.account, beta, image, charge=2 * M, at=DAY + timedelta(days=1, hours=5), images=2
        ),
    }
    bill(world.outsider_account, theirs, text, charge=3 * M, at=DAY + timedelta(hours=10))
    return {"alpha": alpha, "beta": beta, "theirs": theirs, "text": text, "image": image, **refs}


def sums(calls, credits, *, input_tokens=0, output_tokens=0, cache_read=0, cache_write=0, **rest):
    return {
        "calls": calls,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "images": rest.get("images", 0),
        "seconds": rest.get("seconds", 0),
        "credits": credits,
    }


TEXT_SUMS = sums(2, 1.75, input_tokens=1010, output_tokens=205, cache_read=50, cache_write=20)
IMAGE_SUMS = sums(1, 2, images=2)


# --- Report ----------------------------------------------------------------------------------


def test_report_by_day_sums_each_day_and_the_total(api, usage):
    response = api.get("/api/v1/usage", RANGE)

    assert response.status_code == 200
    body = response.json()
    assert body["buckets"] == [
        {"bucket": "2026-03-02T00:00:00Z", "label": None, **TEXT_SUMS},
        {"bucket": "2026-03-03T00:00:00Z", "label": None, **IMAGE_SUMS},
    ]
    assert body["totals"] == sums(
        3, 3.75, input_tokens=1010, output_tokens=205, cache_read=50, cache_write=20, images=2
    )
    assert body["filter"] == {
        "since": "2026-03-02T00:00:00Z",
        "until": "2026-03-04T00:00:00Z",
        "group_by": "day",
        "api_key_id": None,
        "project_id": None,
        "member": None,
        "model": None,
        "family": None,
        "tag": None,
    }


def test_amounts_are_credits_not_micro_credits(api, usage):
    body = api.get("/api/v1/usage", {**RANGE, "group_by": "hour"}).json()
    # 1_250_000 + 500_000 micro-credits in the 10 o'clock hour.
    assert body["buckets"][0]["credits"] == 1.75
    records = api.get("/api/v1/usage/records", RANGE).json()["items"]
    assert {r["request_id"]: r["credits"] for r in records}[usage["first"]] == 1.25


def test_report_by_hour(api, usage):
    body = api.get("/api/v1/usage", {**RANGE, "group_by": "hour"}).json()

    assert [(b["bucket"], b["calls"]) for b in body["buckets"]] == [
        ("2026-03-02T10:00:00Z", 2),
        ("2026-03-03T05:00:00Z", 1),
    ]
    assert body["filter"]["group_by"] == "hour"


def test_report_by_model_is_biggest_spend_first_with_display_names(api, usage):
    body = api.get("/api/v1/usage", {**RANGE, "group_by": "model"}).json()

    assert body["buckets"] == [
        {"bucket": "img-1", "label": "Image One", **IMAGE_SUMS},
        {"bucket": "text-small", "label": "text-small", **TEXT_SUMS},
    ]


def test_report_by_key_names_each_key(api, usage):
    body = api.get("/api/v1/usage", {**RANGE, "group_by": "api_key"}).json()

    assert [(b["bucket"], b["label"], b["credits"]) for b in body["buckets"]] == [
        (usage["beta"].public_id, "beta", 2),
        (usage["alpha"].public_id, "alpha", 1.75),
    ]


@pytest.mark.parametrize(
    ("query", "calls", "credits"),
    [
        ({"model": "img-1"}, 1, 2),
        ({"family": "text"}, 2, 1.75),
        ({"family": "video"}, 0, 0),
        ({"since": "2026-03-03"}, 1, 2),
        ({"until": "2026-03-02"}, 2, 1.75),
        ({"since": "2026-03-02T10:30:00Z", "until": "2026-03-02T10:45:00"}, 2, 1.75),
        ({"since": "2026-03-02T11:00:00+00:00"}, 1, 2),
    ],
)
def test_filters_narrow_the_report(api, usage, query, calls, credits):
    body = api.get("/api/v1/usage", {**RANGE, **query}).json()
    assert (body["totals"]["calls"], body["totals"]["credits"]) == (calls, credits)


def test_a_date_as_until_includes_that_whole_day(api, usage):
    body = api.get("/api/v1/usage", {"since": "2026-03-03", "until": "2026-03-03"}).json()

    assert body["filter"]["since"] == "2026-03-03T00:00:00Z"
    assert body["filter"]["until"] == "2026-03-04T00:00:00Z"
    assert body["totals"]["calls"] == 1  # the image call at 05:00


def test_filter_by_key(api, usage):
    alpha = usage["alpha"].public_id

    body = api.get("/api/v1/usage", {**RANGE, "api_key_id": alpha, "group_by": "api_key"}).json()

    assert [b["bucket"] for b in body["buckets"]] == [alpha]
    assert body["totals"] == TEXT_SUMS
    assert body["filter"]["api_key_id"] == alpha


def test_empty_parameters_mean_no_filter(api, usage):
    query = {**RANGE, "api_key_id": "", "model": "", "family": "", "group_by": "", "format": ""}
    body = api.get("/api/v1/usage", query).json()
    assert body["totals"]["calls"] == 3 and body["filter"]["group_by"] == "day"


def test_default_range_is_the_last_30_days(world, api, group):
    key, _ = issue_key(world.account, group)
    model = group.models.get()
    fund(world.account, 10)
    now = timezone.now()
    bill(world.account, key, model, charge=M, at=now - timedelta(hours=1))
    bill(world.account, key, model, charge=2 * M, at=now - timedelta(days=40))

    body = api.get("/api/v1/usage").json()

    assert body["totals"]["credits"] == 1
    since = datetime.fromisoformat(body["filter"]["since"])
    assert since == datetime.combine(
        (now - timedelta(days=29)).date(), datetime.min.time(), tzinfo=UTC
    )


def test_no_usage_gives_empty_buckets_and_zero_totals(api, group):
    body = api.get("/api/v1/usage", RANGE).json()
    assert body["buckets"] == []
    assert body["totals"] == sums(0, 0)


def test_never_counts_another_accounts_usage(api, outsider_api, usage):
    assert api.get("/api/v1/usage", RANGE).json()["totals"]["credits"] == 3.75
    assert outsider_api.get("/api/v1/usage", RANGE).json()["totals"]["credits"] == 3


# --- CSV -------------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


@pytest.mark.parametrize("group_by", ["day", "hour", "model", "api_key"])
def test_csv_has_a_row_per_bucket_and_a_totals_row_equal_to_the_json(api, usage, group_by):
    query = {**RANGE, "group_by": group_by}
    report = api.get("/api/v1/usage", query).json()

    response = api.get("/api/v1/usage", {**query, "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="usage-2026-03-02-to-2026-03-03-by-{group_by}.csv"'
    )
    header, *rows, total = read_csv(response)
    assert header == [
        "bucket",
        "label",
        "calls",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "images",
        "seconds",
        "credits",
    ]
    assert [row[0] for row in rows] == [bucket["bucket"] for bucket in report["buckets"]]
    assert [row[1] for row in rows] == [bucket["label"] or "" for bucket in report["buckets"]]
    assert total[:2] == ["total", ""]
    as_json = {name: Decimal(value) for name, value in zip(header[2:], total[2:], strict=True)}
    assert as_json == {name: Decimal(str(value)) for name, value in report["totals"].items()}
    assert total[-1] == "3.75"


def test_csv_writes_tiny_amounts_as_decimals(world, api, group):
    key, _ = issue_key(world.account, group)
    fund(world.account, 1)
    bill(world.account, key, group.models.get(), charge=1, at=DAY + timedelta(hours=1))

    rows = read_csv(api.get("/api/v1/usage", {**RANGE, "format": "csv"}))

    assert rows[1][-1] == rows[2][-1] == "0.000001"


def test_csv_defuses_key_names_a_spreadsheet_would_run(world, api, group):
    key, _ = issue_key(world.account, group, name='=HYPERLINK("http://evil.test")')
    fund(world.account, 1)
    bill(world.account, key, group.models.get(), charge=M, at=DAY + timedelta(hours=1))

    rows = read_csv(api.get("/api/v1/usage", {**RANGE, "group_by": "api_key", "format": "csv"}))

    assert rows[1][1] == '\'=HYPERLINK("http://evil.test")'


def test_csv_of_no_usage_is_a_header_and_a_zero_totals_row(api, group):
    rows = read_csv(api.get("/api/v1/usage", {**RANGE, "format": "csv"}))
    assert len(rows) == 2
    assert rows[1] == ["total", "", "0", "0", "0", "0", "0", "0", "0", "0"]


# --- Records ---------------------------------------------------------------------------------


def test_records_list_single_requests_newest_first(api, usage):
    response = api.get("/api/v1/usage/records", RANGE)

    assert response.status_code == 200
    body = response.json()
    assert [item["request_id"] for item in body["items"]] == [
        usage["image"],
        usage["second"],
        usage["first"],
    ]
    assert (body["total"], body["page"], body["page_size"]) == (3, 1, 50)
    assert body["items"][2] == {
        "request_id": usage["first"],
        "created_at": "2026-03-02T10:05:00Z",
        "api_key_id": usage["alpha"].public_id,
        "api_key_name": "alpha",
        "model": "text-small",
        "family": "text",
        "protocol": "openai",
        "stream": False,
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_read_tokens": 50,
        "cache_write_tokens": 20,
        "reasoning_tokens": 30,
        "images": 0,
        "seconds": 0,
        "credits": 1.25,
        "latency_ms": 900,
        "ttft_ms": 120,
    }
    assert body["items"][1]["stream"] is True and body["items"][1]["latency_ms"] is None


def test_records_take_the_same_filters(api, usage):
    alpha = usage["alpha"].public_id

    by_key = api.get("/api/v1/usage/records", {**RANGE, "api_key_id": alpha}).json()
    by_family = api.get("/api/v1/usage/records", {**RANGE, "family": "image"}).json()

    assert [item["request_id"] for item in by_key["items"]] == [usage["second"], usage["first"]]
    assert by_key["total"] == 2
    assert [item["request_id"] for item in by_family["items"]] == [usage["image"]]
    assert by_family["total"] == 1


def test_records_total_comes_from_the_rollup(api, usage):
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/v1/usage/records", RANGE).json()["total"] == 3
    log_queries = [q["sql"].lower() for q in queries if "billing_usagerecord" in q["sql"].lower()]
    # The page of the log is read; the request log is never counted.
    assert log_queries and not any("count(" in sql for sql in log_queries)
    assert any("billing_usagerollup" in q["sql"].lower() for q in queries)


def test_records_pages(api, usage):
    pages = [
        api.get("/api/v1/usage/records", {**RANGE, "page": page, "page_size": 2}).json()
        for page in (1, 2, 3)
    ]

    assert [[item["request_id"] for item in page["items"]] for page in pages] == [
        [usage["image"], usage["second"]],
        [usage["first"]],
        [],
    ]
    assert {page["total"] for page in pages} == {3}
    assert [(page["page"], page["page_size"]) for page in pages] == [(1, 2), (2, 2), (3, 2)]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"page_size": 201}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
    ],
)
def test_records_paging_out_of_range_is_refused(api, query, param):
    assert_error(api.get("/api/v1/usage/records", query), 400, "invalid_param", param)


# --- Errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_another_accounts_key_is_not_found(api, outsider_api, usage, path):
    theirs = usage["theirs"].public_id

    error = assert_error(api.get(path, {"api_key_id": theirs}), 404, "not_found")

    assert error["type"] == "not_found_error"
    # The same id works for its own account: the 404 reveals nothing.
    assert outsider_api.get(path, {"api_key_id": theirs}).status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_unknown_key_is_not_found(api, path):
    assert_error(api.get(path, {"api_key_id": "key_nope"}), 404, "not_found")


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45"}, "until"),
        ({"since": "2026-02-30T10:00"}, "since"),
        ({"since": "2026-03-05", "until": "2026-03-01"}, "until"),
        ({"since": "2024-01-01", "until": "2026-03-01"}, "since"),
        ({"family": "audio"}, "family"),
        ({"model": "no-such-model"}, "model"),
        ({"until": "9999-12-31"}, "until"),  # its next day overflowed: a 500 (fuzzing)
        ({"since": "0001-01-01"}, "since"),
        ({"until": "9999-12-31T23:30:00"}, "until"),  # rounded up to the hour: overflowed too
    ],
)
@pytest.mark.parametrize("path", ENDPOINTS)
def test_bad_filters_are_refused_naming_the_field(api, group, path, query, param):
    error = assert_error(api.get(path, query), 400, "invalid_param", param)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", [*ENDPOINTS, "/api/v1/keys/key_%00"])
def test_a_nul_character_is_refused_not_taken_for_an_outage(api, path):
    # Found by fuzzing on PostgreSQL, which takes no NUL in text: a 503 "briefly unavailable"
    # (its DataError is a DatabaseError). SQLite stores NUL: there, no such key.
    response = api.get(path, {"api_key_id": "key_\x00"} if "usage" in path else None)
    assert response.status_code in (400, 404), response.content
    assert response.json()["error"]["code"] in ("invalid_param", "not_found")


@pytest.mark.parametrize(
    ("query", "param"), [({"group_by": "week"}, "group_by"), ({"format": "xml"}, "format")]
)
def test_bad_report_options_are_refused(api, query, param):
    assert_error(api.get("/api/v1/usage", query), 400, "invalid_param", param)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_an_inference_key_is_refused(world, group, client, path):
    _, secret = issue_key(world.account, group)
    error = assert_error(ApiClient(client, secret).get(path), 401, "invalid_api_key")
    assert "Inference keys" in error["message"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_key_is_refused(client, db, path):
    assert_error(client.get(path), 401, "invalid_api_key")
