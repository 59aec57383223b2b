"""The console's playground: the page for every role, the model list per key, the estimate,
text chat streamed through the text gateway, sync images (generate and edit) and task submit;
who may use which key, viewers refused on every POST, CSRF on every POST."""

import io
import json
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from billing.invariants import wallet_problems
from billing.models import Hold, UsageRecord, Wallet
from catalogue.models import AIModel, RoutingGroup
from generation.models import Task
from keys.models import ApiKey
from tests.conftest import read_body
from tests.factories import funded_catalogue, issue_key
from tests.protocols import png

pytestmark = pytest.mark.django_db

M = 1_000_000
HTMX = {"HX-Request": "true"}
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def keys(world, settings):
    """Keys of the world's account: two of the owner's, one of the developer's."""
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    groups = funded_catalogue(world.account)
    return SimpleNamespace(
        groups=groups,
        gemini=issue_key(world.account, groups["gemini-default"], actor=world.owner,
                         name="Owner gemini")[0],
        openai=issue_key(world.account, groups["default"], actor=world.owner,
                         name="Owner openai")[0],
        dev=issue_key(world.account, groups["gemini-default"], actor=world.developer,
                      name="Dev gemini")[0],
    )  # fmt: skip


def chat(client, key, text="Hello", model="gemini-2.5-flash", **extra):
    body = {"key": key.public_id, "model": model, "messages": [{"role": "user", "content": text}]}
    body.update(extra)
    return client.post(
        reverse("generation:playground-chat"), json.dumps(body), content_type="application/json"
    )


def chat_streamed(user, body: dict):
    """POST a chat turn and read the whole stream in one event loop, as an ASGI server would
    (the upstream stream belongs to the loop that opened it). Returns (response, body)."""

    async def go():
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.post(
            reverse("generation:playground-chat"), json.dumps(body),
            content_type="application/json",
        )  # fmt: skip
        if not response.streaming:
            return response, response.content
        return response, b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(go)()


def turn(key, text="Hello", model="gemini-2.5-flash", **extra) -> dict:
    return {"key": key.public_id, "model": model,
            "messages": [{"role": "user", "content": text}], **extra}  # fmt: skip


