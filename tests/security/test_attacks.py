"""Attacks seen on peer gateways, one test each: each fails if its protection is removed.

Others live beside the feature they attack (see docs/security.md for the full map): key cache
keyed on part of a key (tests/keys/test_auth.py), a member raising their own role
(tests/accounts/test_team.py), concurrent code redemption (tests/billing/test_concurrency.py),
callback SSRF (tests/callbacks/), stored XSS (tests/keys/test_pages.py,
tests/generation/test_task_pages.py, tests/callbacks/test_pages.py), secrets at rest and in logs
(tests/test_secrets_at_rest.py, tests/generation/test_text_gateway.py).
"""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse

from accounts.models import Invitation, Membership
from billing.holds import hold_place, hold_settle
from billing.models import Hold, Payment
from billing.usage import UsageFacts
from catalogue.demo import seed_catalogue
from catalogue.models import AIModel, Channel, ChannelMode
from generation import routing
from generation.models import CallbackDelivery, Task
from generation.services import task_submit
from keys import services as keys
from tests.factories import fund, funded_catalogue, funded_key, issue_key

pytestmark = pytest.mark.django_db
M = 1_000_000


@pytest.fixture
def two_accounts(world):
    """Acme (ours) and Other Co (theirs), each with a catalogue, money, keys, usage and a task."""
    _, mine_secret = funded_key(world.account, world.owner, group="gemini-default", credits=20)
    theirs, theirs_secret = funded_key(
        world.outsider_account, world.outsider, group="gemini-default", credits=20
    )
    _, their_admin = keys.management_key_issue(
        account=world.outsider_account, actor=world.outsider, name="theirs"
    )
    their_mkey = world.outsider_account.management_keys.get()
    model = AIModel.objects.get(slug="veo-3-fast")
    their_task = task_submit(
        account_id=world.outsider_account.pk, api_key_id=theirs.pk, model=model, multiplier=1,
        params={"prompt": "theirs", "duration": 4},
    ).task  # fmt: skip
    Task.objects.filter(pk=their_task.pk).update(status="failed", error={"code": "x"})
    delivery = CallbackDelivery.objects.create(
        task=their_task, webhook_id="msg_theirs", event_type="task.failed",
        url="https://hooks.example.com/x", payload={},
    )  # fmt: skip
    their_member = Membership.objects.get(user=world.outsider)
    invitation = Invitation.objects.create(
        account=world.outsider_account, email="x@other.test", role="viewer",
        token_digest="0" * 64, expires_at="2099-01-01T00:00:00Z",
    )  # fmt: skip
    return {
        "mine": mine_secret,
        "theirs": theirs,
        "their_secret": theirs_secret,
        "their_admin": their_admin,
        "their_mkey": their_mkey,
        "their_task": their_task,
        "delivery": delivery,
        "their_member": their_member,
        "invitation": invitation,
    }


# --- IDOR: another account's objects, by id --------------------------------------------------


def test_another_accounts_objects_are_404_in_the_console(world, two_accounts, client_for):
    client = client_for(world.owner)
    key = two_accounts["theirs"].public_id
    task = two_accounts["their_task"].public_id
    gets = [
        reverse("keys:key-detail", args=[key]),
        reverse("generation:task-detail", args=[task]),
        reverse("generation:task-card", args=[task]),
        reverse("generation:task-row", args=[task]),
        reverse("generation:delivery-detail", args=["msg_theirs"]),
        reverse("billing:usage") + f"?api_key_id={key}",
        reverse("billing:usage-export") + f"?api_key_id={key}",
    ]
    posts = [
        reverse("keys:key-update", args=[key]),
        reverse("keys:key-roll", args=[key]),
        reverse("keys:key-revoke", args=[key]),
        reverse("keys:key-delete", args=[key]),
        reverse("keys:management-key-revoke", args=[two_accounts["their_mkey"].public_id]),
        reverse("accounts:member-role", args=[two_accounts["their_member"].public_id]),
        reverse("accounts:member-remove", args=[two_accounts["their_member"].public_id]),
        reverse("accounts:invitation-resend", args=[two_accounts["invitation"].public_id]),
        reverse("accounts:invitation-revoke", args=[two_accounts["invitation"].public_id]),
        reverse("generation:task-cancel", args=[task]),
        reverse("generation:delivery-redeliver", args=["msg_theirs"]),
    ]
    for url in gets:
        assert client.get(url).status_code == 404, url
    for url in posts:
        assert client.post(url, {"role": "owner", "name": "mine"}).status_code == 404, url
    two_accounts["theirs"].refresh_from_db()
    assert two_accounts["theirs"].is_active
    assert Task.objects.get(pk=two_accounts["their_task"].pk).status == "failed"


