"""Tags on calls (issue 16, item 3): `X-ByteSpike-Tags` and the protocols' own metadata fields,
validated before anything is held, written on the usage row and the per-tag rollup, for text on
every protocol (whole and streamed), images and tasks."""

import json

import pytest

from billing.invariants import wallet_problems
from billing.models import Hold, UsageRecord, UsageTagRollup
from billing.tags import call_tags, tag_filter
from core.errors import ApiError
from generation import routing
from generation.models import Task
from tests.conftest import read_body
from tests.factories import funded_keys
from tests.tasks import run_until_done

M = 1_000_000
CHAT = {"model": "gpt-4.1", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 20,
            "messages": [{"role": "user", "content": "Hi"}]}  # fmt: skip
GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"


# --- Parsing -------------------------------------------------------------------------------------


def test_header_tags_are_sorted_key_value_pairs():
    assert call_tags(" team=search, env=prod ,") == ("env=prod", "team=search")
    assert call_tags("") == () and call_tags(None) == ()
    assert call_tags("a=1,a=1") == ("a=1",)  # the same tag twice is one tag


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("team", "team"),
        ("team=", "team="),
        ("=search", "=search"),
        ("team=search dev", "team=search dev"),
        ("tëam=x", "tëam=x"),
        ("a=1,a=2", "a=2"),
        ("k=" + "v" * 65, "k=" + "v" * 65),
    ],
)
def test_a_malformed_header_tag_is_a_400_naming_it(header, named):
    with pytest.raises(ApiError) as raised:
        call_tags(header)
    assert raised.value.status == 400 and raised.value.code == "invalid_tag"
    assert f"'{named}'" in raised.value.message


def test_at_most_ten_tags():
    assert len(call_tags(",".join(f"k{n}=v" for n in range(10)))) == 10
    with pytest.raises(ApiError, match="at most 10 tags; 11 given"):
        call_tags(",".join(f"k{n}=v" for n in range(11)))


def test_protocol_metadata_becomes_tags_only_where_it_fits_and_never_refuses():
    tags = call_tags(
        "team=search",
        metadata={"team": "other", "env": "prod", "note": "has spaces", "n": 3},
        user="alice@example.com",  # an OpenAI user is often an e-mail: not a tag, not an error
    )
    assert tags == ("env=prod", "team=search")  # the header wins a shared key
    assert call_tags(None, user="user_42") == ("user=user_42",)
    full = ",".join(f"k{n}=v" for n in range(10))
    assert len(call_tags(full, metadata={"env": "prod"})) == 10  # no room: dropped, no error


def test_report_filters_name_a_tag_key_colon_value():
    assert tag_filter("team:search") == "team=search"
    for bad in ("team", "team=search", ":x", "team:"):
        with pytest.raises(ApiError):
            tag_filter(bad)


# --- Calls ---------------------------------------------------------------------------------------


@pytest.fixture
def keys(world, db, settings):
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    routing.forget()
    yield funded_keys(world.account, world.owner, credits=20)
    routing.forget()