def frames(body: bytes) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded (except [DONE])."""
    out = []
    for line in body.decode().splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def empty(world):
    """Spend the whole wallet (a staff debit)."""
    from billing.services import wallet_admin_adjust

    balance = Wallet.objects.get(account=world.account).balance
    wallet_admin_adjust(account=world.account, amount=-balance, actor=world.owner, note="empty")


def submit_task(client, key, **fields):
    data = {"key": key.public_id, "model": "veo-3-fast", "prompt": "A fox", "duration": "4"}
    data.update(fields)
    return client.post(reverse("generation:playground-task"), data, headers=HTMX)


# --- The page ----------------------------------------------------------------------------------


def test_the_page_needs_a_login(client, db):
    response = client.get(reverse("generation:playground"))
    assert response.status_code == 302 and "/auth/login/" in response.url


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_may_use_every_key(world, keys, client_for, role):
    page = client_for(getattr(world, role)).get(reverse("generation:playground")).text
    for key in (keys.gemini, keys.openai, keys.dev):
        assert f'value="{key.public_id}"' in page
    assert "playground-readonly" not in page
    assert 'id="chat-form"' in page  # the first key's group has text models: a chat


def test_developers_are_offered_only_their_own_keys(world, keys, client_for):
    page = client_for(world.developer).get(reverse("generation:playground")).text
    assert f'value="{keys.dev.public_id}"' in page
    assert keys.gemini.public_id not in page and keys.openai.public_id not in page
    assert "You can use the keys you created." in page


def test_revoked_and_expired_keys_are_not_offered(world, keys, client_for):
    from datetime import timedelta

    from django.utils import timezone

    from keys.models import ApiKey

    ApiKey.objects.filter(pk=keys.gemini.pk).update(status="revoked")
    ApiKey.objects.filter(pk=keys.openai.pk).update(expires_at=timezone.now() - timedelta(days=1))
    page = client_for(world.owner).get(reverse("generation:playground")).text
    assert keys.gemini.public_id not in page and keys.openai.public_id not in page
    assert keys.dev.public_id in page


def test_a_viewer_sees_the_page_with_every_control_disabled(world, keys, client_for):
    response = client_for(world.viewer).get(
        reverse("generation:playground") + f"?key={keys.gemini.public_id}&model=veo-3-fast"
    )
    assert response.status_code == 200
    page = response.text
    assert 'id="playground-readonly"' in page and "Read-only." in page
    # The picker and the task form sit in disabled fieldsets: nothing can be changed or sent.
    assert page.count('class="plain-fieldset pg-picker-fields" disabled') == 1
    assert '<fieldset class="plain-fieldset" disabled>' in page
    assert "Submit task" in page


def test_an_outsider_sees_only_their_own_account(world, keys, client_for):
    response = client_for(world.outsider).get(
        reverse("generation:playground") + f"?key={keys.gemini.public_id}"
    )
    assert response.status_code == 200
    assert keys.gemini.public_id not in response.text
    assert "No key to use" in response.text


def test_changing_the_key_reloads_the_model_list_grouped_by_family(world, keys, client_for):
    client = client_for(world.owner)
    response = client.get(
        reverse("generation:playground") + f"?key={keys.gemini.public_id}",
        headers={**HTMX, "HX-Target": "playground-models"},
    )
    assert response.status_code == 200
    html = response.text
    assert "<html" not in html
    assert html.lstrip().startswith('<div class="field" id="playground-models">')
    for family in ("Text", "Image", "Video"):
        assert f'<optgroup label="{family}">' in html
    assert 'value="veo-3-fast"' in html and 'value="imagen-4"' in html
    assert 'value="gpt-4.1"' not in html  # another group's model
    # The panel comes along, out of band, for the first text model.
    assert 'id="playground-panel"' in html and 'hx-swap-oob="true"' in html
    assert 'data-family="text"' in html


@pytest.mark.parametrize(
    ("model", "family", "has"),
    [
        ("gemini-2.5-flash", "text", ['id="chat-form"', 'name="temperature"', 'name="system"']),
        ("imagen-4", "image", ['id="image-form"', 'id="task-form"', 'name="n"']),
        ("veo-3-fast", "video", ['id="task-form"', 'name="duration"', 'value="8"', "16:9"]),
    ],
)
def test_the_panel_follows_the_models_family(world, keys, client_for, model, family, has):
    response = client_for(world.owner).get(
        reverse("generation:playground") + f"?key={keys.gemini.public_id}&model={model}",
        headers={**HTMX, "HX-Target": "playground-panel"},
    )
    html = response.text
    assert html.lstrip().startswith('<section class="card pg-panel" id="playground-panel"')
    assert f'data-family="{family}"' in html
    for fragment in has:
        assert fragment in html


def test_image_edit_is_offered_for_models_that_edit(world, keys, client_for):
    client = client_for(world.owner)
    url = reverse("generation:playground")
    edits = client.get(f"{url}?key={keys.openai.public_id}&model=gpt-image-1").text
    no_edits = client.get(f"{url}?key={keys.gemini.public_id}&model=imagen-4").text
    assert 'name="mask"' in edits and 'value="edit"' in edits
    assert 'name="mask"' not in no_edits


# --- The estimate ------------------------------------------------------------------------------


def estimate(client, key, **params):
    query = {"key": key.public_id, "model": "veo-3-fast", **params}
    return client.get(reverse("generation:playground-estimate"), query, headers=HTMX)


def test_the_estimate_follows_the_params(world, keys, client_for):
    client = client_for(world.owner)
    model = AIModel.objects.get(slug="veo-3-fast")
    response = estimate(client, keys.gemini, duration="8")
    assert response.status_code == 200
    assert f'<strong class="estimate-value">{8 * model.video_price_per_second / M:.2f}' in (
        response.text
    )
    assert 'id="task-estimate"' in response.text
    bad = estimate(client, keys.gemini, duration="7")
    assert bad.status_code == 422
    assert "veo-3-fast makes videos of 4, 6, 8 seconds." in bad.text


def test_the_estimate_applies_the_keys_group_multiplier(world, keys, client_for):
    double = RoutingGroup.objects.create(slug="double", name="Double", rate_multiplier="2.000")
    AIModel.objects.get(slug="veo-3-fast").groups.add(double)
    key, _ = issue_key(world.account, double, actor=world.owner, name="Double")
    response = estimate(client_for(world.owner), key, duration="4")
    assert '<strong class="estimate-value">1.20</strong>' in response.text  # 4 s x 0.15 x 2


def test_the_estimate_for_images_now(world, keys, client_for):
    response = client_for(world.owner).get(
        reverse("generation:playground-estimate"),
        {"key": keys.gemini.public_id, "model": "imagen-4", "n": "3", "mode": "now"},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert 'id="now-estimate"' in response.text
    assert '<strong class="estimate-value">0.12</strong>' in response.text


# --- Text chat -----------------------------------------------------------------------------


def test_chat_streams_and_bills_the_key_with_the_playground_protocol(world, keys, client_for):
    response, body = chat_streamed(world.owner, turn(
        keys.gemini, "Tell me a story [sandbox:words=12]", temperature="0.5", max_tokens="200",
        system="Be brief.",
    ))  # fmt: skip
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    request_id = response["X-Request-ID"]
    assert request_id.startswith("req_")
    chunks = frames(body)
    assert chunks[-1] == "[DONE]"
    text = "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks[:-1]
        for choice in chunk.get("choices", [])
    )
    assert len(text.split()) >= 12
    usage = next(chunk["usage"] for chunk in chunks[:-1] if chunk.get("usage"))
    record = UsageRecord.objects.get(request_id=request_id)
    assert record.protocol == "playground" and record.family == "text" and record.stream
    assert record.api_key_id == keys.gemini.pk and record.account_id == world.account.pk
    assert record.output_tokens == usage["completion_tokens"] and record.credits > 0
    assert Wallet.objects.get(account=world.account).held == 0
    assert wallet_problems(world.account.pk) == []
    # The page then shows the tokens and credits of that call.
    client = client_for(world.owner)
    shown = client.get(reverse("generation:playground-usage", args=[request_id]), headers=HTMX)
    assert shown.status_code == 200
    assert f"{record.output_tokens} out" in shown.text and "credits" in shown.text


def test_a_conversation_carries_its_turns(world, keys, client_for):
    body = {
        "key": keys.gemini.public_id,
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Again"},
        ],
    }
    response, stream = chat_streamed(world.owner, body)
    assert response.status_code == 200
    assert frames(stream)[-1] == "[DONE]"
    record = UsageRecord.objects.get(request_id=response["X-Request-ID"])
    assert record.input_tokens > 0


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        ({"model": "gpt-4.1"}, 403, "model_not_in_group"),
        ({"model": "veo-3-fast"}, 400, "invalid_param"),
        ({"model": "no-such-model"}, 400, "model_not_found"),
        ({"temperature": "hot"}, 400, "invalid_param"),
        ({"temperature": "3"}, 400, "invalid_param"),
        ({"max_tokens": "0"}, 400, "invalid_param"),
        ({"max_tokens": "999999"}, 400, "invalid_param"),
        ({"messages": []}, 400, "invalid_param"),
        ({"messages": [{"role": "system", "content": "x"}]}, 400, "invalid_param"),
    ],
)
def test_chat_refusals_are_json_errors_and_free(world, keys, client_for, extra, status, code):
    response = chat(client_for(world.owner), keys.gemini, **extra)
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert response["X-Request-ID"].startswith("req_")
    assert not UsageRecord.objects.exists()
    assert Wallet.objects.get(account=world.account).held == 0


def test_chat_without_credits_is_402(world, keys, client_for):
    empty(world)
    response = chat(client_for(world.owner), keys.gemini)
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_balance"


def test_chat_that_is_not_json_is_refused(world, keys, client_for):
    response = client_for(world.owner).post(
        reverse("generation:playground-chat"), {"key": keys.gemini.public_id}
    )
    assert response.status_code == 400
    assert "JavaScript" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body", ["[" * 100_000 + "]" * 100_000, '{"temperature": NaN}', '{"model": "\\ud800"}', "[]"]
)
def test_chat_bodies_no_upstream_could_take_are_a_400(world, keys, client_for, body):
    # The data plane's JSON reader (the fuzzers' findings): no 500, nothing held or billed.
    response = client_for(world.owner).post(
        reverse("generation:playground-chat"), body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_param"
    assert not UsageRecord.objects.exists()
    assert Wallet.objects.get(account=world.account).held == 0


def test_usage_of_another_account_is_not_shown(world, keys, client_for):
    response, _ = chat_streamed(world.owner, turn(keys.gemini))
    request_id = response["X-Request-ID"]
    assert UsageRecord.objects.filter(request_id=request_id).exists()
    client = Client()
    client.force_login(world.outsider)
    shown = client.get(reverse("generation:playground-usage", args=[request_id]), headers=HTMX)
    assert "tokens in" not in shown.text and "Recording usage" in shown.text
    last = client.get(
        reverse("generation:playground-usage", args=[request_id]) + "?try=7", headers=HTMX
    )
    assert "not billed" in last.text


# --- Images --------------------------------------------------------------------------------


def test_images_appear_with_download_links(world, keys, client_for):
    client = client_for(world.owner)
    response = client.post(
        reverse("generation:playground-images"),
        {"key": keys.gemini.public_id, "model": "imagen-4", "prompt": f"A fox {XSS}", "n": "2",
         "size": "1024x1024", "quality": "auto", "action": "generate"},
        headers=HTMX,
    )  # fmt: skip
    assert response.status_code == 200, response.content
    html = response.text
    assert html.count('<img class="generated-image" src="http://testserver/files/') == 2
    assert html.count(" download>") == 2
    assert ESCAPED in html and XSS not in html
    record = UsageRecord.objects.get(account=world.account, family="image")
    assert record.images == 2 and record.api_key_id == keys.gemini.pk
    assert record.protocol == "images"
    url = html.split('src="http://testserver')[1].split('"')[0]
    image = client.get(url)
    assert image.status_code == 200 and read_body(image)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "HX-Trigger" in response and "2 images ready." in response["HX-Trigger"]


def test_an_image_is_edited_from_an_upload(world, keys, client_for):
    response = client_for(world.owner).post(
        reverse("generation:playground-images"),
        {"key": keys.openai.public_id, "model": "gpt-image-1", "prompt": "Make it blue",
         "n": "1", "size": "1024x1024", "quality": "low", "action": "edit",
         "image": io.BytesIO(png()), "mask": io.BytesIO(png(color=(0, 0, 0, 0)))},
        headers=HTMX,
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.text.count('class="generated-image"') == 1
    assert "1 image edited" in response.text


@pytest.mark.parametrize(
    ("fields", "message", "field"),
    [
        ({"n": "9"}, "Choose 1 to 4 images.", "n"),
        ({"prompt": ""}, "Enter a prompt.", "prompt"),
        ({"size": "3x3"}, "Size must be one of", "size"),
        ({"action": "edit"}, "Choose an image to edit.", "image"),
        ({"action": "edit", "image": io.BytesIO(b"not an image")},
         "The image must be a PNG, JPEG or WebP image.", "image"),
    ],
)  # fmt: skip
def test_image_form_errors_rerender_the_form(world, keys, client_for, fields, message, field):
    data = {"key": keys.openai.public_id, "model": "gpt-image-1", "prompt": "A fox",
            "n": "1", "size": "1024x1024", "quality": "low", **fields}  # fmt: skip
    response = client_for(world.owner).post(
        reverse("generation:playground-images"), data, headers=HTMX
    )
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#image-form" and response["HX-Reswap"] == "outerHTML"
    html = response.text
    assert html.lstrip().startswith('<form id="image-form"')
    assert message in html
    assert f'id="image-{field}-error"' in html
    assert not UsageRecord.objects.exists()
    assert Wallet.objects.get(account=world.account).held == 0


def test_images_without_credits_say_so(world, keys, client_for):
    empty(world)
    response = client_for(world.owner).post(
        reverse("generation:playground-images"),
        {"key": keys.gemini.public_id, "model": "imagen-4", "prompt": "A fox", "n": "1"},
        headers=HTMX,
    )
    assert response.status_code == 422
    assert 'class="form-errors" role="alert"' in response.text
    assert "the wallet has 0.00 available" in response.text


# --- Tasks ---------------------------------------------------------------------------------


def test_a_task_is_submitted_through_the_api_pipeline_and_billed_to_the_key(
    world, keys, client_for, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit_task(client_for(world.owner), keys.gemini, duration="6",
                               aspect_ratio="9:16", seed="7")  # fmt: skip
    assert response.status_code == 200, response.content
    task = Task.objects.get()
    assert task.api_key_id == keys.gemini.pk and task.account_id == world.account.pk
    assert task.params == {"prompt": "A fox", "duration": 6, "aspect_ratio": "9:16", "seed": 7}
    html = response.text
    root = f'<article class="card task-card" id="task-card-{task.public_id}"'
    assert html.lstrip().startswith(root)
    assert 'data-status="pending"' in html and 'data-progress="0"' in html
    assert 'hx-trigger="every 2s"' in html
    assert Wallet.objects.get(account=world.account).held == task.estimated_credits > 0
    assert Hold.objects.get(reference=task.public_id).api_key_id == keys.gemini.pk
    assert [job.name for job in enqueued] == ["generation.jobs.task_advance"]


def test_a_task_from_the_playground_stops_at_the_keys_quota(world, keys, client_for, enqueued):
    """Issue 11: the playground submitted tasks past its key's quota, as the API did."""
    client = client_for(world.owner)
    measure = issue_key(world.account, keys.groups["gemini-default"], actor=world.owner,
                        name="Measure")[0]  # fmt: skip
    assert submit_task(client, measure).status_code == 200
    estimate = Task.objects.get().estimated_credits
    # Room for one task and a half: the second's estimate does not fit what is left.
    ApiKey.objects.filter(pk=keys.gemini.pk).update(quota=estimate * 3 // 2)
    assert submit_task(client, keys.gemini).status_code == 200
    refused = submit_task(client, keys.gemini)
    assert refused.status_code == 422
    assert "quota" in refused.text
    assert Task.objects.filter(api_key=keys.gemini).count() == 1


def test_a_task_the_wallet_cannot_cover_links_to_the_top_up_page(world, keys, client_for):
    client = client_for(world.owner)
    empty(world)
    refused = submit_task(client, keys.gemini)
    assert refused.status_code == 422
    errors = refused.text[refused.text.index('class="form-errors"') :]
    errors = errors[: errors.index("</div>")]
    assert "available" in errors
    assert f'<a href="{reverse("billing:top-up")}">Top up</a>' in errors
    assert not Task.objects.exists()


def test_a_quota_refusal_has_no_top_up_link(world, keys, client_for):
    ApiKey.objects.filter(pk=keys.gemini.pk).update(quota=1)
    refused = submit_task(client_for(world.owner), keys.gemini)
    assert refused.status_code == 422 and "quota" in refused.text
    assert f'<a href="{reverse("billing:top-up")}">Top up</a>' not in refused.text


def test_an_image_task_takes_its_count(world, keys, client_for, enqueued):
    response = submit_task(client_for(world.owner), keys.gemini, model="imagen-4", n="3",
                           duration="", quality="auto")  # fmt: skip
    assert response.status_code == 200, response.content
    task = Task.objects.get()
    assert task.params["n"] == 3 and task.model.slug == "imagen-4"


@pytest.mark.parametrize(
    ("fields", "message", "field"),
    [
        ({"duration": "7"}, "veo-3-fast makes videos of 4, 6, 8 seconds.", "duration"),
        ({"prompt": "  "}, "Enter a prompt.", "prompt"),
        ({"aspect_ratio": "4:3"}, "Aspect ratio must be one of", "aspect_ratio"),
        ({"seed": "-1"}, "Seed must be a whole number.", "seed"),
    ],
)
def test_invalid_task_params_rerender_the_form(world, keys, client_for, fields, message, field):
    response = submit_task(client_for(world.owner), keys.gemini, **fields)
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#task-form"
    assert message in response.text
    assert f'id="task-{field}-error"' in response.text and 'aria-invalid="true"' in response.text
    assert not Task.objects.exists() and not Hold.objects.exists()


def test_a_model_outside_the_keys_group_is_a_form_error(world, keys, client_for):
    response = submit_task(client_for(world.owner), keys.openai)  # veo is not in "default"
    assert response.status_code == 422
    assert "does not include that model" in response.text
    assert not Task.objects.exists()


def test_without_htmx_a_submit_goes_to_the_tasks_page(world, keys, client_for):
    response = client_for(world.owner).post(
        reverse("generation:playground-task"),
        {"key": keys.gemini.public_id, "model": "veo-3-fast", "prompt": "A fox"},
    )
    task = Task.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("generation:task-detail", args=[task.public_id])


# --- Who may use which key -------------------------------------------------------------------


def _posts(keys, key):
    """Every POST of the playground, made with ``key``."""
    return [
        ("chat", lambda c: chat(c, key)),
        ("images", lambda c: c.post(
            reverse("generation:playground-images"),
            {"key": key.public_id, "model": "imagen-4", "prompt": "A fox"}, headers=HTMX)),
        ("task", lambda c: submit_task(c, key)),
    ]  # fmt: skip


def test_a_developer_cannot_use_a_teammates_key(world, keys, client_for):
    client = client_for(world.developer)
    for name, post in _posts(keys, keys.gemini):
        assert post(client).status_code == 404, name
    assert estimate(client, keys.gemini).status_code == 404
    assert not Task.objects.exists() and not UsageRecord.objects.exists()
    # Their own key works.
    assert submit_task(client, keys.dev).status_code == 200


def test_an_outsider_cannot_use_the_accounts_keys(world, keys, client_for):
    client = client_for(world.outsider)
    for name, post in _posts(keys, keys.gemini):
        assert post(client).status_code == 404, name
    assert estimate(client, keys.gemini).status_code == 404
    assert not Task.objects.exists() and not UsageRecord.objects.exists()


def test_a_revoked_key_cannot_be_used(world, keys, client_for):
    from keys.models import ApiKey

    ApiKey.objects.filter(pk=keys.gemini.pk).update(status="revoked")
    client = client_for(world.owner)
    for name, post in _posts(keys, keys.gemini):
        assert post(client).status_code == 404, name


@pytest.mark.parametrize(
    "lists", [{"ip_allowlist": ["10.0.0.0/8"]}, {"ip_denylist": ["127.0.0.1/32"]}]
)
def test_a_keys_ip_lists_apply_to_playground_calls(world, keys, client_for, enqueued, lists):
    from keys.models import ApiKey

    ApiKey.objects.filter(pk=keys.gemini.pk).update(**lists)
    client = client_for(world.owner)  # calling from 127.0.0.1
    refused = "This API key may not be used from your IP address."
    answer = chat(client, keys.gemini)
    assert answer.status_code == 403
    assert answer.json()["error"] == {
        "message": refused, "type": "permission_error", "param": "key",
        "code": "permission_denied",
    }  # fmt: skip
    for name, post in _posts(keys, keys.gemini)[1:]:  # the forms show it in place
        answer = post(client)
        assert answer.status_code == 422, name
        assert 'class="form-errors" role="alert"' in answer.text and refused in answer.text, name
        assert refused in answer["HX-Trigger"], name
    shown = estimate(client, keys.gemini)
    assert shown.status_code == 422 and refused in shown.text
    assert not Task.objects.exists() and not UsageRecord.objects.exists()
    assert Wallet.objects.get(account=world.account).held == 0
    assert not enqueued

    # From an address the lists allow, the same key works.
    client.defaults["REMOTE_ADDR"] = "10.1.2.3"
    assert submit_task(client, keys.gemini).status_code == 200


def test_a_viewer_is_refused_on_every_post(world, keys, client_for):
    client = client_for(world.viewer)
    for name, post in _posts(keys, keys.gemini):
        assert post(client).status_code == 403, name
    assert estimate(client, keys.gemini).status_code == 403
    assert not Task.objects.exists() and not UsageRecord.objects.exists()
    assert Wallet.objects.get(account=world.account).held == 0


def test_every_post_needs_the_csrf_token(world, keys):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)
    for name, post in _posts(keys, keys.gemini):
        assert post(client).status_code == 403, name
    assert not Task.objects.exists() and not UsageRecord.objects.exists()
    # With the token (as the page sends it, in the X-CSRFToken header), it goes through.
    client.get(reverse("generation:playground"))
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse("generation:playground-task"),
        {"key": keys.gemini.public_id, "model": "veo-3-fast", "prompt": "A fox"},
        headers={**HTMX, "X-CSRFToken": token},
    )
    assert response.status_code == 200


def test_a_playground_call_counts_as_a_use_of_its_key_and_an_estimate_does_not(
    world, keys, client_for
):
    client = client_for(world.owner)
    assert estimate(client, keys.gemini, duration="8").status_code == 200
    assert ApiKey.objects.get(pk=keys.gemini.pk).last_used_at is None
    response, _ = chat_streamed(world.owner, turn(keys.gemini, "Hi"))
    assert response.status_code == 200
    used = ApiKey.objects.get(pk=keys.gemini.pk).last_used_at
    assert used is not None and (timezone.now() - used).total_seconds() < 60