def test_another_accounts_objects_are_404_in_the_apis(world, two_accounts, client):
    key = two_accounts["theirs"].public_id
    task = two_accounts["their_task"].public_id
    _, my_admin = keys.management_key_issue(account=world.account, actor=world.owner, name="me")
    admin = {"x-api-key": my_admin}
    for method, url in [
        ("get", f"/api/v1/keys/{key}"),
        ("patch", f"/api/v1/keys/{key}"),
        ("delete", f"/api/v1/keys/{key}"),
        ("post", f"/api/v1/keys/{key}/roll"),
        ("post", f"/api/v1/keys/{key}/revoke"),
        ("get", f"/api/v1/usage?api_key_id={key}"),
        ("get", f"/api/v1/usage/records?api_key_id={key}"),
    ]:
        body = json.dumps({"name": "renamed"}) if method == "patch" else None
        response = getattr(client, method)(
            url, body, content_type="application/json", headers=admin
        )
        assert response.status_code == 404, (method, url, response.content)
    inference = {"x-api-key": two_accounts["mine"]}
    for url, body in [
        ("/v1/tasks/query", {"task_id": task}),
        ("/v1/tasks/cancel", {"task_id": task}),
        (f"/v1/tasks/cancel/{task}", {}),
    ]:
        response = client.post(url, json.dumps(body), "application/json", headers=inference)
        assert response.status_code == 404, url
    assert client.get(f"/v1/tasks/stream/{task}", headers=inference).status_code == 404
    assert client.get(f"/v1/tasks/query?task_id={task}", headers=inference).status_code == 404


# --- SQL injection -------------------------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE billing_wallet; --",
    "key_x' UNION SELECT 1 --",
    "\\x00",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_sql_injection_through_filters_and_ids_is_inert(world, two_accounts, client_for, payload):
    client = client_for(world.owner)
    pages = [
        ("billing:usage", {"model": payload}),
        ("billing:usage", {"api_key_id": payload}),
        ("billing:usage", {"since": payload}),
        ("billing:usage-export", {"family": payload}),
        ("billing:wallet", {"kind": payload}),
        ("generation:tasks", {"status": payload, "model": payload, "key": payload}),
    ]
    for name, params in pages:
        assert client.get(reverse(name), params).status_code in (200, 400, 404, 422), name
    _, admin = keys.management_key_issue(account=world.account, actor=world.owner, name="me")
    for url in [
        f"/api/v1/usage?model={payload}",
        f"/api/v1/billing/transactions?kind={payload}",
        f"/api/v1/keys/{payload}",
    ]:
        assert client.get(url, headers={"x-api-key": admin}).status_code in (400, 404), url
    inference = {"x-api-key": two_accounts["mine"]}
    query = client.post(
        "/v1/tasks/query", json.dumps({"task_id": payload}), "application/json", headers=inference
    )
    assert query.status_code in (400, 404)
    for header in ("x-api-key", "authorization", "x-goog-api-key"):
        value = payload if header != "authorization" else f"Bearer {payload}"
        assert client.get("/v1/models", headers={header: value}).status_code == 401
    from billing.models import Wallet

    assert Wallet.objects.count() >= 2  # nothing was dropped


# --- A client-supplied upstream or model mapping ---------------------------------------------


class Upstream:
    def __init__(self):
        self.requests = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                upstream.requests.append({"path": self.path, "json": body})
                answer = json.dumps({
                    "id": "chatcmpl-u", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "ok"}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_callers_cannot_choose_the_upstream_or_its_model(world, client):
    groups = funded_catalogue(world.account, 5)
    upstream = Upstream()
    channel = Channel.objects.get(slug="openai")
    channel.mode, channel.base_url = ChannelMode.LIVE, f"{upstream.url}/v1"
    channel.set_secret("sk-live-secret-for-the-test")
    channel.save()
    routing.forget()
    _, secret = issue_key(world.account, groups["default"])
    body = {
        "model": "gpt-4.1",
        "messages": [{"role": "user", "content": "hi"}],
        "base_url": "http://evil.example/v1",
        "api_base": "http://evil.example/v1",
        "upstream_model": "gpt-4.1-expensive-internal",
        "channel": "anthropic",
        "model_mapping": {"gpt-4.1": "o3"},
    }
    response = client.post(
        "/v1/chat/completions", json.dumps(body), "application/json",
        headers={"x-api-key": secret, "X-Upstream-Url": "http://evil.example",
                 "OpenAI-Base-URL": "http://evil.example"},
    )  # fmt: skip
    assert response.status_code == 200
    (sent,) = upstream.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["json"]["model"] == "gpt-4.1"  # the catalogue's upstream name
    assert not {"base_url", "api_base", "upstream_model", "channel", "model_mapping"} & set(
        sent["json"]
    )
    upstream.server.shutdown()


# --- CSRF on every console form --------------------------------------------------------------


def test_every_console_form_refuses_a_post_without_the_csrf_token(world, two_accounts):
    key, _ = issue_key(world.account, seed_catalogue()["default"], actor=world.owner)
    mkey, _ = keys.management_key_issue(account=world.account, actor=world.owner, name="m")
    member = Membership.objects.get(user=world.developer)
    task = task_submit(
        account_id=world.account.pk, api_key_id=key.pk,
        model=AIModel.objects.get(slug="imagen-4"), multiplier=1, params={"prompt": "x"},
    ).task  # fmt: skip
    payment = Payment.objects.create(
        account=world.account, provider="sandbox", provider_payment_id="sbx_csrf", amount=10**7
    )
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)
    forms = [
        reverse("accounts:invitation-create"),
        reverse("accounts:member-role", args=[member.public_id]),
        reverse("accounts:member-remove", args=[member.public_id]),
        reverse("accounts:settings"),
        reverse("accounts:leave"),
        reverse("accounts:switch"),
        reverse("accounts:welcome"),
        reverse("keys:key-create"),
        reverse("keys:key-update", args=[key.public_id]),
        reverse("keys:key-roll", args=[key.public_id]),
        reverse("keys:key-revoke", args=[key.public_id]),
        reverse("keys:key-delete", args=[key.public_id]),
        reverse("keys:management-key-create"),
        reverse("keys:management-key-revoke", args=[mkey.public_id]),
        reverse("billing:redeem"),
        reverse("billing:threshold"),
        reverse("billing:top-up"),
        reverse("billing:sandbox-checkout", args=[payment.public_id]),
        reverse("generation:playground-chat"),
        reverse("generation:playground-images"),
        reverse("generation:playground-task"),
        reverse("generation:task-cancel", args=[task.public_id]),
        reverse("generation:webhook-secret-rotate"),
        reverse("account_logout"),
        reverse("account_change_password"),
        reverse("account_email"),
        reverse("mfa_activate_totp"),
    ]
    for url in forms:
        assert client.post(url, {"name": "x", "role": "owner"}).status_code == 403, url
    key.refresh_from_db()
    assert key.is_active and Task.objects.get(pk=task.pk).status == "pending"
    assert Payment.objects.get().status == "pending" and Payment.objects.count() == 1