def post(client, path, key, body, **headers):
    return client.post(
        path, data=json.dumps(body), content_type="application/json",
        headers={"x-api-key": key, **headers},
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "key", "body", "extra"),
    [
        ("/v1/chat/completions", "default", CHAT, {}),
        ("/v1/chat/completions", "default", {**CHAT, "stream": True}, {}),
        ("/v1/responses", "default", {"model": "gpt-4.1", "input": "Hi"}, {}),
        ("/v1/messages", "claude-default", MESSAGES, {"anthropic-version": "2023-06-01"}),
        (GEMINI, "gemini-default", {"contents": [{"parts": [{"text": "Hi"}]}]}, {}),
    ],
)  # fmt: skip
def test_tags_of_a_text_call_reach_its_usage_row_and_rollup(client, world, keys, path, key,
                                                            body, extra):  # fmt: skip
    response = post(client, path, keys[key], body, **{"X-ByteSpike-Tags": "team=search,env=prod"},
                    **extra)  # fmt: skip
    assert response.status_code == 200
    read_body(response)  # a stream settles at its end
    record = UsageRecord.objects.get()
    assert record.tags == "env=prod,team=search"
    rollups = dict(UsageTagRollup.objects.values_list("tag", "credits"))
    assert rollups == {"env=prod": record.credits, "team=search": record.credits}
    assert wallet_problems(world.account.pk) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "key", "body", "extra", "envelope"),
    [
        ("/v1/chat/completions", "default", CHAT, {}, "openai"),
        ("/v1/messages", "claude-default", MESSAGES, {"anthropic-version": "2023-06-01"},
         "anthropic"),
        (GEMINI, "gemini-default", {"contents": [{"parts": [{"text": "Hi"}]}]}, {}, "gemini"),
        ("/v1/images/generations", "default", {"model": "gpt-image-1", "prompt": "a fox"}, {},
         "openai"),
        ("/v1/tasks/submit", "gemini-default",
         {"model": "veo-3-fast", "params": {"prompt": "a fox", "duration": 4}}, {}, "openai"),
    ],
)  # fmt: skip
def test_an_invalid_tag_is_a_400_in_the_callers_envelope_and_holds_nothing(
    client, world, keys, path, key, body, extra, envelope
):
    response = post(client, path, keys[key], body, **{"X-ByteSpike-Tags": "team=search dev"},
                    **extra)  # fmt: skip
    assert response.status_code == 400
    payload = response.json()
    message = payload["error"]["message"]
    assert "'team=search dev'" in message
    if envelope == "anthropic":
        assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    elif envelope == "gemini":
        assert payload["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert payload["error"]["code"] == "invalid_tag"
    assert not UsageRecord.objects.exists() and not Hold.objects.exists()
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_openai_metadata_and_user_and_anthropic_user_id_are_tags(client, world, keys):
    body = {**CHAT, "metadata": {"feature": "search"}, "user": "user_7"}
    assert post(client, "/v1/chat/completions", keys["default"], body).status_code == 200
    anthropic = {**MESSAGES, "metadata": {"user_id": "user_8"}}
    response = post(client, "/v1/messages", keys["claude-default"], anthropic,
                    **{"anthropic-version": "2023-06-01"})  # fmt: skip
    assert response.status_code == 200
    assert sorted(UsageRecord.objects.values_list("tags", flat=True)) == [
        "feature=search,user=user_7",
        "user=user_8",
    ]


@pytest.mark.django_db
def test_tags_of_an_image_call(client, world, keys):
    response = post(client, "/v1/images/generations", keys["default"],
                    {"model": "gpt-image-1", "prompt": "a fox", "user": "u1"},
                    **{"X-ByteSpike-Tags": "team=art"})  # fmt: skip
    assert response.status_code == 200, response.content[:300]
    assert UsageRecord.objects.get().tags == "team=art,user=u1"


@pytest.mark.django_db
def test_tags_of_a_task_are_kept_until_it_is_billed(client, world, keys, sandbox_clock):
    body = {"model": "veo-3-fast", "params": {"prompt": "a fox [sandbox:seconds=0.3]",
                                              "duration": 4}}  # fmt: skip
    response = post(client, "/v1/tasks/submit", keys["gemini-default"], body,
                    **{"X-ByteSpike-Tags": "team=video"})  # fmt: skip
    assert response.status_code == 200
    task = Task.objects.get(public_id=response.json()["task_id"])
    assert task.tags == "team=video"
    run_until_done(task, sandbox_clock)
    record = UsageRecord.objects.get(request_id=task.public_id)
    assert record.tags == "team=video"
    assert UsageTagRollup.objects.get().credits == record.credits > 0
    assert wallet_problems(world.account.pk) == []


# --- Reports -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_usage_by_tag_and_filtered_by_tag_in_the_api_and_the_console(client, world, keys,
                                                                      client_for):  # fmt: skip
    from keys.services import management_key_issue

    for tags in ("team=search,env=prod", "team=search", "team=ads", ""):
        headers = {"X-ByteSpike-Tags": tags} if tags else {}
        assert (
            post(client, "/v1/chat/completions", keys["default"], CHAT, **headers).status_code
            == 200
        )
    credits = dict(UsageRecord.objects.values_list("tags", "credits"))
    _, secret = management_key_issue(account=world.account, actor=world.admin, name="CI")
    api = {"x-api-key": secret}
    report = client.get("/api/v1/usage", {"group_by": "tag"}, headers=api).json()
    by_tag = {b["bucket"]: b for b in report["buckets"]}
    assert set(by_tag) == {"team:search", "env:prod", "team:ads"}
    assert by_tag["team:search"]["calls"] == 2
    assert report["totals"]["calls"] == 4  # every call once, tagged or not
    search = client.get("/api/v1/usage", {"tag": "team:search", "group_by": "model"},
                        headers=api).json()  # fmt: skip
    assert search["totals"]["calls"] == 2 and search["filter"]["tag"] == "team:search"
    expected = credits["env=prod,team=search"] + credits["team=search"]
    assert round(search["totals"]["credits"] * M) == expected
    records = client.get("/api/v1/usage/records", {"tag": "team:search"}, headers=api).json()
    assert records["total"] == 2 and len(records["items"]) == 2
    bad = client.get("/api/v1/usage", {"tag": "team=search"}, headers=api)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tag"

    console = client_for(world.owner)
    page = console.get("/usage/", {"group_by": "tag", "preset": "today"})
    assert page.status_code == 200 and "team:search" in page.text
    csv_text = console.get("/usage/export.csv", {"tag": "team:search", "preset": "today"}).text
    assert "tag: team:search" in csv_text.splitlines()[0]