# --- Rate limits ---------------------------------------------------------------------------


def test_key_creation_is_rate_limited(world, client, settings):
    settings.BYTESPIKE_KEY_CREATION_LIMIT = 3
    group = seed_catalogue()["default"]
    for n in range(3):
        issue_key(world.account, group, name=f"k{n}")
    with pytest.raises(keys.KeyCreationLimitedError):
        issue_key(world.account, group, name="one too many")
    issue_key(world.outsider_account, group, name="other accounts are not affected")


def test_key_creation_limit_is_429_in_the_api(world, client, settings):
    settings.BYTESPIKE_KEY_CREATION_LIMIT = 2
    group = seed_catalogue()["default"]
    _, admin = keys.management_key_issue(account=world.account, actor=world.owner, name="m")
    codes = [
        client.post(
            "/api/v1/keys", json.dumps({"name": f"k{n}", "group_id": group.pk}),
            "application/json", headers={"x-api-key": admin},
        ).status_code
        for n in range(3)
    ]  # fmt: skip
    assert codes[-1] == 429


# --- Dependencies down: clear 503s, never 500s ------------------------------------------------


def test_a_database_outage_is_a_503_on_every_surface(world, two_accounts, client, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("keys.auth._lookup", down)
    response = client.get("/v1/models", headers={"x-api-key": two_accounts["mine"]})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "service_unavailable"
    gemini = client.get("/v1beta/models", headers={"x-goog-api-key": two_accounts["mine"]})
    assert gemini.status_code == 503 and gemini.json()["error"]["status"] == "UNAVAILABLE"
    monkeypatch.setattr("console.api.authenticate_management", down)
    api = client.get("/api/v1/keys", headers={"x-api-key": two_accounts["their_admin"]})
    assert api.status_code == 503 and api.json()["error"]["code"] == "service_unavailable"
    monkeypatch.setattr("accounts.decorators.membership_current", down)
    client.force_login(world.owner)
    page = Client(raise_request_exception=False)
    page.force_login(world.owner)
    console = page.get(reverse("console:dashboard"))
    assert console.status_code == 503 and "Back in a moment" in console.text


def test_a_broker_outage_does_not_fail_a_submit(world, two_accounts, monkeypatch, caplog):
    from celery.app.task import Task as CeleryTask
    from kombu.exceptions import OperationalError as BrokerDown

    def down(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to redis")

    monkeypatch.setattr(CeleryTask, "apply_async", down)
    caplog.set_level(logging.ERROR)
    client = Client()
    response = client.post(
        "/v1/tasks/submit",
        json.dumps({"model": "veo-3-fast", "prompt": "still accepted", "duration": 4}),
        "application/json",
        headers={"x-api-key": two_accounts["mine"]},
    )
    assert response.status_code == 200
    task = Task.objects.get(public_id=response.json()["task_id"])
    assert task.status == "pending"  # the reaper will enqueue it when the broker is back
    assert Hold.objects.get(reference=task.public_id).status == "open"


def test_an_amount_that_does_not_fit_is_refused_not_wrapped(world):
    fund(world.account, 5)
    with pytest.raises(ValueError):
        hold_place(account_id=world.account.pk, reference="neg", amount=-5)
    model = AIModel.objects.create(slug="tiny", display_name="t", family="text")
    hold_place(account_id=world.account.pk, reference="r1", amount=M)
    with pytest.raises(ValueError):
        hold_settle(
            reference="r1", charge=-1,
            usage=UsageFacts(model_id=model.pk, family="text", protocol="openai"),
        )  # fmt: skip
